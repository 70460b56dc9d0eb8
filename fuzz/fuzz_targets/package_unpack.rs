//! Feeds arbitrary bytes to the package unpacker: it must refuse or accept,
//! never panic, and leave nothing behind when it refuses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mse_package::{unpack, CodeKey, Limits};

fuzz_target!(|data: &[u8]| {
    let key = CodeKey::from([7u8; 32]);
    let tmp = tempfile::tempdir().expect("a temporary folder");
    let dest = tmp.path().join("out");
    let limits = Limits {
        max_entries: 64,
        max_file_bytes: 1 << 20,
        max_total_bytes: 4 << 20,
    };
    if unpack(data, &key, &dest, limits).is_err() {
        let left = std::fs::read_dir(tmp.path()).expect("readable").count();
        assert_eq!(left, 0, "a refused package left files behind");
    }
});
