//! The image catalog: which runtime images the platform approves, and the
//! locked Python environment that stands in for each (docs/catalog.md).
//!
//! A catalog is operator input, parsed and checked here with no I/O: every
//! entry names Python as `major.minor` and pins every package, transitive
//! ones included, to one version and its file hash, so two hosts build the
//! same environment and the spec digest names exactly what runs.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::RuntimeError;

/// The catalog shipped with the platform.
pub const DEFAULT_CATALOG: &str = include_str!("default-catalog.toml");

/// One approved image and the environment standing in for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageSpec {
    /// The image reference, as apps name it in `code.docker`.
    pub reference: String,
    /// Python `major.minor` the environment is built with.
    pub python: String,
    /// Built when the server starts, so the first deploy does not wait.
    #[serde(default)]
    pub prepare: bool,
    /// What the entry reproduces (the image's Dockerfile), for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The image's own direct packages, as its Dockerfile pins them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requested: Vec<String>,
    /// The lock: `name==version --hash=sha256:HEX`, every package installed.
    pub packages: Vec<String>,
    /// The runtime's reference measurements on each TEE the operator
    /// supports for this image (docs/attestation.md). Not part of the spec
    /// digest: they describe the node image, not the environment.
    #[serde(default, skip_serializing_if = "TeeReferences::is_empty")]
    pub tee: TeeReferences,
}

/// Reference measurements of an image's runtime, per TEE.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeeReferences {
    /// TDX: the node image's MRTD and RTMR0–2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tdx: Option<TdxReference>,
    /// SEV-SNP: the node image's launch MEASUREMENT and guest POLICY.
    #[serde(rename = "sev-snp", default, skip_serializing_if = "Option::is_none")]
    pub sev_snp: Option<SnpReference>,
    /// SGX under Gramine: per enclave size, the signed manifest as a
    /// template and the enclave's layout around it, from which verifiers
    /// replay each app's MRENCLAVE (`[[image.tee.sgx]]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sgx: Vec<mse_attest::enclave::SgxEnclave>,
}

/// A TDX runtime: 96 hex digits each.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TdxReference {
    /// MRTD: the TD's firmware.
    pub mr_td: String,
    /// RTMR0: the firmware's configuration.
    pub rtmr0: String,
    /// RTMR1: kernel and boot loader.
    pub rtmr1: String,
    /// RTMR2: command line and initrd.
    pub rtmr2: String,
}

/// An SEV-SNP runtime.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnpReference {
    /// MEASUREMENT, 96 hex digits.
    pub measurement: String,
    /// The guest POLICY, `0x` and hex digits (debugging must be off).
    pub policy: String,
    /// The lowest TCB that is up to date, `bl=N tee=N snp=N ucode=N [fmc=N]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_tcb: Option<String>,
}

impl TeeReferences {
    fn is_empty(&self) -> bool {
        self.tdx.is_none() && self.sev_snp.is_none() && self.sgx.is_empty()
    }
}

/// `0x` and hex digits, as a number.
fn policy_value(text: &str) -> Option<u64> {
    let digits = text.strip_prefix("0x")?;
    u64::from_str_radix(digits, 16).ok()
}

impl ImageSpec {
    /// Digest of the environment spec (hex): Python version and sorted
    /// locked packages, length-prefixed. The reference and the descriptive
    /// fields are not part of it: images with one lock share one environment.
    pub fn digest(&self) -> String {
        let mut packages = self.packages.clone();
        packages.sort();
        let mut h = Sha256::new();
        let mut field = |value: &str| {
            h.update((value.len() as u32).to_be_bytes());
            h.update(value.as_bytes());
        };
        field("mse-runtime-spec-v1");
        field(&self.python);
        for package in &packages {
            field(package);
        }
        hex::encode(h.finalize())
    }

    /// The lock as a requirements file for `--require-hashes --no-deps`.
    pub fn lock_file(&self) -> String {
        let mut text = String::new();
        for package in &self.packages {
            text.push_str(package);
            text.push('\n');
        }
        text
    }

