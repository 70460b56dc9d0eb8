//! An emulated Gramine SGX loader (`gramine-sgx`), as a node host starts
//! it: `mse-emulated-gramine-sgx STEM` in the app's node folder, which holds
//! `STEM.manifest.sgx` and `STEM.sig`. Like the CPU, it measures the
//! enclave it builds — the manifest first, then the pages of Gramine's
//! layout — and, like EINIT, refuses to start unless the SIGSTRUCT is
//! signed (RSA-3072, exponent 3) for exactly that measurement. It then
//! serves the enclave's `/dev/attestation` (quotes of that MRENCLAVE and of
//! the signer's MRSIGNER, by the emulated Intel platform) in a mount
//! namespace of its own, and runs the manifest's entry point with the
//! manifest's arguments and environment only, paths mapped by its
//! `fs.mounts`.
//!
//! The layout is read here from its JSON independently of `mse-attest`'s
//! replay, so a test shows that the two readings of SGX's measurement
//! agree. Memory is not isolated: this is the hardware boundary's
//! interface, not its protection.
//!
//! Environment: `MSE_EMULATED_INTEL` (the platform [`EmulatedIntel::save`]
//! wrote), `MSE_EMULATED_GRAMINE_LAYOUT` (the layout JSON, as the catalog
//! publishes it), `MSE_EMULATED_ATTESTATION_ROOT` (where the device is
//! mounted, `/dev/attestation` unless given).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context as _};
use base64::Engine as _;
use sha2::{Digest as _, Sha256};

use super::gramine::{EmulatedAttestation, Enclave};
use super::intel::EmulatedIntel;

const PAGE: usize = 4096;

fn number(value: &serde_json::Value, name: &str) -> anyhow::Result<u64> {
    value[name]
        .as_u64()
        .with_context(|| format!("the layout has no number `{name}`"))
}

/// The 64-byte record of one measured operation: its name, then `fields`.
fn record(name: &[u8], fields: &[&[u8]]) -> [u8; 64] {
    let mut out = [0u8; 64];
    out[..name.len()].copy_from_slice(name);
    let mut at = 8;
    for field in fields {
        out[at..at + field.len()].copy_from_slice(field);
        at += field.len();
    }
    out
}

/// Adds one page at `offset`: EADD with its SECINFO flags, then, when
/// measured, EEXTEND of each 256-byte chunk.
fn add_page(hash: &mut Sha256, offset: u64, flags: u64, content: Option<&[u8]>) {
    hash.update(record(
        b"EADD",
        &[&offset.to_le_bytes(), &flags.to_le_bytes()],
    ));
    if let Some(page) = content {
        for (i, chunk) in page.chunks(256).enumerate() {
            let at = offset + 256 * i as u64;
            hash.update(record(b"EEXTEND", &[&at.to_le_bytes()]));
            hash.update(chunk);
        }
    }
}

