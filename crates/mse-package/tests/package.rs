//! Packaging and unpacking: determinism, ignores, and refusal of every
//! malformed or hostile input with nothing left half-written.

use std::path::{Path, PathBuf};

use mse_package::{
    encrypted_files, pack, unpack, CodeKey, Limits, Nonce, NonceMap, Nonces, PackError, UnpackError,
};

fn write(root: &Path, rel: &str, content: &[u8]) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

fn tree() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let code = tmp.path().join("code");
    write(&code, "app.py", b"app = 1\n");
    write(&code, "lib/util.py", b"X = 2\n");
    write(&code, "requirements.txt", b"flask\n");
    std::fs::create_dir_all(code.join("static/empty")).unwrap();
    (tmp, code)
}

fn pack_to_vec(
    code: &Path,
    key: &CodeKey,
    nonces: Nonces<'_>,
) -> Result<(Vec<u8>, mse_package::Packed), PackError> {
    let mut out = Vec::new();
    let packed = pack(code, key, nonces, &mut out)?;
    Ok((out, packed))
}

fn names(tar: &[u8]) -> Vec<String> {
    tar::Archive::new(tar)
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().to_string())
        .collect()
}

#[test]
fn same_key_nonces_and_plaintext_give_identical_tarballs() {
    let (_tmp, code) = tree();
    let key = CodeKey::generate();
    let (first, packed) = pack_to_vec(&code, &key, Nonces::Random).unwrap();
    let (second, again) = pack_to_vec(&code, &key, Nonces::Given(&packed.nonces)).unwrap();
    assert_eq!(first, second);
    assert_eq!(packed.sha256, again.sha256);
    // Touching a file's times changes nothing; changing a byte changes the hash.
    let file = std::fs::File::options()
        .write(true)
        .open(code.join("app.py"))
        .unwrap();
    file.set_modified(std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(12345))
        .unwrap();
    let (third, _) = pack_to_vec(&code, &key, Nonces::Given(&packed.nonces)).unwrap();
    assert_eq!(first, third);
    write(&code, "app.py", b"app = 2\n");
    let (_, changed) = pack_to_vec(&code, &key, Nonces::Given(&packed.nonces)).unwrap();
    assert_ne!(changed.sha256, packed.sha256);
}

#[test]
fn fresh_nonces_give_different_tarballs() {
    let (_tmp, code) = tree();
    let key = CodeKey::generate();
    let (a, _) = pack_to_vec(&code, &key, Nonces::Random).unwrap();
    let (b, _) = pack_to_vec(&code, &key, Nonces::Random).unwrap();
    assert_ne!(a, b);
}

#[test]
fn tarball_is_sorted_with_fixed_metadata() {
    let (_tmp, code) = tree();
    let (tar, _) = pack_to_vec(&code, &CodeKey::generate(), Nonces::Random).unwrap();
    assert_eq!(
        names(&tar),
        [
            "app.py.enc",
            "lib/",
            "lib/util.py.enc",
            "requirements.txt",
            "static/",
            "static/empty/"
        ]
    );
    for entry in tar::Archive::new(&tar[..]).entries().unwrap() {
        let entry = entry.unwrap();
        let header = entry.header();
        assert_eq!(header.mtime().unwrap(), 0);
        assert_eq!((header.uid().unwrap(), header.gid().unwrap()), (0, 0));
        let mode = header.mode().unwrap();
        assert!(mode == 0o644 || mode == 0o755, "{mode:o}");
    }
}