    /// The reference measurements of this image's runtime, as verifiers
    /// compare them, named `TEE reference of REFERENCE`.
    pub fn references(&self) -> Vec<mse_attest::verify::Reference> {
        use mse_attest::verify::{Reference, Tee};
        let mut references = Vec::new();
        if let Some(tdx) = &self.tee.tdx {
            references.push(Reference {
                tee: Tee::Tdx,
                name: format!("tdx reference of {}", self.reference),
                measurements: [
                    ("mr_td", &tdx.mr_td),
                    ("rtmr0", &tdx.rtmr0),
                    ("rtmr1", &tdx.rtmr1),
                    ("rtmr2", &tdx.rtmr2),
                ]
                .into_iter()
                .map(|(name, value)| (name.to_string(), value.to_ascii_lowercase()))
                .collect(),
            });
        }
        if let Some(snp) = &self.tee.sev_snp {
            let policy =
                policy_value(&snp.policy).map_or_else(|| snp.policy.clone(), |p| format!("{p:#x}"));
            references.push(Reference {
                tee: Tee::SevSnp,
                name: format!("sev-snp reference of {}", self.reference),
                measurements: vec![
                    (
                        "measurement".to_string(),
                        snp.measurement.to_ascii_lowercase(),
                    ),
                    ("policy".to_string(), policy),
                ],
            });
        }
        references
    }

    /// This image's SGX enclaves, as verifiers replay them, named
    /// `sgx reference of REFERENCE (SIZE)`.
    pub fn sgx_enclaves(&self) -> Vec<mse_attest::verify::EnclaveReference> {
        self.tee
            .sgx
            .iter()
            .map(|enclave| mse_attest::verify::EnclaveReference {
                name: format!(
                    "sgx reference of {} ({})",
                    self.reference, enclave.enclave_size
                ),
                enclave: enclave.clone(),
                replayed: None,
            })
            .collect()
    }

    /// The SEV-SNP minimum TCB of this image's runtime, if it names one.
    pub fn snp_min_tcb(&self) -> Option<mse_attest::snp::Tcb> {
        self.tee.sev_snp.as_ref()?.min_tcb.as_ref()?.parse().ok()
    }

    /// Problems of the `tee` table, each a sentence.
    fn tee_problems(&self, problems: &mut Vec<String>) {
        let name = &self.reference;
        let hex96 = |what: &str, value: &str, problems: &mut Vec<String>| {
            if value.len() != 96 || !value.bytes().all(|b| b.is_ascii_hexdigit()) {
                problems.push(format!(
                    "`{name}`: tee.{what} = \"{value}\" must be 96 hex digits (48 bytes)"
                ));
            }
        };
        if let Some(tdx) = &self.tee.tdx {
            hex96("tdx.mr_td", &tdx.mr_td, problems);
            hex96("tdx.rtmr0", &tdx.rtmr0, problems);
            hex96("tdx.rtmr1", &tdx.rtmr1, problems);
            hex96("tdx.rtmr2", &tdx.rtmr2, problems);
        }
        if let Some(snp) = &self.tee.sev_snp {
            hex96("sev-snp.measurement", &snp.measurement, problems);
            match policy_value(&snp.policy) {
                None => problems.push(format!(
                    "`{name}`: tee.sev-snp.policy = \"{}\" must be 0x and hex digits, such as \"0x30000\"",
                    snp.policy
                )),
                Some(policy) if policy & (1 << 19) != 0 => problems.push(format!(
                    "`{name}`: tee.sev-snp.policy {} allows debugging (bit 19): no app's secrets would be safe",
                    snp.policy
                )),
                Some(_) => {}
            }
            if let Some(tcb) = &snp.min_tcb {
                if let Err(why) = tcb.parse::<mse_attest::snp::Tcb>() {
                    problems.push(format!("`{name}`: tee.sev-snp.min_tcb: {why}"));
                }
            }
        }
        let mut sizes = Vec::new();
        for enclave in &self.tee.sgx {
            let size = &enclave.enclave_size;
            for problem in enclave.problems() {
                problems.push(format!("`{name}`: tee.sgx ({size}): {problem}"));
            }
            if sizes.contains(&size) {
                problems.push(format!(
                    "`{name}`: tee.sgx names the enclave size {size} twice"
                ));
            }
            sizes.push(size);
        }
    }

