//! `mse package`: encrypts the code folder into `code.tar` and writes the key
//! and nonces to `package.toml`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use mse_package::{CodeKey, NonceMap, Nonces};
use serde::{Deserialize, Serialize};

use crate::commands::{absolute, load_valid_config};
use crate::exit::{CmdResult, Failure};
use crate::render;

/// Arguments of `mse package`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The configuration file [default: ./mse.toml]
    #[arg(long, value_name = "FILE")]
    path: Option<PathBuf>,
    /// Folder to write code.tar and package.toml into (created if missing)
    #[arg(long, short, value_name = "DIR")]
    output: PathBuf,
    /// Code key as 64 hex digits [default: the key in --nonces FILE, else a new random key]
    #[arg(long, value_name = "HEX")]
    key: Option<String>,
    /// Reuse these nonces to reproduce a package byte for byte: a package.toml or a context.mse
    #[arg(long, value_name = "FILE")]
    nonces: Option<PathBuf>,
    /// Print one JSON object instead of text
    #[arg(long)]
    json: bool,
}

/// `package.toml`.
#[derive(Serialize, Deserialize)]
struct PackageFile {
    code_secret_key: String,
    code_sha256: String,
    nonces: BTreeMap<String, String>,
}

/// What `--nonces FILE` may be.
#[derive(Deserialize)]
struct NonceSource {
    code_secret_key: Option<String>,
    nonces: Option<BTreeMap<String, String>>,
    config: Option<NonceSourceConfig>,
    instance: Option<NonceSourceInstance>,
}

#[derive(Deserialize)]
struct NonceSourceConfig {
    code_secret_key: Option<String>,
}

#[derive(Deserialize)]
struct NonceSourceInstance {
    nonces: Option<BTreeMap<String, String>>,
}

/// Reads the nonce map (and key, if present) of a package.toml or context.mse.
fn read_nonce_file(path: &Path) -> Result<(NonceMap, Option<CodeKey>), Failure> {
    let invalid = |why: String| Failure::Invalid(format!("{}: {why}", path.display()));
    let text = std::fs::read_to_string(path).map_err(|e| invalid(e.to_string()))?;
    let source: NonceSource =
        toml::from_str(&text).map_err(|e| invalid(e.message().to_string()))?;
    let nonces = source
        .nonces
        .or(source.instance.and_then(|i| i.nonces))
        .ok_or_else(|| {
            invalid("has no [nonces] table (give a package.toml or a context.mse)".into())
        })?;
    let map = nonces
        .iter()
        .map(|(file, hex)| {
            mse_package::Nonce::from_hex(hex)
                .map(|n| (file.clone(), n))
                .map_err(|e| invalid(format!("nonce of `{file}`: {e}")))
        })
        .collect::<Result<NonceMap, Failure>>()?;
    let key = source
        .code_secret_key
        .or(source.config.and_then(|c| c.code_secret_key))
        .map(|hex| CodeKey::from_hex(&hex).map_err(|e| invalid(e.to_string())))
        .transpose()?;
    Ok((map, key))
}

#[derive(Serialize)]
struct JsonOutput<'a> {
    code_tar: &'a Path,
    package_toml: &'a Path,
    code_sha256: &'a str,
    files: usize,
    encrypted_files: usize,
    plaintext_bytes: u64,
}

/// Runs `mse package`.
pub fn run(args: Args) -> CmdResult {
    let config = load_valid_config(args.path.as_deref(), false)?;
    let (given, file_key) = match &args.nonces {
        Some(path) => {
            let (map, key) = read_nonce_file(&absolute(path)?)?;
            (Some(map), key)
        }
        None => (None, None),
    };
    let key = match (&args.key, file_key) {
        (Some(hex), _) => {
            CodeKey::from_hex(hex).map_err(|e| Failure::Invalid(format!("--key: {e}")))?
        }
        (None, Some(key)) => key,
        (None, None) if given.is_some() => {
            return Err(Failure::Invalid(
                "--nonces FILE holds no code key: pass --key HEX as well".into(),
            ))
        }
        (None, None) => CodeKey::generate(),
    };

    let output = absolute(&args.output)?;
    std::fs::create_dir_all(&output)
        .with_context(|| format!("cannot create {}", output.display()))?;
    let tar_path = output.join(mse_package::context::CODE_FILE);
    let partial = output.join(".code.tar.partial");
    let file = std::fs::File::create(&partial)
        .with_context(|| format!("cannot create {}", partial.display()))?;
    let writer = std::io::BufWriter::with_capacity(1 << 20, file);
    let nonces = match &given {
        Some(map) => Nonces::Given(map),
        None => Nonces::Random,
    };
    let packed = match mse_package::pack(&config.code.location, &key, nonces, writer) {
        Ok(packed) => packed,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(match e {
                mse_package::PackError::Io(..) | mse_package::PackError::Write { .. } => {
                    // The message already ends with its source's.
                    Failure::Other(anyhow::anyhow!("{e}"))
                }
                _ => Failure::Invalid(e.to_string()),
            });
        }
    };
    std::fs::rename(&partial, &tar_path)
        .with_context(|| format!("cannot write {}", tar_path.display()))?;

    let sha256 = hex_string(&packed.sha256);
    let package_file = PackageFile {
        code_secret_key: key.to_hex(),
        code_sha256: sha256.clone(),
        nonces: mse_package::context::nonces_to_hex(&packed.nonces),
    };
    let text = format!(
        "# The key of code.tar: whoever holds it can read the code. Keep this file private.\n{}",
        toml::to_string_pretty(&package_file).context("cannot encode package.toml")?
    );
    let toml_path = output.join("package.toml");
    mse_package::context::write_private(&toml_path, text.as_bytes())
        .with_context(|| format!("cannot write {}", toml_path.display()))?;

    eprintln!(
        "{} {} holds the code key: keep it private (it is readable by you only)",
        render::warning_prefix(),
        toml_path.display()
    );
    if args.json {
        let json = JsonOutput {
            code_tar: &tar_path,
            package_toml: &toml_path,
            code_sha256: &sha256,
            files: packed.files,
            encrypted_files: packed.nonces.len(),
            plaintext_bytes: packed.plaintext_bytes,
        };
        outln!(
            "{}",
            serde_json::to_string_pretty(&json).context("cannot encode the output")?
        )?;
    } else {
        outln!(
            "Packaged {} files ({} encrypted, {}) from {}",
            packed.files,
            packed.nonces.len(),
            render::bytes(packed.plaintext_bytes),
            config.code.location.display()
        )?;
        outln!("  {}", tar_path.display())?;
        outln!("  sha256 {sha256}")?;
        outln!("  {} (code key and nonces)", toml_path.display())?;
    }
    Ok(())
}

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