/// MRENCLAVE of the enclave built from `layout` (JSON) around `manifest`,
/// measured as the CPU measures it while the loader adds the pages.
pub fn measure(layout: &serde_json::Value, manifest: &[u8]) -> anyhow::Result<[u8; 32]> {
    let size = number(layout, "enclave_size")?;
    let ssa = u32::try_from(number(layout, "ssa_frame_pages")?)?;
    let mut hash = Sha256::new();
    hash.update(record(
        b"ECREATE",
        &[&ssa.to_le_bytes(), &size.to_le_bytes()],
    ));
    // Gramine adds the manifest, with a terminating zero, at the top.
    let mut data = manifest.to_vec();
    data.push(0);
    let pages = data.len().div_ceil(PAGE);
    if pages as u64 != number(layout, "manifest_pages")? {
        bail!("the manifest fills {pages} pages, not the layout's");
    }
    data.resize(pages * PAGE, 0);
    let base = number(layout, "manifest_offset")?;
    let flags = number(layout, "manifest_flags")?;
    for (i, page) in data.chunks(PAGE).enumerate() {
        add_page(&mut hash, base + (i * PAGE) as u64, flags, Some(page));
    }
    let areas = layout["areas"]
        .as_array()
        .context("the layout has no areas")?;
    for area in areas {
        let offset = number(area, "offset")?;
        let count = number(area, "pages")?;
        let flags = number(area, "flags")?;
        let measured = area["measured"].as_bool().unwrap_or(true);
        let content = match area["content"].as_str() {
            Some(text) => base64::engine::general_purpose::STANDARD.decode(text)?,
            None => Vec::new(),
        };
        if offset.saturating_add(count.saturating_mul(PAGE as u64)) > size {
            bail!("an area ends past the enclave");
        }
        for i in 0..count as usize {
            let at = offset + (i * PAGE) as u64;
            if !measured {
                add_page(&mut hash, at, flags, None);
                continue;
            }
            let mut page = content
                .get(i * PAGE..content.len().min((i + 1) * PAGE))
                .unwrap_or_default()
                .to_vec();
            page.resize(PAGE, 0);
            add_page(&mut hash, at, flags, Some(&page));
        }
    }
    Ok(hash.finalize().into())
}

/// A Gramine-like layout of an enclave of `enclave_size` bytes around a
/// manifest of `manifest_len` bytes, as the catalog publishes one: the
/// manifest at the top, then SSA frames, thread control pages, TLS,
/// stacks and the PAL's code (measured), and the heap below (not
/// measured). The contents are made up; the structure is Gramine's.
pub fn example_layout(enclave_size: u64, manifest_len: usize) -> serde_json::Value {
    let page = PAGE as u64;
    let manifest_pages = (manifest_len as u64 + 1).div_ceil(page);
    let manifest_offset = enclave_size - manifest_pages * page;
    // SSA (RW), TCS (its OSSA field pointing at the SSA), TLS (RW), a
    // stack (RW), the PAL (RX, made-up code), each below the previous.
    let ssa_offset = manifest_offset - page;
    let mut tcs = vec![0u8; 72];
    tcs[16..24].copy_from_slice(&ssa_offset.to_le_bytes());
    let parts: [(u64, u64, Option<Vec<u8>>); 5] = [
        (1, 0x203, None),
        (1, 0x100, Some(tcs)),
        (1, 0x203, Some(enclave_size.to_le_bytes().to_vec())),
        (4, 0x203, None),
        (8, 0x205, Some(b"\x7fELF emulated PAL".repeat(600))),
    ];
    let mut top = manifest_offset;
    let mut areas = Vec::new();
    for (pages, flags, content) in parts {
        top -= pages * page;
        let mut entry = serde_json::json!({ "offset": top, "pages": pages, "flags": flags });
        if let Some(content) = content {
            entry["content"] = base64::engine::general_purpose::STANDARD
                .encode(content)
                .into();
        }
        areas.push(entry);
    }
    let heap = top / page;
    areas.push(serde_json::json!({
        "offset": 0, "pages": heap, "flags": 0x207, "measured": false,
    }));
    serde_json::json!({
        "enclave_size": enclave_size,
        "ssa_frame_pages": 1,
        "manifest_offset": manifest_offset,
        "manifest_pages": manifest_pages,
        "manifest_flags": 0x201,
        "areas": areas,
    })
}

/// What EINIT takes from a SIGSTRUCT whose signature checks: ENCLAVEHASH,
/// MRSIGNER, and whether the enclave is a debug one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Initialised {
    /// ENCLAVEHASH: the MRENCLAVE the operator signed.
    pub mr_enclave: [u8; 32],
    /// SHA-256 of the signer's little-endian modulus.
    pub mr_signer: [u8; 32],
    /// ATTRIBUTES.DEBUG.
    pub debug: bool,
}

