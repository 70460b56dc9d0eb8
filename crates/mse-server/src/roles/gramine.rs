//! The Gramine manifest of one app's SGX enclave (docs/attestation.md,
//! "SGX under Gramine"): `mse-run` as the entry point, the image's Python
//! environment and the system libraries as trusted files (hashed into the
//! manifest), the node's work folder as the only untrusted files, DEBUG
//! off, DCAP quotes, and the app's fingerprint in
//! `loader.env.MSE_FINGERPRINT`, so that MRENCLAVE covers it. The operator
//! signs it once, for the fingerprint 64 zeros, with `gramine-sgx-sign`;
//! the signed manifest is the template the catalog publishes, and the node
//! host renders each app's from it.
//!
//! The manifest is written with the `toml` crate, so no path can inject a
//! key; it names no app's folder (the enclave's work folder is the one
//! Gramine is started in), so every app of one image differs only in its
//! fingerprint, fixed-length hex, which the measurement replay relies on.

use std::path::{Path, PathBuf};

use mse_api::launch::GRAMINE_FINGERPRINT_ENV;
use toml::{Table, Value};

/// Where things are inside the enclave.
const MSE_RUN_IN_ENCLAVE: &str = "/mse/bin/mse-run";
const ENV_IN_ENCLAVE: &str = "/mse/env";
const WORK_IN_ENCLAVE: &str = "/mse/work";
/// The system library folders mounted as they are on the host.
const SYSTEM_LIBRARIES: [&str; 2] = ["/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu"];

/// What one app's enclave is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestInputs {
    /// The app's fingerprint (docs/fingerprint.md).
    pub fingerprint: [u8; 32],
    /// The enclave size, as resources name it (`4G`).
    pub enclave_size: String,
    /// The `mse-run` binary on the host.
    pub mse_run: PathBuf,
    /// The image's Python environment on the host.
    pub python_env: PathBuf,
    /// Gramine's runtime folder (its glibc), e.g.
    /// `/usr/lib/x86_64-linux-gnu/gramine/runtime/glibc`.
    pub gramine_runtime: PathBuf,
    /// Gramine's LibOS loader, e.g.
    /// `/usr/lib/x86_64-linux-gnu/gramine/libsysdb.so`.
    pub libos: PathBuf,
    /// Threads the enclave may run.
    pub max_threads: u32,
    /// More host paths mounted at the same place and trusted: the Python
    /// interpreter the environment was built with and its standard library
    /// (`/usr/bin/python3.11`, `/usr/lib/python3.11`).
    pub trusted: Vec<PathBuf>,
}

fn absolute(what: &str, path: &Path) -> Result<String, String> {
    let text = path
        .to_str()
        .ok_or_else(|| format!("{what} {} is not UTF-8", path.display()))?;
    if !path.is_absolute() || text.contains(['\n', '\r', '\0']) {
        return Err(format!("{what} `{text}` must be an absolute path"));
    }
    Ok(text.trim_end_matches('/').to_string())
}

fn table(entries: &[(&str, Value)]) -> Value {
    Value::Table(
        entries
            .iter()
            .map(|(key, value)| (key.to_string(), value.clone()))
            .collect(),
    )
}

fn string(text: impl Into<String>) -> Value {
    Value::String(text.into())
}