    /// Problems of this entry, each a sentence.
    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        self.tee_problems(&mut problems);
        let name = &self.reference;
        if self.reference.trim().is_empty() {
            problems.push("an image has an empty `reference`".to_string());
        }
        if !is_major_minor(&self.python) {
            problems.push(format!(
                "`{name}`: python = \"{}\" must be a major.minor version such as \"3.11\"",
                self.python
            ));
        }
        if self.packages.is_empty() {
            problems.push(format!("`{name}`: `packages` is empty"));
        }
        let mut seen = std::collections::BTreeSet::new();
        for line in &self.packages {
            match parse_locked(line) {
                Ok(package) => {
                    if !seen.insert(package.clone()) {
                        problems.push(format!("`{name}`: `{package}` is listed twice"));
                    }
                }
                Err(why) => problems.push(format!("`{name}`: package \"{line}\": {why}")),
            }
        }
        problems
    }
}

/// Python `major.minor`, digits only.
fn is_major_minor(version: &str) -> bool {
    let mut parts = version.split('.');
    let digits =
        |p: Option<&str>| p.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    digits(parts.next()) && digits(parts.next()) && parts.next().is_none()
}

/// Checks one lock line, `name==version --hash=sha256:HEX [--hash=…]`, and
/// returns its normalized package name.
fn parse_locked(line: &str) -> Result<String, String> {
    let mut words = line.split_whitespace();
    let pin = words.next().ok_or("empty line")?;
    let (name, version) = pin
        .split_once("==")
        .ok_or("must pin an exact version as `name==version`")?;
    let name_ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !name_ok {
        return Err(format!("`{name}` is not a package name"));
    }
    let version_ok = !version.is_empty()
        && version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'+' | b'!' | b'-' | b'_'));
    if !version_ok {
        return Err(format!("`{version}` is not an exact version"));
    }
    let mut hashes = 0;
    for word in words {
        let hex = word
            .strip_prefix("--hash=sha256:")
            .ok_or_else(|| format!("`{word}`: only `--hash=sha256:HEX` may follow the pin"))?;
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("`{word}` is not a SHA-256 hash"));
        }
        hashes += 1;
    }
    if hashes == 0 {
        return Err("needs the hash of its file (`--hash=sha256:HEX`)".into());
    }
    Ok(name.to_ascii_lowercase().replace(['_', '.'], "-"))
}

/// What hardware evidence is checked against from a catalog: see
/// [`Catalog::signed_references`].
#[derive(Debug, Clone, Default)]
pub struct SignedReferences {
    /// The runtimes' reference measurements (none when not signed).
    pub references: Vec<mse_attest::verify::Reference>,
    /// Why the catalog's references are not used.
    pub refused: Option<String>,
    /// The SEV-SNP minimum TCB.
    pub snp_min_tcb: Option<mse_attest::snp::Tcb>,
    /// The SGX enclaves whose MRENCLAVE is replayed.
    pub sgx_enclaves: Vec<mse_attest::verify::EnclaveReference>,
}

/// The operator's image allow-list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    /// Approved images.
    #[serde(rename = "image", default)]
    pub images: Vec<ImageSpec>,
}

impl Catalog {
    /// Parses catalog text; `origin` names it in errors. Every problem of
    /// the file is reported at once.
    pub fn parse(origin: &str, text: &str) -> Result<Self, RuntimeError> {
        let catalog: Catalog = toml::from_str(text).map_err(|e| {
            let at = e
                .span()
                .map(|span| {
                    let before = &text[..span.start.min(text.len())];
                    let line = before.matches('\n').count() + 1;
                    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                    format!("{line}:{column}: ")
                })
                .unwrap_or_default();
            RuntimeError::Catalog(origin.into(), format!("{at}{}", e.message()))
        })?;
        catalog.check(origin)?;
        Ok(catalog)
    }