/// Checks a SIGSTRUCT as EINIT does: 1808 bytes, exponent 3, and an
/// RSA-3072 PKCS#1 v1.5 SHA-256 signature of bytes 0..128 and 900..1028
/// under the modulus it carries (little-endian).
pub fn einit(sigstruct: &[u8]) -> anyhow::Result<Initialised> {
    use rsa::signature::Verifier as _;
    if sigstruct.len() != 1808 {
        bail!("a SIGSTRUCT is 1808 bytes, not {}", sigstruct.len());
    }
    if sigstruct[512..516] != [3, 0, 0, 0] {
        bail!("the SIGSTRUCT's exponent is not 3");
    }
    let modulus = &sigstruct[128..512];
    let key = rsa::RsaPublicKey::new(
        rsa::BigUint::from_bytes_le(modulus),
        rsa::BigUint::from(3u8),
    )?;
    let mut signature = sigstruct[516..900].to_vec();
    signature.reverse();
    let signed = [&sigstruct[..128], &sigstruct[900..1028]].concat();
    rsa::pkcs1v15::VerifyingKey::<Sha256>::new(key)
        .verify(
            &signed,
            &rsa::pkcs1v15::Signature::try_from(signature.as_slice())?,
        )
        .context("the SIGSTRUCT's signature does not verify")?;
    let mut mr_enclave = [0u8; 32];
    mr_enclave.copy_from_slice(&sigstruct[960..992]);
    Ok(Initialised {
        mr_enclave,
        mr_signer: Sha256::digest(modulus).into(),
        debug: sigstruct[928] & 0x2 != 0,
    })
}

/// The host path of `path` inside the enclave, through the manifest's
/// `fs.mounts` (the longest mount that holds it); relative URIs are the
/// loader's working folder's.
fn host_path(mounts: &[(String, PathBuf)], path: &str) -> Option<PathBuf> {
    mounts
        .iter()
        .filter(|(inside, _)| {
            path == inside
                || path
                    .strip_prefix(inside.as_str())
                    .is_some_and(|rest| rest.starts_with('/'))
        })
        .max_by_key(|(inside, _)| inside.len())
        .map(|(inside, host)| {
            let rest = path[inside.len()..].trim_start_matches('/');
            if rest.is_empty() {
                host.clone()
            } else {
                host.join(rest)
            }
        })
}

/// Makes this process's mounts its own, so the device it mounts is seen
/// by the enclave's processes only.
#[allow(unsafe_code)]
fn own_mount_namespace() -> anyhow::Result<()> {
    // SAFETY: unshare and mount take no pointers but the constant strings.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNS) != 0 {
            bail!(
                "cannot make a mount namespace: {}",
                std::io::Error::last_os_error()
            );
        }
        let root = c"/";
        if libc::mount(
            std::ptr::null(),
            root.as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ) != 0
        {
            bail!(
                "cannot make the mounts private: {}",
                std::io::Error::last_os_error()
            );
        }
    }
    Ok(())
}

fn env_path(name: &str) -> anyhow::Result<PathBuf> {
    std::env::var_os(name)
        .map(PathBuf::from)
        .with_context(|| format!("{name} is not set"))
}

