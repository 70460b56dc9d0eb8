//! Throughput of the code cipher, hash and MAC on this machine:
//! `cargo run --release -p mse-package --example speed`.
use std::time::Instant;

use poly1305::universal_hash::KeyInit;
use sha2::Digest;

fn main() {
    let key = mse_package::CodeKey::generate();
    let nonce = mse_package::Nonce::generate();
    let small = vec![7u8; 1 << 20];
    let t = Instant::now();
    for _ in 0..100 {
        std::hint::black_box(mse_package::crypto::seal(&key, &nonce, &small));
    }
    println!("seal 100 x 1 MB: {:?}", t.elapsed());
    let data = vec![7u8; 100 << 20];
    let t = Instant::now();
    let tag = poly1305::Poly1305::new((&[1u8; 32]).into()).compute_unpadded(&data);
    println!("poly1305 100 MB: {:?} {:x}", t.elapsed(), tag[0]);
    let t = Instant::now();
    let h = sha2::Sha256::digest(&data);
    println!("sha256 100 MB: {:?} {:x}", t.elapsed(), h[0]);
}