    /// Checks a catalog received as a document (from the platform).
    pub fn check(&self, origin: &str) -> Result<(), RuntimeError> {
        let mut problems: Vec<String> = self.images.iter().flat_map(ImageSpec::problems).collect();
        let mut seen = std::collections::BTreeSet::new();
        for image in &self.images {
            if !seen.insert(image.reference.as_str()) {
                problems.push(format!("`{}` is listed twice", image.reference));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(RuntimeError::Catalog(origin.into(), problems.join("; ")))
        }
    }

    /// The default catalog.
    pub fn default_catalog() -> Self {
        Catalog::parse("default", DEFAULT_CATALOG).unwrap_or(Catalog { images: Vec::new() })
    }

    /// The reference measurements a verifier may use from this catalog
    /// (which came from `origin`, for messages): all of them when the
    /// platform's enclave-signing key (`signer_pem`) made `signature` over
    /// [`Catalog::references_message`], none otherwise (and why); the SGX
    /// enclaves and SEV-SNP minimum TCB of `image` (every image's, and the
    /// strictest TCB, when it is not known).
    pub fn signed_references(
        &self,
        origin: &str,
        signature: Option<&str>,
        signer_pem: Option<&str>,
        image: Option<&str>,
    ) -> SignedReferences {
        let refused = match (self.references_message(), signature, signer_pem) {
            (None, _, _) => None,
            (Some(_), None, _) => Some(format!(
                "the reference measurements of {origin} are not signed: they are not used"
            )),
            (Some(_), Some(_), None) => Some(
                "the platform's signer key is unknown (give --signer-key or log in): the \
                 catalog's reference measurements cannot be checked"
                    .to_string(),
            ),
            (Some(message), Some(signature), Some(pem)) => {
                mse_attest::signer::verify(pem, &message, signature)
                    .err()
                    .map(|e| {
                        format!(
                            "the reference measurements of {origin} are not signed by the \
                             platform's enclave-signing key ({e}): they are not used"
                        )
                    })
            }
        };
        let spec = image.and_then(|image| self.find(image).ok());
        let (references, sgx_enclaves) = match (&refused, spec) {
            (Some(_), _) => (Vec::new(), Vec::new()),
            (None, spec) => (
                self.images.iter().flat_map(ImageSpec::references).collect(),
                // Each SGX enclave is a replay of its measurement: the
                // image's only, when it is known.
                match spec {
                    Some(spec) => spec.sgx_enclaves(),
                    None => self
                        .images
                        .iter()
                        .flat_map(ImageSpec::sgx_enclaves)
                        .collect(),
                },
            ),
        };
        let snp_min_tcb = match spec {
            Some(spec) => spec.snp_min_tcb(),
            None => self
                .images
                .iter()
                .filter_map(ImageSpec::snp_min_tcb)
                .reduce(|a, b| mse_attest::snp::Tcb {
                    bootloader: a.bootloader.max(b.bootloader),
                    tee: a.tee.max(b.tee),
                    snp: a.snp.max(b.snp),
                    microcode: a.microcode.max(b.microcode),
                    fmc: a.fmc.max(b.fmc),
                }),
        };
        SignedReferences {
            references,
            refused,
            snp_min_tcb,
            sgx_enclaves,
        }
    }

    /// The spec of an approved image.
    pub fn find(&self, reference: &str) -> Result<&ImageSpec, RuntimeError> {
        self.images
            .iter()
            .find(|i| i.reference == reference)
            .ok_or_else(|| {
                RuntimeError::UnknownImage(
                    reference.to_string(),
                    self.suggest(reference).join(", "),
                )
            })
    }

    /// The approved references to offer instead of `reference`: every tag of
    /// its repository when the catalog has some (newest first), else the
    /// newest tag of each repository.
    pub fn suggest(&self, reference: &str) -> Vec<&str> {
        let repository = |r: &str| r.rsplit_once(':').map_or(r, |(name, _)| name).to_string();
        let wanted = repository(reference);
        let mut same: Vec<&str> = self
            .images
            .iter()
            .map(|i| i.reference.as_str())
            .filter(|r| repository(r) == wanted)
            .collect();
        if !same.is_empty() {
            same.sort_unstable_by(|a, b| b.cmp(a));
            return same;
        }
        let mut newest: Vec<&str> = Vec::new();
        for image in &self.images {
            let r = image.reference.as_str();
            match newest.iter_mut().find(|n| repository(n) == repository(r)) {
                Some(n) if r > *n => *n = r,
                Some(_) => {}
                None => newest.push(r),
            }
        }
        newest
    }

    /// Digest of the whole catalog (hex), what clients compare to know
    /// their copy is the platform's current one.
    pub fn digest(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"mse-catalog-v1");
        // Serializing plain strings, bools and lists cannot fail.
        h.update(serde_json::to_vec(&self.images).unwrap_or_default());
        hex::encode(h.finalize())
    }

