//! Interoperability with the reference implementation, `mse-lib-crypto`
//! (installed from PyPI into the shared test environment), in both directions.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use mse_package::{pack, unpack, CodeKey, Limits, Nonce, NonceMap, Nonces};

/// A code tree with nested folders, an empty folder, an empty file, binary
/// content, a requirements.txt and files the default ignores drop.
fn sample_tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let files: Vec<(&str, Vec<u8>)> = vec![
        (
            "app.py",
            b"from flask import Flask\napp = Flask(__name__)\n".to_vec(),
        ),
        ("requirements.txt", b"requests==2.32.3\n".to_vec()),
        ("pkg/__init__.py", Vec::new()),
        ("pkg/data.bin", (0..=255u8).cycle().take(70_000).collect()),
        ("pkg/deep/er/x.py", "# é ü 😀\n".as_bytes().to_vec()),
    ];
    for (path, content) in &files {
        let full = root.join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, content).unwrap();
    }
    std::fs::create_dir_all(root.join("empty")).unwrap();
    std::fs::create_dir_all(root.join("__pycache__")).unwrap();
    std::fs::write(root.join("__pycache__/app.cpython-311.pyc"), b"junk").unwrap();
    files.into_iter().map(|(p, c)| (p.to_string(), c)).collect()
}

/// Every regular file under `root`, by relative path.
fn read_tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    fn visit(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                visit(root, &path, out);
            } else {
                let rel = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .to_string();
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    visit(root, root, &mut out);
    out
}

fn python(script: &str, args: &[&Path], stdin: &str) -> String {
    use std::io::Write;
    let mut child = Command::new(mse_testkit::python())
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "python failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

const PY_DECRYPT: &str = r#"
import sys, tarfile
from pathlib import Path
from mse_lib_crypto.xsalsa20_poly1305 import decrypt_directory
key = bytes.fromhex(sys.stdin.read().strip())
tar_path, out = Path(sys.argv[1]), Path(sys.argv[2])
with tarfile.open(tar_path) as tar:
    tar.extractall(out, filter="data")
decrypt_directory(out, key)
"#;

const PY_ENCRYPT: &str = r#"
import json, sys, tarfile
from pathlib import Path
from mse_lib_crypto.xsalsa20_poly1305 import encrypt_directory
key = bytes.fromhex(sys.stdin.read().strip())
src, out, tar_path = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
nonces = encrypt_directory(src, "*", key, None, ["requirements.txt"], ["__pycache__"], out)
with tarfile.open(tar_path, "w") as tar:
    for path in sorted(out.rglob("*")):
        tar.add(path, arcname=str(path.relative_to(out)), recursive=False)
print(json.dumps({k: v.hex() for k, v in nonces.items()}))
"#;

struct Dirs {
    _tmp: tempfile::TempDir,
    root: PathBuf,
}

fn dirs() -> Dirs {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    Dirs { _tmp: tmp, root }
}

#[test]
fn mse_lib_crypto_decrypts_our_package_to_the_original_files() {
    let d = dirs();
    let code = d.root.join("code");
    let expected = sample_tree(&code);
    let key = CodeKey::generate();
    let tar = d.root.join("code.tar");
    let packed = pack(
        &code,
        &key,
        Nonces::Random,
        std::fs::File::create(&tar).unwrap(),
    )
    .unwrap();
    assert_eq!(packed.files, expected.len());
    assert_eq!(
        packed.nonces.len(),
        expected.len() - 1,
        "requirements.txt stays plain"
    );

    let out = d.root.join("decrypted");
    python(PY_DECRYPT, &[&tar, &out], &key.to_hex());
    assert_eq!(read_tree(&out), expected);
    assert!(out.join("empty").is_dir(), "empty folders are kept");
}

#[test]
fn files_mse_lib_crypto_encrypts_decrypt_with_ours_and_match_our_bytes() {
    let d = dirs();
    let code = d.root.join("code");
    let expected = sample_tree(&code);
    let key = CodeKey::generate();
    let out = d.root.join("encrypted");
    let tar = d.root.join("python.tar");
    let json = python(PY_ENCRYPT, &[&code, &out, &tar], &key.to_hex());

    // Our unpacker reads the tarball Python built.
    let dest = d.root.join("unpacked");
    unpack(
        std::fs::File::open(&tar).unwrap(),
        &key,
        &dest,
        Limits::default(),
    )
    .unwrap();
    assert_eq!(read_tree(&dest), expected);

    // With Python's nonces, our encrypted files are byte-identical to Python's.
    let nonces: BTreeMap<String, String> = serde_json::from_str(&json).unwrap();
    let map: NonceMap = nonces
        .iter()
        .map(|(k, v)| (k.clone(), Nonce::from_hex(v).unwrap()))
        .collect();
    let ours = d.root.join("ours.tar");
    pack(
        &code,
        &key,
        Nonces::Given(&map),
        std::fs::File::create(&ours).unwrap(),
    )
    .unwrap();
    let mut archive = tar::Archive::new(std::fs::File::open(&ours).unwrap());
    let mut compared = 0;
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let name = entry.path().unwrap().to_string_lossy().to_string();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
        assert_eq!(data, std::fs::read(out.join(&name)).unwrap(), "{name}");
        compared += 1;
    }
    assert_eq!(compared, expected.len());
}