#[test]
fn reproducing_needs_a_nonce_for_every_file_and_no_other() {
    let (_tmp, code) = tree();
    let key = CodeKey::generate();
    let (_, packed) = pack_to_vec(&code, &key, Nonces::Random).unwrap();
    let mut missing = packed.nonces.clone();
    missing.remove("lib/util.py");
    let err = pack_to_vec(&code, &key, Nonces::Given(&missing)).unwrap_err();
    assert!(
        matches!(err, PackError::MissingNonce(ref f) if f == "lib/util.py"),
        "{err}"
    );
    let mut extra: NonceMap = packed.nonces.clone();
    extra.insert("gone.py".into(), Nonce::generate());
    let err = pack_to_vec(&code, &key, Nonces::Given(&extra)).unwrap_err();
    assert!(
        matches!(err, PackError::UnknownNonce(ref f) if f == "gone.py"),
        "{err}"
    );
}

#[test]
fn mseignore_and_default_ignores_leave_files_out() {
    let (_tmp, code) = tree();
    write(&code, ".mseignore", b"*.log\n/build/\n");
    write(&code, "debug.log", b"x");
    write(&code, "build/out.py", b"x");
    write(&code, "lib/.mseignore", b"local.py\n");
    write(&code, "lib/local.py", b"x");
    for ignored in [
        "__pycache__/a.pyc",
        "x.pyc",
        "lib/y.pyo",
        ".git/HEAD",
        ".gitignore",
        ".venv/bin/python",
        ".env",
        "mse.toml",
        "secrets.json",
    ] {
        write(&code, ignored, b"ignored");
    }
    let (tar, _) = pack_to_vec(&code, &CodeKey::generate(), Nonces::Random).unwrap();
    let names = names(&tar);
    assert_eq!(
        names,
        [
            ".mseignore.enc",
            "app.py.enc",
            "lib/",
            "lib/.mseignore.enc",
            "lib/util.py.enc",
            "requirements.txt",
            "static/",
            "static/empty/"
        ]
    );
}

#[cfg(unix)]
#[test]
fn symlinks_inside_the_folder_are_packaged_and_outside_refused() {
    let (tmp, code) = tree();
    std::os::unix::fs::symlink("app.py", code.join("alias.py")).unwrap();
    let (tar, _) = pack_to_vec(&code, &CodeKey::generate(), Nonces::Random).unwrap();
    assert!(names(&tar).contains(&"alias.py.enc".to_string()));

    write(tmp.path(), "outside.py", b"secret");
    std::os::unix::fs::symlink(tmp.path().join("outside.py"), code.join("leak.py")).unwrap();
    let err = pack_to_vec(&code, &CodeKey::generate(), Nonces::Random).unwrap_err();
    assert!(matches!(err, PackError::SymlinkEscapes { .. }), "{err}");
    assert!(err.to_string().contains("leak.py"), "{err}");
}

#[cfg(unix)]
#[test]
fn non_utf8_names_are_refused_with_the_path() {
    use std::os::unix::ffi::OsStrExt;
    let (_tmp, code) = tree();
    let name = std::ffi::OsStr::from_bytes(b"bad\xffname.py");
    std::fs::write(code.join(name), b"x").unwrap();
    let err = pack_to_vec(&code, &CodeKey::generate(), Nonces::Random).unwrap_err();
    assert!(matches!(err, PackError::NonUtf8Name(_)), "{err}");
    assert!(err.to_string().contains("bad"), "{err}");
}

#[test]
fn unpack_restores_the_tree_privately() {
    let (tmp, code) = tree();
    let key = CodeKey::generate();
    let (tar, _) = pack_to_vec(&code, &key, Nonces::Random).unwrap();
    let dest = tmp.path().join("out");
    let done = unpack(&tar[..], &key, &dest, Limits::default()).unwrap();
    assert_eq!(done.files, 3);
    assert_eq!(std::fs::read(dest.join("lib/util.py")).unwrap(), b"X = 2\n");
    assert_eq!(
        std::fs::read(dest.join("requirements.txt")).unwrap(),
        b"flask\n"
    );
    assert!(dest.join("static/empty").is_dir());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dest), 0o700);
        assert_eq!(mode(&dest.join("lib")), 0o700);
        assert_eq!(mode(&dest.join("app.py")), 0o600);
    }
}

