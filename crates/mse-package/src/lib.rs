//! The encrypted code package and deployment contexts.
//!
//! A package is a deterministic tarball of the code folder where every file
//! but `requirements.txt` is `<name>.enc` = nonce ‖ XSalsa20-Poly1305 secretbox,
//! exactly what `mse_lib_crypto.xsalsa20_poly1305` produces and reads. The same
//! key, nonces and plaintext always give byte-identical tarballs.
//!
//! # Example
//!
//! Encrypt a code folder with a new key, check that the package holds no
//! plaintext, then decrypt it as the node does:
//!
//! ```
//! use mse_package::{pack, unpack, CodeKey, Limits, Nonces};
//!
//! let dir = tempfile::tempdir()?;
//! let code = dir.path().join("code");
//! std::fs::create_dir(&code)?;
//! std::fs::write(code.join("app.py"), "SECRET = 'do not read'\n")?;
//! std::fs::write(code.join("requirements.txt"), "flask\n")?;
//!
//! let key = CodeKey::generate();
//! let mut tar = Vec::new();
//! let packed = pack(&code, &key, Nonces::Random, &mut tar)?;
//! assert_eq!(packed.files, 2);
//! // Only requirements.txt stays plain: the platform installs it.
//! assert_eq!(packed.nonces.len(), 1);
//! assert!(!tar.windows(11).any(|w| w == b"do not read"));
//!
//! let out = dir.path().join("decrypted");
//! unpack(&tar[..], &key, &out, Limits::default())?;
//! assert_eq!(std::fs::read_to_string(out.join("app.py"))?, "SECRET = 'do not read'\n");
//!
//! // Another key opens nothing.
//! let wrong = unpack(&tar[..], &CodeKey::generate(), &dir.path().join("x"), Limits::default());
//! assert!(wrong.is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod context;
pub mod crypto;
mod pack;
mod secretbox;
pub mod snapshot;
mod unpack;
pub mod walk;

use std::path::PathBuf;

pub use crypto::{CodeKey, CryptoError, Nonce};
pub use pack::{pack, NonceMap, Nonces, Packed, ENC_SUFFIX, REQUIREMENTS};
pub use unpack::{encrypted_files, unpack, Limits, Unpacked};

/// Why a code folder could not be packaged.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PackError {
    /// Walking the folder failed (permissions, loops, bad `.mseignore`).
    #[error("cannot list the code folder: {0}")]
    Walk(String),
    /// A file could not be read or written.
    #[error("{0}: {1}")]
    Io(PathBuf, #[source] std::io::Error),
    /// A file name is not UTF-8, so it cannot be named in the nonce map.
    #[error("{0}: file names must be UTF-8; rename it or add it to .mseignore")]
    NonUtf8Name(PathBuf),
    /// A symbolic link points outside the code folder.
    #[error("{link} links to {target}, outside the code folder; copy the file in or add the link to .mseignore")]
    SymlinkEscapes {
        /// The link.
        link: PathBuf,
        /// Where it resolves to.
        target: PathBuf,
    },
    /// A socket, device or fifo.
    #[error("{0} is not a regular file or folder; add it to .mseignore")]
    SpecialFile(PathBuf),
    /// Reproducing: a file has no nonce in the given map.
    #[error("`{0}` has no nonce in the given nonce map: the code differs from the one packaged")]
    MissingNonce(String),
    /// Reproducing: the map names a file that is not in the folder.
    #[error("the nonce map names `{0}`, which is not in the code folder: the code differs from the one packaged")]
    UnknownNonce(String),
    /// Writing the tarball failed.
    #[error("cannot write the package: {}{source}", entry.as_ref().map(|e| format!("{e}: ")).unwrap_or_default())]
    Write {
        /// The entry being written, if one.
        entry: Option<String>,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Why a package could not be unpacked. Nothing is left behind in any case.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UnpackError {
    /// The target folder already exists.
    #[error("{0} already exists")]
    DestinationExists(PathBuf),
    /// The tarball itself is malformed.
    #[error("malformed package: {0}")]
    Malformed(String),
    /// An entry would land outside the target folder.
    #[error("unsafe path in package: `{0}`")]
    UnsafePath(String),
    /// The same path appears twice.
    #[error("duplicate entry in package: `{0}`")]
    Duplicate(String),
    /// A link, device or other entry a package never holds.
    #[error("unsupported entry `{0}` ({1}) in package")]
    UnsupportedEntry(String, String),
    /// A file other than requirements.txt is not encrypted.
    #[error("`{0}` is not encrypted; only requirements.txt may be")]
    Unencrypted(String),
    /// No file of the package is encrypted, so any key would open it.
    #[error("the package holds no encrypted file: there is no code in it, and no key can be checked against it")]
    NothingEncrypted,
    /// A file does not decrypt.
    #[error("`{0}`: {1}")]
    Decrypt(String, #[source] CryptoError),
    /// Over the limits.
    #[error("package too large: {0}")]
    TooLarge(String),
    /// Writing the folder failed.
    #[error("{0}: {1}")]
    Io(PathBuf, #[source] std::io::Error),
}