    /// The catalog as the platform publishes it.
    pub fn publish(&self) -> PublishedCatalog {
        PublishedCatalog {
            digest: self.digest(),
            images: self.images.clone(),
            references_signature: None,
        }
    }

    /// What the platform signs with its enclave-signing key so that a
    /// verifier can take the runtimes' reference measurements from any copy
    /// of the catalog: every image that has some, in order, with its
    /// references. `None` when no image has any.
    pub fn references_message(&self) -> Option<Vec<u8>> {
        #[derive(Serialize)]
        struct Entry<'a> {
            reference: &'a str,
            tee: &'a TeeReferences,
        }
        let entries: Vec<Entry<'_>> = self
            .images
            .iter()
            .filter(|image| !image.tee.is_empty())
            .map(|image| Entry {
                reference: &image.reference,
                tee: &image.tee,
            })
            .collect();
        if entries.is_empty() {
            return None;
        }
        let mut message = b"mse-catalog-references-v1\n".to_vec();
        // Serializing strings and options cannot fail.
        message.extend(serde_json::to_vec(&entries).unwrap_or_default());
        Some(message)
    }
}

/// The catalog as `GET /catalog` serves it and clients keep it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedCatalog {
    /// [`Catalog::digest`] of `images`.
    pub digest: String,
    /// The approved images.
    pub images: Vec<ImageSpec>,
    /// The platform's signature (enclave-signing key, RSASSA-PKCS1-v1_5
    /// SHA-256, base64) of [`Catalog::references_message`], when images
    /// have reference measurements.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub references_signature: Option<String>,
}

impl PublishedCatalog {
    /// The catalog, once its entries and digest check out.
    pub fn into_catalog(self, origin: &str) -> Result<Catalog, RuntimeError> {
        let catalog = Catalog {
            images: self.images,
        };
        catalog.check(origin)?;
        if catalog.digest() != self.digest {
            return Err(RuntimeError::Catalog(
                origin.into(),
                "its digest does not match its images".into(),
            ));
        }
        Ok(catalog)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str =
        "--hash=sha256:ba0efaa9080b619ff2f3459d1d500c57bddea4a6b424b60a91141db6fd2f08bc";

    fn entry(python: &str, packages: &[&str]) -> String {
        let packages: Vec<String> = packages.iter().map(|p| format!("\"{p}\"")).collect();
        format!(
            "[[image]]\nreference = \"r\"\npython = \"{python}\"\npackages = [{}]\n",
            packages.join(", ")
        )
    }

    #[test]
    fn default_catalog_approves_the_seed_image_with_a_locked_flask_and_hypercorn() {
        let catalog = Catalog::parse("default", DEFAULT_CATALOG).unwrap();
        let spec = catalog
            .find("ghcr.io/cosmian/mse-flask:20230124182826")
            .unwrap();
        assert!(is_major_minor(&spec.python), "{}", spec.python);
        assert!(spec.packages.iter().any(|p| p.starts_with("flask==")));
        assert!(spec.packages.iter().any(|p| p.starts_with("hypercorn==")));
        assert!(spec.packages.iter().all(|p| p.contains("--hash=sha256:")));
    }

    #[test]
    fn unknown_images_are_refused_with_the_approved_list() {
        let err = Catalog::default_catalog()
            .find("ghcr.io/x/y:1")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("not in the runtime catalog") && err.contains("mse-flask"),
            "{err}"
        );
    }

