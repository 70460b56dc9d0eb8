//! NaCl `crypto_secretbox` (XSalsa20-Poly1305), with a Salsa20 keystream that
//! computes eight blocks at a time in AVX2 registers where the CPU has them.
//!
//! The crates.io implementation of Salsa20 is scalar only (about 250 MB/s per
//! core here), which would make packaging slower than the targets allow; the
//! MAC is the `poly1305` crate's, with its own vector backends. Correctness is
//! tested against `crypto_secretbox` and against PyNaCl (via mse-lib-crypto).

use poly1305::universal_hash::KeyInit;
use poly1305::Poly1305;

/// Bytes in a key.
pub const KEY_LEN: usize = 32;
/// Bytes in a nonce.
pub const NONCE_LEN: usize = 24;
/// Bytes in a tag.
pub const TAG_LEN: usize = 16;

const SIGMA: [u32; 4] = [0x6170_7865, 0x3320_646e, 0x7962_2d32, 0x6b20_6574];
const LANES: usize = 8;
const BLOCK: usize = 64;

#[inline(always)]
fn quarter(x: &mut [u32; 16], a: usize, b: usize, c: usize, d: usize) {
    x[b] ^= x[a].wrapping_add(x[d]).rotate_left(7);
    x[c] ^= x[b].wrapping_add(x[a]).rotate_left(9);
    x[d] ^= x[c].wrapping_add(x[b]).rotate_left(13);
    x[a] ^= x[d].wrapping_add(x[c]).rotate_left(18);
}

#[inline(always)]
fn double_round(x: &mut [u32; 16]) {
    quarter(x, 0, 4, 8, 12);
    quarter(x, 5, 9, 13, 1);
    quarter(x, 10, 14, 2, 6);
    quarter(x, 15, 3, 7, 11);
    quarter(x, 0, 1, 2, 3);
    quarter(x, 5, 6, 7, 4);
    quarter(x, 10, 11, 8, 9);
    quarter(x, 15, 12, 13, 14);
}

fn words<const N: usize>(bytes: &[u8]) -> [u32; N] {
    let mut out = [0u32; N];
    for (word, chunk) in out.iter_mut().zip(bytes.chunks_exact(4)) {
        *word = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
    }
    out
}

/// HSalsa20: derives the XSalsa20 subkey from the key and the first 16 nonce bytes.
fn hsalsa20(key: &[u8; KEY_LEN], nonce16: &[u8]) -> [u32; 8] {
    let k: [u32; 8] = words(key);
    let n: [u32; 4] = words(nonce16);
    let mut x = [
        SIGMA[0], k[0], k[1], k[2], k[3], SIGMA[1], n[0], n[1], n[2], n[3], SIGMA[2], k[4], k[5],
        k[6], k[7], SIGMA[3],
    ];
    for _ in 0..10 {
        double_round(&mut x);
    }
    [x[0], x[5], x[10], x[15], x[6], x[7], x[8], x[9]]
}

fn initial_state(key: &[u32; 8], nonce: &[u32; 2], counter: u64) -> [u32; 16] {
    [
        SIGMA[0],
        key[0],
        key[1],
        key[2],
        key[3],
        SIGMA[1],
        nonce[0],
        nonce[1],
        counter as u32,
        (counter >> 32) as u32,
        SIGMA[2],
        key[4],
        key[5],
        key[6],
        key[7],
        SIGMA[3],
    ]
}

/// One keystream block.
fn block(key: &[u32; 8], nonce: &[u32; 2], counter: u64) -> [u8; BLOCK] {
    let input = initial_state(key, nonce, counter);
    let mut x = input;
    for _ in 0..10 {
        double_round(&mut x);
    }
    let mut out = [0u8; BLOCK];
    for (i, chunk) in out.chunks_exact_mut(4).enumerate() {
        chunk.copy_from_slice(&x[i].wrapping_add(input[i]).to_le_bytes());
    }
    out
}

