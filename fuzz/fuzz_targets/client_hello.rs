//! Arbitrary bytes as the first bytes of a proxy connection: the ClientHello
//! parser must never panic, must keep its verdict as more bytes arrive, and
//! must not care how the handshake message is cut into records.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mse_sni::{parse_client_hello, Hello, HelloError, MAX_HELLO_BYTES};

/// `payload` as handshake records of `size` bytes.
fn records(payload: &[u8], size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 5 * (payload.len() / size + 1));
    for chunk in payload.chunks(size) {
        out.extend_from_slice(&[22, 3, 1]);
        out.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
        out.extend_from_slice(chunk);
    }
    out
}

fn check(result: &Result<Hello, HelloError>) {
    if let Ok(Hello::Complete {
        server_name: Some(name),
    }) = result
    {
        assert!(!name.is_empty() && name.len() <= 253, "{name:?}");
        assert!(name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b)));
    }
}

fuzz_target!(|data: &[u8]| {
    // As raw connection bytes.
    let whole = parse_client_hello(data);
    check(&whole);
    if data.len() <= MAX_HELLO_BYTES {
        // A verdict reached on a prefix stands once more bytes arrive.
        let cut = data
            .first()
            .map_or(0, |&b| usize::from(b) * data.len() / 256);
        let prefix = parse_client_hello(&data[..cut]);
        if prefix != Ok(Hello::NeedMore) {
            assert_eq!(prefix, whole, "prefix of {cut} bytes");
        }
    }

    // As a handshake message: the same verdict in one record or in many.
    if let Some((&size, payload)) = data.split_first() {
        if payload.len() <= 2000 {
            let one = parse_client_hello(&records(payload, 1 << 14));
            let many = parse_client_hello(&records(payload, 1 + usize::from(size % 64)));
            check(&one);
            assert_eq!(one, many, "cut in records of {} bytes", 1 + size % 64);
        }
    }
});