    #[test]
    fn an_unknown_tag_of_a_known_image_is_offered_that_image_s_tags_newest_first() {
        let catalog = Catalog::default_catalog();
        let err = catalog
            .find("ghcr.io/cosmian/mse-pytorch:latest")
            .unwrap_err()
            .to_string();
        assert!(
            err.ends_with(
                "approved images: ghcr.io/cosmian/mse-pytorch:20230228091413, \
                 ghcr.io/cosmian/mse-pytorch:20230124183015, \
                 ghcr.io/cosmian/mse-pytorch:20230104085621"
            ),
            "{err}"
        );
        // An unknown repository is offered the newest tag of each one.
        let offered = catalog.suggest("ghcr.io/x/y:1");
        assert!(offered.contains(&"ghcr.io/cosmian/mse-flask:20230810125234"));
        assert!(!offered.contains(&"ghcr.io/cosmian/mse-flask:20230710125733"));
        let repositories: std::collections::BTreeSet<&str> = catalog
            .images
            .iter()
            .map(|i| i.reference.rsplit_once(':').unwrap().0)
            .collect();
        assert_eq!(offered.len(), repositories.len());
    }

    #[test]
    fn the_default_catalog_holds_every_tag_named_in_cosmian_s_2023_material() {
        // Named by mse-cli 0.10's documentation, templates and tests, and by
        // the mse-app-demo examples across their history (the list
        // crates/mse-runtime/catalog-sources.toml documents).
        let named = [
            "mse-flask:20230110142022",
            "mse-flask:20230119150226",
            "mse-flask:20230124182826",
            "mse-flask:20230228091325",
            "mse-flask:20230710125733",
            "mse-flask:20230720104849",
            "mse-flask:20230810125234",
            "mse-flask-digitrecognition:20230130144632",
            "mse-fastapi:20230216144400",
            "mse-fastapi:20230217102036",
            "mse-fastapi:20230228091443",
            "mse-fastapi:20230710125732",
            "mse-fastapi:20230720104850",
            "mse-fastapi:20230810125234",
            "mse-ds:20230228091517",
            "mse-ds:20230720104849",
            "mse-ds:20230810125234",
            "mse-tensorflow:20230223165539",
            "mse-tensorflow:20230228091041",
            "mse-tensorflow:20230720104852",
            "mse-pytorch:20230104085621",
            "mse-pytorch:20230124183015",
            "mse-pytorch:20230228091413",
            "mse-nlp:20230228091156",
            "mse-nlp:20230720104849",
            "mse-nlp:20230810125235",
            "mse-anonymization:20230126164002",
            "mse-anonymization:20230223164502",
            "mse-anonymization:20230228091120",
            "mse-anonymization:20230720104849",
            "mse-anonymization:20230810125234",
            "mse-anonymization:20230906131952",
            "mse-base:20230104084742",
            "mse-base:20230109153953",
            "mse-base:20230110175558",
            "mse-base:20230117101643",
            "mse-base:20230119145805",
            "mse-base:20230124103230",
            "mse-base:20230124175013",
            "mse-base:20230223111016",
            "mse-base:20230228084503",
            "mse-base:20230710124434",
            "mse-base:20230720095554",
            "mse-base:20230810124352",
        ];
        let catalog = Catalog::default_catalog();
        for tag in named {
            let spec = catalog
                .find(&format!("ghcr.io/cosmian/{tag}"))
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(
                spec.packages.iter().any(|p| p.starts_with("hypercorn==")),
                "{tag} has no hypercorn"
            );
        }
        // Named only to be refused, as the original refused them.
        for tag in ["mse-pytorch:latest", "mse-pytorch:notexist"] {
            assert!(catalog.find(&format!("ghcr.io/cosmian/{tag}")).is_err());
        }
        assert_eq!(catalog.images.len(), named.len());
    }