/// The manifest (TOML) of an app's enclave, for `gramine-sgx-sign`.
pub fn manifest(inputs: &ManifestInputs) -> Result<String, String> {
    crate::domain::bounds::enclave_size(&inputs.enclave_size).map_err(|e| e.to_string())?;
    if !(1..=4096).contains(&inputs.max_threads) {
        return Err(format!(
            "max_threads must be from 1 to 4096, not {}",
            inputs.max_threads
        ));
    }
    let mse_run = absolute("mse-run", &inputs.mse_run)?;
    let python_env = absolute("the Python environment", &inputs.python_env)?;
    let runtime = absolute("Gramine's runtime", &inputs.gramine_runtime)?;
    let libos = absolute("Gramine's LibOS", &inputs.libos)?;

    let mut loader_env = Table::new();
    loader_env.insert(
        "LD_LIBRARY_PATH".into(),
        string(format!("/lib:{}", SYSTEM_LIBRARIES.join(":"))),
    );
    loader_env.insert("PATH".into(), string("/usr/bin:/bin"));
    loader_env.insert(
        GRAMINE_FINGERPRINT_ENV.into(),
        string(hex::encode(inputs.fingerprint)),
    );
    let loader = table(&[
        (
            "entrypoint",
            table(&[("uri", string(format!("file:{libos}")))]),
        ),
        ("log_level", string("error")),
        (
            "argv",
            Value::Array(vec![
                string("mse-run"),
                string("--launch"),
                string(format!("{WORK_IN_ENCLAVE}/launch.json")),
            ]),
        ),
        ("env", Value::Table(loader_env)),
    ]);
    let mount = |path: &str, uri: &str| table(&[("path", string(path)), ("uri", string(uri))]);
    let mut mounts = vec![
        mount("/lib", &format!("file:{runtime}")),
        mount(MSE_RUN_IN_ENCLAVE, &format!("file:{mse_run}")),
        mount(ENV_IN_ENCLAVE, &format!("file:{python_env}")),
        // The folder Gramine is started in: the app's node folder.
        mount(WORK_IN_ENCLAVE, "file:."),
    ];
    let extra: Vec<String> = inputs
        .trusted
        .iter()
        .map(|path| absolute("a trusted path", path))
        .collect::<Result<_, _>>()?;
    for library in SYSTEM_LIBRARIES
        .iter()
        .copied()
        .chain(extra.iter().map(String::as_str))
    {
        mounts.push(mount(library, &format!("file:{library}")));
    }
    mounts.push(table(&[
        ("path", string("/tmp")),
        ("type", string("tmpfs")),
    ]));
    let mut trusted = vec![
        string(format!("file:{libos}")),
        string(format!("file:{runtime}/")),
        string(format!("file:{mse_run}")),
        string(format!("file:{python_env}/")),
    ];
    for library in SYSTEM_LIBRARIES {
        trusted.push(string(format!("file:{library}/")));
    }
    for path in &extra {
        let folder = if Path::new(path).is_dir() { "/" } else { "" };
        trusted.push(string(format!("file:{path}{folder}")));
    }
    let sgx = table(&[
        ("debug", Value::Boolean(false)),
        ("edmm_enable", Value::Boolean(false)),
        ("enclave_size", string(inputs.enclave_size.clone())),
        ("max_threads", Value::Integer(i64::from(inputs.max_threads))),
        ("remote_attestation", string("dcap")),
        ("trusted_files", Value::Array(trusted)),
        ("allowed_files", Value::Array(vec![string("file:./")])),
    ]);
    let manifest = table(&[
        (
            "libos",
            table(&[("entrypoint", string(MSE_RUN_IN_ENCLAVE))]),
        ),
        ("loader", loader),
        ("fs", table(&[("mounts", Value::Array(mounts))])),
        ("sgx", sgx),
    ]);
    let body = toml::to_string(&manifest).map_err(|e| format!("cannot write the manifest: {e}"))?;
    Ok(format!(
        "# The SGX enclave of one app (docs/attestation.md), written by `mse-server tee \
         gramine-manifest`:\n# sign it with `gramine-sgx-sign` and the operator's key.\n{body}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(fingerprint: [u8; 32]) -> ManifestInputs {
        ManifestInputs {
            fingerprint,
            enclave_size: "4G".into(),
            mse_run: "/usr/bin/mse-run".into(),
            python_env: "/var/cache/mse/env/abc".into(),
            gramine_runtime: "/usr/lib/x86_64-linux-gnu/gramine/runtime/glibc".into(),
            libos: "/usr/lib/x86_64-linux-gnu/gramine/libsysdb.so".into(),
            max_threads: 64,
            trusted: vec!["/usr/lib/python3.11".into()],
        }
    }

    fn parsed(text: &str) -> Table {
        text.parse::<Table>().expect("TOML")
    }

    fn strings(value: &Value) -> Vec<&str> {
        value
            .as_array()
            .expect("an array")
            .iter()
            .map(|v| v.as_str().expect("a string"))
            .collect()
    }

    #[test]
    fn the_manifest_binds_the_fingerprint_runs_mse_run_and_trusts_only_the_runtime() {
        let text = manifest(&inputs([0xAB; 32])).unwrap();
        let m = parsed(&text);
        assert_eq!(m["libos"]["entrypoint"].as_str(), Some(MSE_RUN_IN_ENCLAVE));
        assert_eq!(
            m["loader"]["env"][GRAMINE_FINGERPRINT_ENV].as_str(),
            Some("ab".repeat(32).as_str())
        );
        let sgx = &m["sgx"];
        assert_eq!(sgx["debug"].as_bool(), Some(false));
        assert_eq!(sgx["remote_attestation"].as_str(), Some("dcap"));
        assert_eq!(sgx["enclave_size"].as_str(), Some("4G"));
        let trusted = strings(&sgx["trusted_files"]);
        assert!(trusted.contains(&"file:/usr/bin/mse-run"), "{trusted:?}");
        assert!(
            trusted.contains(&"file:/var/cache/mse/env/abc/"),
            "{trusted:?}"
        );
        assert!(
            trusted
                .iter()
                .any(|t| t.starts_with("file:/usr/lib/python3.11")),
            "{trusted:?}"
        );
        assert!(
            trusted.iter().all(|t| !t.starts_with("file:.")),
            "the work folder is never trusted: {trusted:?}"
        );
        assert_eq!(strings(&sgx["allowed_files"]), ["file:./"]);
        assert!(!text.contains("insecure__"), "no insecure option: {text}");
        assert!(!text.contains("passthrough"));
    }

    #[test]
    fn every_app_of_an_image_has_a_manifest_of_the_same_size_differing_only_in_its_fingerprint() {
        let a = manifest(&inputs([0x00; 32])).unwrap();
        let b = manifest(&inputs([0xFF; 32])).unwrap();
        assert_eq!(a.len(), b.len());
        let differ: Vec<(&str, &str)> = a.lines().zip(b.lines()).filter(|(x, y)| x != y).collect();
        assert_eq!(differ.len(), 1, "{differ:?}");
        assert!(differ[0].0.contains(GRAMINE_FINGERPRINT_ENV));
    }

    #[test]
    fn bad_inputs_are_refused_saying_which() {
        let relative = ManifestInputs {
            python_env: "env/abc".into(),
            ..inputs([1; 32])
        };
        assert!(manifest(&relative).unwrap_err().contains("absolute"));
        let size = ManifestInputs {
            enclave_size: "lots".into(),
            ..inputs([1; 32])
        };
        assert!(manifest(&size).unwrap_err().contains("enclave_size"));
        let threads = ManifestInputs {
            max_threads: 0,
            ..inputs([1; 32])
        };
        assert!(manifest(&threads).unwrap_err().contains("max_threads"));
        // A path that would end a TOML string is written escaped, not obeyed.
        let quoted = ManifestInputs {
            python_env: "/env\" \nsgx.debug = true #".into(),
            ..inputs([1; 32])
        };
        match manifest(&quoted) {
            Err(e) => assert!(e.contains("absolute"), "{e}"),
            Ok(text) => assert_eq!(parsed(&text)["sgx"]["debug"].as_bool(), Some(false)),
        }
    }
}