/// One block at a time: for CPUs without AVX2 and for the tail of the data.
fn xor_stream_portable(key: &[u32; 8], nonce: &[u32; 2], mut counter: u64, data: &mut [u8]) {
    for tail in data.chunks_mut(BLOCK) {
        let ks = block(key, nonce, counter);
        for (byte, k) in tail.iter_mut().zip(ks.iter()) {
            *byte ^= k;
        }
        counter = counter.wrapping_add(1);
    }
}

/// Eight Salsa20 blocks at once in AVX2 registers: one register per state
/// word, one lane per block.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn xor8_avx2(key: &[u32; 8], nonce: &[u32; 2], counter: u64, data: &mut [u8]) {
    use std::arch::x86_64::*;

    macro_rules! rotl {
        ($v:expr, $n:literal) => {{
            let v = $v;
            _mm256_or_si256(
                _mm256_slli_epi32::<$n>(v),
                _mm256_srli_epi32::<{ 32 - $n }>(v),
            )
        }};
    }
    macro_rules! quarter {
        ($x:ident, $a:literal, $b:literal, $c:literal, $d:literal) => {
            $x[$b] = _mm256_xor_si256($x[$b], rotl!(_mm256_add_epi32($x[$a], $x[$d]), 7));
            $x[$c] = _mm256_xor_si256($x[$c], rotl!(_mm256_add_epi32($x[$b], $x[$a]), 9));
            $x[$d] = _mm256_xor_si256($x[$d], rotl!(_mm256_add_epi32($x[$c], $x[$b]), 13));
            $x[$a] = _mm256_xor_si256($x[$a], rotl!(_mm256_add_epi32($x[$d], $x[$c]), 18));
        };
    }

    let base = initial_state(key, nonce, counter);
    let mut input = [_mm256_setzero_si256(); 16];
    for (lanes, word) in input.iter_mut().zip(base) {
        *lanes = _mm256_set1_epi32(word as i32);
    }
    let c = |l: u64| counter.wrapping_add(l);
    input[8] = _mm256_setr_epi32(
        c(0) as i32,
        c(1) as i32,
        c(2) as i32,
        c(3) as i32,
        c(4) as i32,
        c(5) as i32,
        c(6) as i32,
        c(7) as i32,
    );
    input[9] = _mm256_setr_epi32(
        (c(0) >> 32) as i32,
        (c(1) >> 32) as i32,
        (c(2) >> 32) as i32,
        (c(3) >> 32) as i32,
        (c(4) >> 32) as i32,
        (c(5) >> 32) as i32,
        (c(6) >> 32) as i32,
        (c(7) >> 32) as i32,
    );
    let mut x = input;
    for _ in 0..10 {
        quarter!(x, 0, 4, 8, 12);
        quarter!(x, 5, 9, 13, 1);
        quarter!(x, 10, 14, 2, 6);
        quarter!(x, 15, 3, 7, 11);
        quarter!(x, 0, 1, 2, 3);
        quarter!(x, 5, 6, 7, 4);
        quarter!(x, 10, 11, 8, 9);
        quarter!(x, 15, 12, 13, 14);
    }
    for (xi, ii) in x.iter_mut().zip(input.iter()) {
        *xi = _mm256_add_epi32(*xi, *ii);
    }
    // Transpose each half (words 0..8, then 8..16) so that one register holds
    // 32 consecutive keystream bytes of one block, then XOR it into the data.
    for half in 0..2 {
        let r = &x[half * 8..half * 8 + 8];
        let t0 = _mm256_unpacklo_epi32(r[0], r[1]);
        let t1 = _mm256_unpackhi_epi32(r[0], r[1]);
        let t2 = _mm256_unpacklo_epi32(r[2], r[3]);
        let t3 = _mm256_unpackhi_epi32(r[2], r[3]);
        let t4 = _mm256_unpacklo_epi32(r[4], r[5]);
        let t5 = _mm256_unpackhi_epi32(r[4], r[5]);
        let t6 = _mm256_unpacklo_epi32(r[6], r[7]);
        let t7 = _mm256_unpackhi_epi32(r[6], r[7]);
        let u0 = _mm256_unpacklo_epi64(t0, t2);
        let u1 = _mm256_unpackhi_epi64(t0, t2);
        let u2 = _mm256_unpacklo_epi64(t1, t3);
        let u3 = _mm256_unpackhi_epi64(t1, t3);
        let u4 = _mm256_unpacklo_epi64(t4, t6);
        let u5 = _mm256_unpackhi_epi64(t4, t6);
        let u6 = _mm256_unpacklo_epi64(t5, t7);
        let u7 = _mm256_unpackhi_epi64(t5, t7);
        let lanes = [
            _mm256_permute2x128_si256::<0x20>(u0, u4),
            _mm256_permute2x128_si256::<0x20>(u1, u5),
            _mm256_permute2x128_si256::<0x20>(u2, u6),
            _mm256_permute2x128_si256::<0x20>(u3, u7),
            _mm256_permute2x128_si256::<0x31>(u0, u4),
            _mm256_permute2x128_si256::<0x31>(u1, u5),
            _mm256_permute2x128_si256::<0x31>(u2, u6),
            _mm256_permute2x128_si256::<0x31>(u3, u7),
        ];
        for (l, keystream) in lanes.into_iter().enumerate() {
            let at = l * BLOCK + half * 32;
            let chunk = &mut data[at..at + 32];
            // SAFETY: `chunk` is exactly 32 bytes; loads and stores are unaligned.
            #[allow(unsafe_code)]
            unsafe {
                let ptr = chunk.as_mut_ptr().cast::<__m256i>();
                _mm256_storeu_si256(ptr, _mm256_xor_si256(_mm256_loadu_si256(ptr), keystream));
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn xor_stream_avx2(key: &[u32; 8], nonce: &[u32; 2], mut counter: u64, data: &mut [u8]) {
    let mut chunks = data.chunks_exact_mut(LANES * BLOCK);
    for chunk in &mut chunks {
        xor8_avx2(key, nonce, counter, chunk);
        counter = counter.wrapping_add(LANES as u64);
    }
    xor_stream_portable(key, nonce, counter, chunks.into_remainder());
}

/// XORs the Salsa20 keystream, starting at block `counter`, into `data`.
fn xor_stream(key: &[u32; 8], nonce: &[u32; 2], counter: u64, data: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        #[allow(unused_unsafe, unsafe_code)]
        unsafe {
            xor_stream_avx2(key, nonce, counter, data);
        };
        return;
    }
    xor_stream_portable(key, nonce, counter, data);
}

/// Applies XSalsa20 to `data` in place as secretbox does (the message starts
/// at keystream offset 32) and returns the Poly1305 key (keystream 0..32).
fn apply(key: &[u8; KEY_LEN], nonce: &[u8; NONCE_LEN], data: &mut [u8]) -> [u8; 32] {
    let subkey = hsalsa20(key, &nonce[..16]);
    let n: [u32; 2] = words(&nonce[16..]);
    let first = block(&subkey, &n, 0);
    let mut poly_key = [0u8; 32];
    poly_key.copy_from_slice(&first[..32]);
    let head = data.len().min(32);
    for (byte, k) in data[..head].iter_mut().zip(&first[32..]) {
        *byte ^= k;
    }
    if data.len() > 32 {
        xor_stream(&subkey, &n, 1, &mut data[32..]);
    }
    poly_key
}

/// Seals `plaintext`: returns `nonce ‖ tag ‖ ciphertext` (PyNaCl's layout).
pub fn seal(key: &[u8; KEY_LEN], nonce: &[u8; NONCE_LEN], plaintext: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(NONCE_LEN + TAG_LEN + plaintext.len());
    out.extend_from_slice(&[0u8; NONCE_LEN + TAG_LEN]);
    out.extend_from_slice(plaintext);
    seal_in_place(key, nonce, &mut out);
    out
}

/// Seals in place a buffer laid out as `[40 bytes of room] ‖ plaintext`,
/// which becomes `nonce ‖ tag ‖ ciphertext`. Saves a copy of large files.
///
/// Panics if the buffer is shorter than the 40 bytes of room.
pub fn seal_in_place(key: &[u8; KEY_LEN], nonce: &[u8; NONCE_LEN], buffer: &mut [u8]) {
    let (head, body) = buffer.split_at_mut(NONCE_LEN + TAG_LEN);
    let poly_key = apply(key, nonce, body);
    let tag = Poly1305::new((&poly_key).into()).compute_unpadded(body);
    head[..NONCE_LEN].copy_from_slice(nonce);
    head[NONCE_LEN..].copy_from_slice(&tag);
}

/// Opens `nonce ‖ tag ‖ ciphertext`; `None` when it does not authenticate.
pub fn open(key: &[u8; KEY_LEN], sealed: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return None;
    }
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&sealed[..NONCE_LEN]);
    let tag = &sealed[NONCE_LEN..NONCE_LEN + TAG_LEN];
    let ciphertext = &sealed[NONCE_LEN + TAG_LEN..];
    // The Poly1305 key is the first half of keystream block 0.
    let subkey = hsalsa20(key, &nonce[..16]);
    let n: [u32; 2] = words(&nonce[16..]);
    let first = block(&subkey, &n, 0);
    let mut poly_key = [0u8; 32];
    poly_key.copy_from_slice(&first[..32]);
    let expected = Poly1305::new((&poly_key).into()).compute_unpadded(ciphertext);
    if !constant_time_eq(&expected, tag) {
        return None;
    }
    let mut plaintext = ciphertext.to_vec();
    apply(key, &nonce, &mut plaintext);
    Some(plaintext)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crypto_secretbox::aead::Aead;
    use crypto_secretbox::XSalsa20Poly1305;

    /// The reference: RustCrypto's scalar crypto_secretbox.
    fn reference(key: &[u8; 32], nonce: &[u8; 24], data: &[u8]) -> Vec<u8> {
        let sealed = XSalsa20Poly1305::new(key.into())
            .encrypt(nonce.into(), data)
            .unwrap();
        [nonce.as_slice(), &sealed].concat()
    }

    fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    }

    #[test]
    fn matches_the_reference_for_every_length_around_block_edges() {
        for len in (0..1200).chain([4095, 4096, 4097, 65_536 + 33, 1_000_003]) {
            let key: [u8; 32] = pseudo_random(len as u64, 32).try_into().unwrap();
            let nonce: [u8; 24] = pseudo_random(len as u64 + 7, 24).try_into().unwrap();
            let data = pseudo_random(len as u64 + 13, len);
            let sealed = seal(&key, &nonce, &data);
            assert_eq!(sealed, reference(&key, &nonce, &data), "length {len}");
            assert_eq!(
                open(&key, &sealed).as_deref(),
                Some(&data[..]),
                "length {len}"
            );
        }
    }

    #[test]
    fn portable_and_vector_paths_agree() {
        let key = [3u32; 8];
        let nonce = [5u32, 9];
        let mut a = pseudo_random(1, 5000);
        let mut b = a.clone();
        xor_stream_portable(&key, &nonce, 1, &mut a);
        xor_stream(&key, &nonce, 1, &mut b);
        assert_eq!(a, b);
    }

    #[test]
    fn tampering_is_detected() {
        let key = [1u8; 32];
        let sealed = seal(&key, &[2u8; 24], b"hello world");
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x80;
            assert_eq!(open(&key, &bad), None, "byte {i}");
        }
        assert_eq!(open(&[9u8; 32], &sealed), None);
        assert_eq!(open(&key, &sealed[..39]), None);
    }
}