    #[test]
    fn tee_references_are_read_checked_and_named_by_tee_and_image() {
        let pin = "a==1 --hash=sha256:".to_string() + &"ab".repeat(32);
        let entry = |tee: &str| {
            format!(
                "[[image]]\nreference = \"r\"\npython = \"3.11\"\npackages = [\"{pin}\"]\n{tee}"
            )
        };
        let good = entry(&format!(
            "[image.tee.tdx]\nmr_td = \"{a}\"\nrtmr0 = \"{a}\"\nrtmr1 = \"{a}\"\nrtmr2 = \"{a}\"\n\
             [image.tee.sev-snp]\nmeasurement = \"{b}\"\npolicy = \"0x00030000\"\n\
             min_tcb = \"bl=3 tee=0 snp=8 ucode=115\"\n",
            a = "A1".repeat(48),
            b = "b2".repeat(48)
        ));
        let catalog = Catalog::parse("test", &good).unwrap();
        let image = &catalog.images[0];
        let references = image.references();
        assert_eq!(references.len(), 2);
        assert_eq!(references[0].name, "tdx reference of r");
        assert_eq!(
            references[0].measurements[0],
            ("mr_td".into(), "a1".repeat(48))
        );
        assert_eq!(
            references[1].measurements[1],
            ("policy".into(), "0x30000".into())
        );
        assert_eq!(image.snp_min_tcb().map(|t| t.snp), Some(8));
        // The references are not part of the environment's digest.
        let bare = Catalog::parse("test", &entry("")).unwrap();
        assert_eq!(bare.images[0].digest(), image.digest());
        assert_ne!(bare.digest(), catalog.digest());

        for (bad, says) in [
            (
                "[image.tee.tdx]\nmr_td = \"00\"\nrtmr0 = \"00\"\nrtmr1 = \"00\"\nrtmr2 = \"00\"\n",
                "96 hex digits",
            ),
            (
                "[image.tee.sev-snp]\nmeasurement = \"00\"\npolicy = \"0x30000\"\n",
                "96 hex digits",
            ),
            ("[image.tee.sev-snp]\npolicy = \"0x30000\"\n", "measurement"),
            ("[image.tee.sgx2]\nx = \"1\"\n", "sgx2"),
        ] {
            let err = Catalog::parse("test", &entry(bad)).unwrap_err().to_string();
            assert!(err.contains(says), "{bad}: {err}");
        }
        let debug = entry(&format!(
            "[image.tee.sev-snp]\nmeasurement = \"{}\"\npolicy = \"0xb0000\"\n",
            "00".repeat(48)
        ));
        let err = Catalog::parse("test", &debug).unwrap_err().to_string();
        assert!(err.contains("allows debugging"), "{err}");
    }