/// The loader: builds, checks and runs the enclave of `stem` in the
/// current folder; the entry point's exit code.
#[allow(unsafe_code)]
pub fn run(stem: &str) -> anyhow::Result<i32> {
    let cwd = std::env::current_dir()?;
    let manifest = std::fs::read(cwd.join(format!("{stem}.manifest.sgx")))
        .with_context(|| format!("cannot read {stem}.manifest.sgx"))?;
    let sigstruct = std::fs::read(cwd.join(format!("{stem}.sig")))
        .with_context(|| format!("cannot read {stem}.sig"))?;
    let layout: serde_json::Value = serde_json::from_slice(
        &std::fs::read(env_path("MSE_EMULATED_GRAMINE_LAYOUT")?)
            .context("cannot read the layout")?,
    )?;
    let device = std::env::var_os("MSE_EMULATED_ATTESTATION_ROOT")
        .map_or_else(|| PathBuf::from("/dev/attestation"), PathBuf::from);

    let measured = measure(&layout, &manifest)?;
    let initialised = einit(&sigstruct)?;
    if initialised.mr_enclave != measured {
        bail!(
            "EINIT refused: the SIGSTRUCT is for {}, the enclave built measures {}",
            hex::encode(initialised.mr_enclave),
            hex::encode(measured)
        );
    }
    if initialised.debug {
        bail!("this emulation starts production enclaves only");
    }
    let intel = Arc::new(EmulatedIntel::load(&env_path("MSE_EMULATED_INTEL")?)?);

    let text = std::str::from_utf8(&manifest).context("the manifest is not UTF-8")?;
    let manifest: toml::Table = text.parse().context("the manifest is not TOML")?;
    let mut mounts = Vec::new();
    for mount in manifest["fs"]["mounts"]
        .as_array()
        .context("no fs.mounts")?
    {
        let (Some(inside), Some(uri)) = (mount.get("path"), mount.get("uri")) else {
            continue;
        };
        let (Some(inside), Some(uri)) = (inside.as_str(), uri.as_str()) else {
            continue;
        };
        let host = uri
            .strip_prefix("file:")
            .context("a mount's uri is not file:")?;
        mounts.push((inside.to_string(), cwd.join(host)));
    }
    let entry = manifest["libos"]["entrypoint"]
        .as_str()
        .context("no libos.entrypoint")?;
    let entry = host_path(&mounts, entry).context("the entry point is not mounted")?;
    let argv: Vec<String> = manifest["loader"]["argv"]
        .as_array()
        .context("no loader.argv")?
        .iter()
        .filter_map(|a| a.as_str())
        .map(|a| host_path(&mounts, a).map_or_else(|| a.to_string(), |p| p.display().to_string()))
        .collect();
    let env: Vec<(String, String)> = manifest["loader"]["env"]
        .as_table()
        .context("no loader.env")?
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
        .collect();

    own_mount_namespace()?;
    let _session = EmulatedAttestation::mount_on(
        Enclave {
            intel,
            mr_enclave: measured,
            mr_signer: initialised.mr_signer,
        },
        &device,
    )
    .with_context(|| {
        format!(
            "cannot mount the attestation device on {}",
            device.display()
        )
    })?;

    let mut command = std::process::Command::new(&entry);
    command.args(argv.iter().skip(1)).env_clear().envs(env);
    // SAFETY: prctl is async-signal-safe. The enclave stops (SIGTERM) when
    // its loader does, as a real enclave does with its host process.
    unsafe {
        use std::os::unix::process::CommandExt as _;
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let status = command
        .status()
        .with_context(|| format!("cannot run {}", entry.display()))?;
    Ok(status.code().unwrap_or(1))
}

/// `main` of `mse-emulated-gramine-sgx`.
pub fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let [_, stem] = args.as_slice() else {
        eprintln!("usage: mse-emulated-gramine-sgx STEM (in the folder of STEM.manifest.sgx)");
        return ExitCode::from(2);
    };
    match run(stem) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_through_the_longest_mount() {
        let mounts = vec![
            ("/mse/work".to_string(), PathBuf::from("/nodes/u1")),
            (
                "/mse/bin/mse-run".to_string(),
                PathBuf::from("/usr/bin/mse-run"),
            ),
            ("/lib".to_string(), PathBuf::from("/gramine/glibc")),
        ];
        assert_eq!(
            host_path(&mounts, "/mse/work/launch.json"),
            Some(PathBuf::from("/nodes/u1/launch.json"))
        );
        assert_eq!(
            host_path(&mounts, "/mse/bin/mse-run"),
            Some(PathBuf::from("/usr/bin/mse-run"))
        );
        assert_eq!(host_path(&mounts, "/library"), None);
        assert_eq!(host_path(&mounts, "--launch"), None);
    }
}