/// Unpacks and expects a refusal that leaves nothing behind.
fn refused(tar: &[u8], key: &CodeKey) -> UnpackError {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("out");
    let err = unpack(tar, key, &dest, Limits::default()).unwrap_err();
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    err
}

#[test]
fn unpack_with_a_wrong_key_is_refused() {
    let (_tmp, code) = tree();
    let (tar, _) = pack_to_vec(&code, &CodeKey::generate(), Nonces::Random).unwrap();
    let err = refused(&tar, &CodeKey::generate());
    assert!(matches!(err, UnpackError::Decrypt(..)), "{err}");
    assert!(err.to_string().contains("app.py.enc"), "{err}");
}

#[test]
fn unpack_of_a_tampered_byte_is_refused() {
    let (_tmp, code) = tree();
    let key = CodeKey::generate();
    let (mut tar, _) = pack_to_vec(&code, &key, Nonces::Random).unwrap();
    // The first entry's data starts after its 512-byte header.
    tar[512 + 30] ^= 0x01;
    assert!(matches!(refused(&tar, &key), UnpackError::Decrypt(..)));
}

#[test]
fn unpack_of_a_truncated_tarball_is_refused() {
    let (_tmp, code) = tree();
    let key = CodeKey::generate();
    let (tar, _) = pack_to_vec(&code, &key, Nonces::Random).unwrap();
    for cut in [100, 512 + 20, tar.len() / 2] {
        let err = refused(&tar[..cut], &key);
        assert!(
            matches!(err, UnpackError::Malformed(_) | UnpackError::Decrypt(..)),
            "cut {cut}: {err}"
        );
    }
}