    #[test]
    fn sgx_enclaves_are_read_checked_named_and_replay_for_a_fingerprint() {
        let pin = "a==1 --hash=sha256:".to_string() + &"ab".repeat(32);
        let manifest = format!("[loader.env]\nMSE_FINGERPRINT = \"{}\"\n", "0".repeat(64));
        let enclave = |size: &str, bytes: u64, manifest: &str| {
            format!(
                "[[image.tee.sgx]]\nenclave_size = \"{size}\"\nmanifest = {manifest:?}\n\
                 [image.tee.sgx.layout]\nenclave_size = {bytes}\nssa_frame_pages = 1\n\
                 manifest_offset = {}\nmanifest_pages = 1\nmanifest_flags = 0x201\n\
                 [[image.tee.sgx.layout.areas]]\noffset = 0\npages = 16\nflags = 0x207\n\
                 measured = false\n",
                bytes - 4096
            )
        };
        let entry = |tee: &str| {
            format!(
                "[[image]]\nreference = \"r\"\npython = \"3.11\"\npackages = [\"{pin}\"]\n{tee}"
            )
        };
        let good = entry(&(enclave("1M", 1 << 20, &manifest) + &enclave("2M", 2 << 20, &manifest)));
        let catalog = Catalog::parse("test", &good).unwrap();
        let enclaves = catalog.images[0].sgx_enclaves();
        assert_eq!(enclaves.len(), 2);
        assert_eq!(enclaves[0].name, "sgx reference of r (1M)");
        let a = enclaves[0].enclave.mr_enclave(&[1; 32]).unwrap();
        assert_ne!(a, enclaves[0].enclave.mr_enclave(&[2; 32]).unwrap());
        assert_ne!(a, enclaves[1].enclave.mr_enclave(&[1; 32]).unwrap());
        // Signed with the other references.
        let message = String::from_utf8(catalog.references_message().unwrap()).unwrap();
        assert!(message.contains("MSE_FINGERPRINT"), "{message}");

        for (bad, says) in [
            (enclave("1M", 2 << 20, &manifest), "not the layout's"),
            (enclave("1M", 1 << 20, "[loader.env]\n"), "MSE_FINGERPRINT"),
            (
                enclave("1M", 1 << 20, &manifest) + &enclave("1M", 1 << 20, &manifest),
                "twice",
            ),
            (enclave("1M", 3 << 20, &manifest), "power of two"),
        ] {
            let err = Catalog::parse("test", &entry(&bad))
                .unwrap_err()
                .to_string();
            assert!(err.contains(says), "{says}: {err}");
        }
    }

    #[test]
    fn digest_depends_on_the_environment_not_on_package_order_or_reference() {
        let spec = |reference: &str, python: &str, packages: &[&str]| ImageSpec {
            reference: reference.into(),
            python: python.into(),
            prepare: false,
            source: None,
            requested: Vec::new(),
            packages: packages.iter().map(|p| p.to_string()).collect(),
            tee: TeeReferences::default(),
        };
        let a = spec("r1", "3.11", &["a==1", "b==2"]);
        let b = spec("r2", "3.11", &["b==2", "a==1"]);
        assert_eq!(a.digest(), b.digest());
        assert_ne!(a.digest(), spec("r1", "3.11", &["a==1", "b==3"]).digest());
        assert_ne!(a.digest(), spec("r1", "3.12", &["a==1", "b==2"]).digest());
    }

    #[test]
    fn unlocked_entries_are_refused_naming_each_problem() {
        let bad = [
            (entry("3", &[&format!("a==1 {HASH}")]), "major.minor"),
            (entry("3.11", &["flask"]), "exact version"),
            (entry("3.11", &["flask>=2"]), "exact version"),
            (entry("3.11", &["flask==2.2.2"]), "needs the hash"),
            (entry("3.11", &["--index-url=http://evil"]), "exact version"),
            (
                entry("3.11", &["a==1 --hash=sha256:abc"]),
                "is not a SHA-256 hash",
            ),
            (
                entry("3.11", &[&format!("a==1 {HASH} --index-url=x")]),
                "only `--hash=sha256:HEX`",
            ),
            (
                entry("3.11", &[&format!("a==1 {HASH}"), &format!("A==2 {HASH}")]),
                "listed twice",
            ),
            (
                format!("{}extra = 1\n", entry("3.11", &[])),
                "unknown field",
            ),
        ];
        for (text, wanted) in bad {
            let err = Catalog::parse("t", &text).unwrap_err().to_string();
            assert!(err.contains(wanted), "{text}\n=> {err}");
        }
        let two = format!("{}\n{}", entry("3", &[]), entry("3.11", &["x"]));
        let err = Catalog::parse("t", &two).unwrap_err().to_string();
        assert!(
            err.contains("major.minor")
                && err.contains("`packages` is empty")
                && err.contains("exact version"),
            "{err}"
        );
    }

    #[test]
    fn published_catalogs_are_checked_against_their_digest() {
        let catalog = Catalog::default_catalog();
        let published = catalog.publish();
        assert_eq!(published.clone().into_catalog("p").unwrap(), catalog);
        let mut tampered = published;
        tampered.images[0].packages.pop();
        assert!(tampered.into_catalog("p").is_err());
    }
}