/// A tarball with hand-made entries: (raw name, type, data).
fn crafted(entries: &[(&[u8], tar::EntryType, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, kind, data) in entries {
        let mut header = tar::Header::new_old();
        header.as_old_mut().name[..name.len()].copy_from_slice(name);
        header.set_entry_type(*kind);
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        if *kind == tar::EntryType::Symlink {
            header.set_link_name("/etc/passwd").unwrap();
        }
        header.set_cksum();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

fn sealed(key: &CodeKey, data: &[u8]) -> Vec<u8> {
    mse_package::crypto::seal(key, &Nonce::generate(), data)
}

#[test]
fn unpack_refuses_paths_that_escape_the_folder() {
    let key = CodeKey::generate();
    let data = sealed(&key, b"x");
    for name in [
        &b"../evil.py.enc"[..],
        b"/etc/evil.py.enc",
        b"a/../../evil.py.enc",
    ] {
        let err = refused(&crafted(&[(name, tar::EntryType::Regular, &data)]), &key);
        assert!(
            matches!(err, UnpackError::UnsafePath(_)),
            "{}: {err}",
            String::from_utf8_lossy(name)
        );
    }
}

#[test]
fn unpack_refuses_links_and_special_entries() {
    let key = CodeKey::generate();
    for kind in [
        tar::EntryType::Symlink,
        tar::EntryType::Link,
        tar::EntryType::Fifo,
        tar::EntryType::Char,
    ] {
        let err = refused(&crafted(&[(b"app.py.enc", kind, b"")]), &key);
        assert!(
            matches!(err, UnpackError::UnsupportedEntry(..)),
            "{kind:?}: {err}"
        );
    }
}

#[test]
fn unpack_refuses_duplicate_entries() {
    let key = CodeKey::generate();
    let data = sealed(&key, b"x");
    let tar = crafted(&[
        (b"app.py.enc", tar::EntryType::Regular, &data),
        (b"app.py.enc", tar::EntryType::Regular, &data),
    ]);
    assert!(matches!(refused(&tar, &key), UnpackError::Duplicate(_)));
    let tar = crafted(&[
        (b"requirements.txt", tar::EntryType::Regular, b"a"),
        (
            b"requirements.txt.enc",
            tar::EntryType::Regular,
            &sealed(&key, b"b"),
        ),
    ]);
    assert!(matches!(refused(&tar, &key), UnpackError::Duplicate(_)));
}

#[test]
fn unpack_refuses_unencrypted_files_other_than_requirements() {
    let key = CodeKey::generate();
    let tar = crafted(&[(b"app.py", tar::EntryType::Regular, b"print(1)")]);
    assert!(matches!(refused(&tar, &key), UnpackError::Unencrypted(_)));
}

#[test]
fn unpack_refuses_a_file_under_a_file() {
    let key = CodeKey::generate();
    let tar = crafted(&[
        (b"a.enc", tar::EntryType::Regular, &sealed(&key, b"x")),
        (b"a/b.enc", tar::EntryType::Regular, &sealed(&key, b"y")),
    ]);
    assert!(matches!(
        refused(&tar, &key),
        UnpackError::UnsafePath(_) | UnpackError::Io(..)
    ));
}

#[test]
fn unpack_enforces_limits() {
    let (_tmp, code) = tree();
    let key = CodeKey::generate();
    let (tar, _) = pack_to_vec(&code, &key, Nonces::Random).unwrap();
    let limits = Limits {
        max_entries: 2,
        ..Limits::default()
    };
    let tmp = tempfile::tempdir().unwrap();
    let err = unpack(&tar[..], &key, &tmp.path().join("o"), limits).unwrap_err();
    assert!(matches!(err, UnpackError::TooLarge(_)), "{err}");
    let limits = Limits {
        max_file_bytes: 10,
        ..Limits::default()
    };
    let err = unpack(&tar[..], &key, &tmp.path().join("o"), limits).unwrap_err();
    assert!(matches!(err, UnpackError::TooLarge(_)), "{err}");
}

#[test]
fn unpack_never_writes_into_an_existing_folder() {
    let (tmp, code) = tree();
    let key = CodeKey::generate();
    let (tar, _) = pack_to_vec(&code, &key, Nonces::Random).unwrap();
    let err = unpack(&tar[..], &key, &code, Limits::default()).unwrap_err();
    assert!(matches!(err, UnpackError::DestinationExists(_)));
    drop(tmp);
}

#[test]
fn garbage_is_refused_as_malformed() {
    let key = CodeKey::generate();
    let mut garbage = vec![0x5au8; 2048];
    garbage[0] = b'x';
    let err = refused(&garbage, &key);
    assert!(
        matches!(
            err,
            UnpackError::Malformed(_)
                | UnpackError::UnsafePath(_)
                | UnpackError::UnsupportedEntry(..)
        ),
        "{err}"
    );
}

#[test]
fn a_package_without_an_encrypted_file_is_refused_whatever_the_key() {
    let key = CodeKey::generate();
    for tar in [
        crafted(&[]),
        crafted(&[(b"requirements.txt", tar::EntryType::Regular, b"flask\n")]),
        crafted(&[(b"lib", tar::EntryType::Directory, b"")]),
    ] {
        assert_eq!(encrypted_files(&tar[..], Limits::default()).unwrap(), 0);
        assert!(matches!(refused(&tar, &key), UnpackError::NothingEncrypted));
    }
    let (_tmp, code) = tree();
    let (tar, _) = pack_to_vec(&code, &key, Nonces::Random).unwrap();
    assert_eq!(encrypted_files(&tar[..], Limits::default()).unwrap(), 2);
}

#[test]
fn a_missing_code_folder_is_named_and_its_io_error_kept_as_the_source() {
    let missing = Path::new("/nonexistent/code");
    let err = pack_to_vec(missing, &CodeKey::generate(), Nonces::Random).unwrap_err();
    assert!(
        matches!(err, PackError::Io(ref path, _) if path == missing),
        "{err}"
    );
    let io = std::error::Error::source(&err)
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .expect("the I/O error is the source");
    assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
    assert_eq!(err.to_string(), format!("{}: {io}", missing.display()));
}
