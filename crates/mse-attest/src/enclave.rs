//! MRENCLAVE of an app's SGX enclave, replayed from what the catalog
//! publishes (docs/attestation.md, "Recomputing MRENCLAVE without Docker").
//!
//! SGX measures an enclave while it is built: MRENCLAVE is the SHA-256 of a
//! 64-byte ECREATE record, then, page by page in the order the loader adds
//! them, a 64-byte EADD record and, for each measured 256-byte chunk, a
//! 64-byte EEXTEND record followed by the chunk (Intel SDM vol. 3D,
//! "Enclave measurement"). Gramine adds the app's manifest first, right
//! after ECREATE; every other page (thread control structures, stacks,
//! Gramine's PAL, the unmeasured heap) is the same for every app of an
//! image and enclave size whose manifests have the same length. The
//! catalog therefore publishes, per image and enclave size, a [`Layout`]
//! (where the manifest goes, and the pages after it) and the signed
//! manifest as a template whose fingerprint is zeros; [`SgxEnclave::mr_enclave`]
//! renders the app's manifest and replays the measurement.
//!
//! Everything here is input from a catalog: every size is bounded and
//! every offset checked before any work, and nothing panics.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// An SGX page.
pub const PAGE: u64 = 4096;
/// The largest enclave whose measurement is replayed: 64 GiB, 16 Mi pages.
pub const MAX_ENCLAVE_SIZE: u64 = 64 << 30;
/// The largest manifest: 1 MiB.
pub const MAX_MANIFEST: usize = 1 << 20;
/// The largest explicit content of a layout: 64 MiB.
pub const MAX_CONTENT: usize = 64 << 20;
/// The environment variable of the manifest that holds the fingerprint.
pub const FINGERPRINT_KEY: &str = "MSE_FINGERPRINT";

/// SECINFO flags a page may have: R, W, X, and the page type (REG or TCS).
const FLAG_R: u64 = 0x1;
const FLAG_W: u64 = 0x2;
const FLAG_X: u64 = 0x4;
const PAGE_TYPE_TCS: u64 = 0x100;
const PAGE_TYPE_REG: u64 = 0x200;
const KNOWN_FLAGS: u64 = FLAG_R | FLAG_W | FLAG_X | PAGE_TYPE_TCS | PAGE_TYPE_REG;

/// Why a layout or a manifest cannot be measured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LayoutError(pub String);

fn fail<T>(message: impl Into<String>) -> Result<T, LayoutError> {
    Err(LayoutError(message.into()))
}

/// A run of pages added one after the other, with one SECINFO.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Area {
    /// The first page's offset from the enclave's base, page-aligned.
    pub offset: u64,
    /// How many pages.
    pub pages: u64,
    /// SECINFO.FLAGS: R 0x1, W 0x2, X 0x4, page type REG 0x200 or TCS 0x100.
    pub flags: u64,
    /// Whether the pages' contents are measured (EEXTEND); the heap is not.
    #[serde(default = "measured")]
    pub measured: bool,
    /// The pages' contents, base64, zero-padded to the area's size;
    /// absent for zero pages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

fn measured() -> bool {
    true
}

/// How an image's enclave is built around its manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layout {
    /// ECREATE's SIZE: the enclave's size in bytes, a power of two.
    pub enclave_size: u64,
    /// ECREATE's SSAFRAMESIZE, in pages.
    pub ssa_frame_pages: u32,
    /// Where the manifest's first page is added.
    pub manifest_offset: u64,
    /// How many pages the manifest (and its terminating zero byte) fills.
    pub manifest_pages: u64,
    /// The manifest pages' SECINFO.FLAGS.
    pub manifest_flags: u64,
    /// The pages added after the manifest, in order.
    pub areas: Vec<Area>,
}

/// One enclave size of an image on SGX, as the catalog publishes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SgxEnclave {
    /// The enclave size apps name (`4G`), for people.
    pub enclave_size: String,
    /// The signed manifest (`.manifest.sgx`) with the fingerprint as 64
    /// zeros: `MSE_FINGERPRINT = "000…0"`.
    pub manifest: String,
    /// The pages around the manifest.
    pub layout: Layout,
}

/// The 48-byte SECINFO prefix measured by EADD: FLAGS and zeros.
fn secinfo(flags: u64) -> [u8; 48] {
    let mut out = [0u8; 48];
    out[..8].copy_from_slice(&flags.to_le_bytes());
    out
}

/// A running enclave measurement.
struct Measurement {
    hash: Sha256,
}

impl Measurement {
    fn ecreate(ssa_frame_pages: u32, size: u64) -> Measurement {
        let mut record = [0u8; 64];
        record[..8].copy_from_slice(b"ECREATE\0");
        record[8..12].copy_from_slice(&ssa_frame_pages.to_le_bytes());
        record[12..20].copy_from_slice(&size.to_le_bytes());
        let mut hash = Sha256::new();
        hash.update(record);
        Measurement { hash }
    }

    /// EADD of the page at `offset`, then EEXTEND of its 16 chunks when
    /// `content` is given (4096 bytes).
    fn page(&mut self, offset: u64, flags: u64, content: Option<&[u8]>) {
        let mut record = [0u8; 64];
        record[..8].copy_from_slice(b"EADD\0\0\0\0");
        record[8..16].copy_from_slice(&offset.to_le_bytes());
        record[16..].copy_from_slice(&secinfo(flags));
        self.hash.update(record);
        let Some(content) = content else { return };
        for (i, chunk) in content.chunks(256).enumerate() {
            let mut record = [0u8; 64];
            record[..8].copy_from_slice(b"EEXTEND\0");
            record[8..16].copy_from_slice(&(offset + 256 * i as u64).to_le_bytes());
            self.hash.update(record);
            self.hash.update(chunk);
        }
    }

    fn finish(self) -> [u8; 32] {
        self.hash.finalize().into()
    }
}

const ZERO_PAGE: [u8; PAGE as usize] = [0; PAGE as usize];

impl Layout {
    /// The problems of this layout, each a sentence; empty when it can be
    /// replayed.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let size = self.enclave_size;
        if !size.is_power_of_two() || !(PAGE..=MAX_ENCLAVE_SIZE).contains(&size) {
            problems.push(format!(
                "enclave_size {size} must be a power of two from 4096 to {MAX_ENCLAVE_SIZE}"
            ));
            return problems;
        }
        if self.ssa_frame_pages == 0 || u64::from(self.ssa_frame_pages) > size / PAGE {
            problems.push(format!(
                "ssa_frame_pages {} must be from 1 to the enclave's pages",
                self.ssa_frame_pages
            ));
        }
        let mut spans = vec![(
            "the manifest".to_string(),
            self.manifest_offset,
            self.manifest_pages,
            self.manifest_flags,
        )];
        if self.manifest_pages == 0 {
            problems.push("the manifest must fill at least one page".into());
        }
        for (i, area) in self.areas.iter().enumerate() {
            spans.push((format!("area {i}"), area.offset, area.pages, area.flags));
        }
        let mut content = 0usize;
        for (i, area) in self.areas.iter().enumerate() {
            if let Some(text) = &area.content {
                match base64::engine::general_purpose::STANDARD.decode(text) {
                    Ok(bytes) => {
                        content = content.saturating_add(bytes.len());
                        if bytes.len() as u64 > area.pages.saturating_mul(PAGE) {
                            problems.push(format!(
                                "area {i}: its content ({} bytes) is larger than its {} pages",
                                bytes.len(),
                                area.pages
                            ));
                        }
                        if !area.measured {
                            problems.push(format!("area {i}: an unmeasured area has no content"));
                        }
                    }
                    Err(e) => problems.push(format!("area {i}: content is not base64: {e}")),
                }
            }
        }
        if content > MAX_CONTENT {
            problems.push(format!(
                "the areas' content ({content} bytes) exceeds {MAX_CONTENT}"
            ));
        }
        for (name, offset, pages, flags) in &spans {
            if offset % PAGE != 0 {
                problems.push(format!("{name}: offset {offset:#x} is not page-aligned"));
            }
            let end = pages
                .checked_mul(PAGE)
                .and_then(|bytes| offset.checked_add(bytes));
            if end.is_none_or(|end| end > size) {
                problems.push(format!(
                    "{name}: {pages} pages at {offset:#x} end past the enclave's {size:#x} bytes"
                ));
            }
            let page_type = flags & (PAGE_TYPE_REG | PAGE_TYPE_TCS);
            if flags & !KNOWN_FLAGS != 0
                || (page_type != PAGE_TYPE_REG && page_type != PAGE_TYPE_TCS)
            {
                problems.push(format!(
                    "{name}: flags {flags:#x} must be R/W/X (0x7) and one page type, REG (0x200) or TCS (0x100)"
                ));
            }
        }
        if !problems.is_empty() {
            return problems;
        }
        // No page is added twice.
        let mut sorted: Vec<&(String, u64, u64, u64)> = spans.iter().collect();
        sorted.sort_by_key(|(_, offset, _, _)| *offset);
        for pair in sorted.windows(2) {
            let (a, a_offset, a_pages, _) = pair[0];
            let (b, b_offset, _, _) = pair[1];
            if a_offset + a_pages * PAGE > *b_offset {
                problems.push(format!("{a} and {b} overlap at {b_offset:#x}"));
            }
        }
        problems
    }

    /// MRENCLAVE of the enclave built from this layout around `manifest`
    /// (the manifest's bytes; Gramine adds them with a terminating zero).
    pub fn mr_enclave(&self, manifest: &[u8]) -> Result<[u8; 32], LayoutError> {
        let problems = self.problems();
        if !problems.is_empty() {
            return fail(format!("the enclave layout: {}", problems.join("; ")));
        }
        if manifest.len() > MAX_MANIFEST {
            return fail(format!(
                "the manifest ({} bytes) exceeds {MAX_MANIFEST} bytes",
                manifest.len()
            ));
        }
        let pages = (manifest.len() as u64 + 1).div_ceil(PAGE);
        if pages != self.manifest_pages {
            return fail(format!(
                "the manifest ({} bytes) fills {pages} pages, the layout has {} for it",
                manifest.len(),
                self.manifest_pages
            ));
        }
        let mut m = Measurement::ecreate(self.ssa_frame_pages, self.enclave_size);
        let mut data = manifest.to_vec();
        data.resize((pages * PAGE) as usize, 0);
        for (i, page) in data.chunks(PAGE as usize).enumerate() {
            m.page(
                self.manifest_offset + i as u64 * PAGE,
                self.manifest_flags,
                Some(page),
            );
        }
        for area in &self.areas {
            // Checked by `problems`: the content decodes and fits.
            let content = match &area.content {
                Some(text) => base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .map_err(|e| LayoutError(e.to_string()))?,
                None => Vec::new(),
            };
            for i in 0..area.pages {
                let offset = area.offset + i * PAGE;
                if !area.measured {
                    m.page(offset, area.flags, None);
                    continue;
                }
                let start = (i * PAGE) as usize;
                let page: std::borrow::Cow<'_, [u8]> = if start >= content.len() {
                    std::borrow::Cow::Borrowed(&ZERO_PAGE)
                } else {
                    let end = content.len().min(start + PAGE as usize);
                    let mut page = content[start..end].to_vec();
                    page.resize(PAGE as usize, 0);
                    std::borrow::Cow::Owned(page)
                };
                m.page(offset, area.flags, Some(&page));
            }
        }
        Ok(m.finish())
    }
}

/// `4G`, `512M`, `64K` or a number of bytes, as Gramine reads
/// `sgx.enclave_size`.
fn size_bytes(text: &str) -> Option<u64> {
    let (digits, scale) = match text.char_indices().last()? {
        (at, 'K') => (&text[..at], 1u64 << 10),
        (at, 'M') => (&text[..at], 1 << 20),
        (at, 'G') => (&text[..at], 1 << 30),
        _ => (text, 1),
    };
    digits.parse::<u64>().ok()?.checked_mul(scale)
}

/// The placeholder of the fingerprint in a manifest template.
fn placeholder() -> String {
    format!("{FINGERPRINT_KEY} = \"{}\"", "0".repeat(64))
}

/// The app's manifest: `template` with its one zero fingerprint replaced
/// by `fingerprint`.
pub fn render_manifest(template: &str, fingerprint: &[u8; 32]) -> Result<String, LayoutError> {
    let placeholder = placeholder();
    match template.matches(&placeholder).count() {
        1 => Ok(template.replacen(
            &placeholder,
            &format!("{FINGERPRINT_KEY} = \"{}\"", hex::encode(fingerprint)),
            1,
        )),
        n => fail(format!(
            "the manifest template must hold `{placeholder}` once, it holds it {n} times"
        )),
    }
}

/// The template of a manifest rendered for some fingerprint: that
/// fingerprint written as zeros. Refused unless the manifest sets
/// `MSE_FINGERPRINT` once, to 64 hex digits.
pub fn manifest_template(manifest: &str) -> Result<String, LayoutError> {
    let key = format!("{FINGERPRINT_KEY} = \"");
    let mut found = manifest.match_indices(&key);
    let (Some((at, _)), None) = (found.next(), found.next()) else {
        return fail(format!(
            "the manifest must set {FINGERPRINT_KEY} once, as `{FINGERPRINT_KEY} = \"<64 hex digits>\"`"
        ));
    };
    let start = at + key.len();
    let value = manifest.get(start..start + 65).unwrap_or("");
    if !value.ends_with('"') || !value[..64].bytes().all(|b| b.is_ascii_hexdigit()) {
        return fail(format!(
            "the manifest's {FINGERPRINT_KEY} must be 64 hex digits"
        ));
    }
    Ok(format!(
        "{}{}{}",
        &manifest[..start],
        "0".repeat(64),
        &manifest[start + 64..]
    ))
}

impl SgxEnclave {
    /// The problems of this entry, each a sentence.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = self.layout.problems();
        if size_bytes(&self.enclave_size) != Some(self.layout.enclave_size) {
            problems.push(format!(
                "enclave_size \"{}\" is not the layout's {} bytes",
                self.enclave_size, self.layout.enclave_size
            ));
        }
        if let Err(e) = render_manifest(&self.manifest, &[0; 32]) {
            problems.push(e.0);
        } else if (self.manifest.len() as u64 + 1).div_ceil(PAGE) != self.layout.manifest_pages {
            problems.push(format!(
                "the manifest ({} bytes) does not fill the layout's {} manifest pages",
                self.manifest.len(),
                self.layout.manifest_pages
            ));
        }
        problems
    }

    /// MRENCLAVE of the enclave of the app whose fingerprint is
    /// `fingerprint`.
    pub fn mr_enclave(&self, fingerprint: &[u8; 32]) -> Result<[u8; 32], LayoutError> {
        let manifest = render_manifest(&self.manifest, fingerprint)?;
        self.layout.mr_enclave(manifest.as_bytes())
    }
}

/// Offsets of SIGSTRUCT (Intel SDM vol. 3D, "Enclave Signature
/// Structure"): 1808 bytes, of which bytes 0..128 and 900..1028 are signed.
const SIGSTRUCT_LEN: usize = 1808;
const SIGSTRUCT_HEADER: [u8; 16] = [6, 0, 0, 0, 0xE1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0];
const SIGSTRUCT_HEADER2: [u8; 16] = [1, 1, 0, 0, 0x60, 0, 0, 0, 0x60, 0, 0, 0, 1, 0, 0, 0];
const SIGSTRUCT_DATE: usize = 20;
const SIGSTRUCT_MODULUS: usize = 128;
const SIGSTRUCT_EXPONENT: usize = 512;
const SIGSTRUCT_SIGNATURE: usize = 516;
const SIGSTRUCT_ATTRIBUTES: usize = 928;
const SIGSTRUCT_ATTRIBUTE_MASK: usize = 944;
const SIGSTRUCT_ENCLAVE_HASH: usize = 960;
const SIGSTRUCT_Q1: usize = 1040;
const SIGSTRUCT_Q2: usize = 1424;
const RSA_LEN: usize = 384;

/// ATTRIBUTES.FLAGS: DEBUG.
pub const ATTRIBUTE_DEBUG: u64 = 0x2;
/// ATTRIBUTES.FLAGS: MODE64BIT.
pub const ATTRIBUTE_MODE64: u64 = 0x4;
/// ATTRIBUTES.XFRM of x87 and SSE, which every enclave has.
const XFRM_LEGACY: u64 = 0x3;

/// The bytes of a SIGSTRUCT its signature covers.
fn signed_part(sigstruct: &[u8]) -> Vec<u8> {
    [&sigstruct[..128], &sigstruct[900..1028]].concat()
}

fn little_endian(value: &rsa::BigUint) -> [u8; RSA_LEN] {
    let mut out = [0u8; RSA_LEN];
    let bytes = value.to_bytes_le();
    out[..bytes.len().min(RSA_LEN)].copy_from_slice(&bytes[..bytes.len().min(RSA_LEN)]);
    out
}

/// The SIGSTRUCT (what Gramine writes as `.sig`) by which the operator's
/// key (`private_pem`, PKCS#8, RSA-3072 with exponent 3, as SGX requires)
/// lets the CPU initialise the production enclave `mr_enclave`, on `date`
/// (`YYYYMMDD`).
pub fn sigstruct(
    private_pem: &str,
    mr_enclave: &[u8; 32],
    date: u32,
) -> Result<Vec<u8>, LayoutError> {
    use rsa::pkcs8::DecodePrivateKey as _;
    use rsa::signature::{SignatureEncoding as _, Signer as _};
    use rsa::traits::PublicKeyParts as _;
    let key = rsa::RsaPrivateKey::from_pkcs8_pem(private_pem).map_err(|_| {
        LayoutError("the enclave-signing key is not an RSA private key in PKCS#8 PEM".into())
    })?;
    if key.n().bits() != 3072 || key.e() != &rsa::BigUint::from(3u8) {
        return fail(format!(
            "SGX needs an RSA-3072 enclave-signing key with exponent 3; this one has {} bits and \
             exponent {} (a platform made before this version: make a new key)",
            key.n().bits(),
            key.e()
        ));
    }
    let mut out = vec![0u8; SIGSTRUCT_LEN];
    out[..16].copy_from_slice(&SIGSTRUCT_HEADER);
    let bcd =
        |n: u32| -> u32 { (0..8).fold(0, |acc, i| acc | (((n / 10u32.pow(i)) % 10) << (4 * i))) };
    out[SIGSTRUCT_DATE..SIGSTRUCT_DATE + 4].copy_from_slice(&bcd(date).to_le_bytes());
    out[24..40].copy_from_slice(&SIGSTRUCT_HEADER2);
    out[SIGSTRUCT_MODULUS..SIGSTRUCT_MODULUS + RSA_LEN].copy_from_slice(&little_endian(key.n()));
    out[SIGSTRUCT_EXPONENT..SIGSTRUCT_EXPONENT + 4].copy_from_slice(&3u32.to_le_bytes());
    // MISCSELECT 0, MISCMASK all ones; ATTRIBUTES MODE64BIT and legacy
    // XFRM; the mask requires DEBUG off.
    out[904..908].copy_from_slice(&u32::MAX.to_le_bytes());
    out[SIGSTRUCT_ATTRIBUTES..SIGSTRUCT_ATTRIBUTES + 8]
        .copy_from_slice(&ATTRIBUTE_MODE64.to_le_bytes());
    out[SIGSTRUCT_ATTRIBUTES + 8..SIGSTRUCT_ATTRIBUTES + 16]
        .copy_from_slice(&XFRM_LEGACY.to_le_bytes());
    out[SIGSTRUCT_ATTRIBUTE_MASK..SIGSTRUCT_ATTRIBUTE_MASK + 8]
        .copy_from_slice(&(ATTRIBUTE_MODE64 | ATTRIBUTE_DEBUG).to_le_bytes());
    out[SIGSTRUCT_ATTRIBUTE_MASK + 8..SIGSTRUCT_ATTRIBUTE_MASK + 16]
        .copy_from_slice(&XFRM_LEGACY.to_le_bytes());
    out[SIGSTRUCT_ENCLAVE_HASH..SIGSTRUCT_ENCLAVE_HASH + 32].copy_from_slice(mr_enclave);
    let signer = rsa::pkcs1v15::SigningKey::<Sha256>::new(key.clone());
    let signature = signer.sign(&signed_part(&out)).to_bytes();
    let s = rsa::BigUint::from_bytes_be(&signature);
    let n = key.n();
    // Q1 = floor(S² / N), Q2 = floor((S³ − Q1·S·N) / N): what lets the CPU
    // check the signature with multiplications only.
    let q1 = (&s * &s) / n;
    let q2 = (&s * &s * &s - &q1 * &s * n) / n;
    out[SIGSTRUCT_SIGNATURE..SIGSTRUCT_SIGNATURE + RSA_LEN].copy_from_slice(&little_endian(&s));
    out[SIGSTRUCT_Q1..SIGSTRUCT_Q1 + RSA_LEN].copy_from_slice(&little_endian(&q1));
    out[SIGSTRUCT_Q2..SIGSTRUCT_Q2 + RSA_LEN].copy_from_slice(&little_endian(&q2));
    Ok(out)
}

/// What a SIGSTRUCT lets the CPU initialise, once its signature checks as
/// EINIT checks it: MRENCLAVE (ENCLAVEHASH), MRSIGNER (SHA-256 of the
/// little-endian modulus) and the ATTRIBUTES flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signed {
    /// ENCLAVEHASH.
    pub mr_enclave: [u8; 32],
    /// SHA-256 of the signer's modulus.
    pub mr_signer: [u8; 32],
    /// ATTRIBUTES.FLAGS.
    pub flags: u64,
}

/// Reads and checks a SIGSTRUCT: its headers, exponent 3 and its RSA
/// signature over the signed bytes.
pub fn check_sigstruct(sigstruct: &[u8]) -> Result<Signed, LayoutError> {
    use rsa::signature::Verifier as _;
    if sigstruct.len() != SIGSTRUCT_LEN {
        return fail(format!(
            "a SIGSTRUCT is {SIGSTRUCT_LEN} bytes, this one {}",
            sigstruct.len()
        ));
    }
    if sigstruct[..16] != SIGSTRUCT_HEADER || sigstruct[24..40] != SIGSTRUCT_HEADER2 {
        return fail("not a SIGSTRUCT: its headers are not SGX's");
    }
    if sigstruct[SIGSTRUCT_EXPONENT..SIGSTRUCT_EXPONENT + 4] != 3u32.to_le_bytes() {
        return fail("the SIGSTRUCT's exponent is not 3");
    }
    let modulus = &sigstruct[SIGSTRUCT_MODULUS..SIGSTRUCT_MODULUS + RSA_LEN];
    let n = rsa::BigUint::from_bytes_le(modulus);
    let key = rsa::RsaPublicKey::new(n, rsa::BigUint::from(3u8))
        .map_err(|e| LayoutError(format!("the SIGSTRUCT's modulus: {e}")))?;
    let mut signature = sigstruct[SIGSTRUCT_SIGNATURE..SIGSTRUCT_SIGNATURE + RSA_LEN].to_vec();
    signature.reverse();
    let signature = rsa::pkcs1v15::Signature::try_from(signature.as_slice())
        .map_err(|e| LayoutError(format!("the SIGSTRUCT's signature: {e}")))?;
    rsa::pkcs1v15::VerifyingKey::<Sha256>::new(key)
        .verify(&signed_part(sigstruct), &signature)
        .map_err(|_| LayoutError("the SIGSTRUCT's signature does not verify".into()))?;
    let mut mr_enclave = [0u8; 32];
    mr_enclave.copy_from_slice(&sigstruct[SIGSTRUCT_ENCLAVE_HASH..SIGSTRUCT_ENCLAVE_HASH + 32]);
    let mut flags = [0u8; 8];
    flags.copy_from_slice(&sigstruct[SIGSTRUCT_ATTRIBUTES..SIGSTRUCT_ATTRIBUTES + 8]);
    Ok(Signed {
        mr_enclave,
        mr_signer: Sha256::digest(modulus).into(),
        flags: u64::from_le_bytes(flags),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> Layout {
        Layout {
            enclave_size: 1 << 20,
            ssa_frame_pages: 1,
            manifest_offset: (1 << 20) - PAGE,
            manifest_pages: 1,
            manifest_flags: FLAG_R | PAGE_TYPE_REG,
            areas: vec![
                Area {
                    offset: (1 << 20) - 3 * PAGE,
                    pages: 2,
                    flags: FLAG_R | FLAG_X | PAGE_TYPE_REG,
                    measured: true,
                    content: Some(base64::engine::general_purpose::STANDARD.encode(b"code")),
                },
                Area {
                    offset: 0,
                    pages: 4,
                    flags: FLAG_R | FLAG_W | FLAG_X | PAGE_TYPE_REG,
                    measured: false,
                    content: None,
                },
            ],
        }
    }

    /// The records written out one by one, as the SDM lists them.
    fn by_hand(manifest: &[u8]) -> [u8; 32] {
        let mut h = Sha256::new();
        let record = |parts: &[&[u8]]| {
            let mut r = parts.concat();
            r.resize(64, 0);
            r
        };
        h.update(record(&[
            b"ECREATE\0",
            &1u32.to_le_bytes(),
            &(1u64 << 20).to_le_bytes(),
        ]));
        let page = |h: &mut Sha256, offset: u64, flags: u64, content: Option<&[u8]>| {
            h.update(record(&[
                b"EADD\0\0\0\0",
                &offset.to_le_bytes(),
                &flags.to_le_bytes(),
            ]));
            if let Some(content) = content {
                for k in 0..16u64 {
                    h.update(record(&[b"EEXTEND\0", &(offset + 256 * k).to_le_bytes()]));
                    h.update(&content[k as usize * 256..(k as usize + 1) * 256]);
                }
            }
        };
        let mut m = manifest.to_vec();
        m.resize(4096, 0);
        page(&mut h, (1 << 20) - PAGE, 0x201, Some(&m));
        let mut code = b"code".to_vec();
        code.resize(4096, 0);
        page(&mut h, (1 << 20) - 3 * PAGE, 0x205, Some(&code));
        page(&mut h, (1 << 20) - 2 * PAGE, 0x205, Some(&[0; 4096]));
        for i in 0..4 {
            page(&mut h, i * PAGE, 0x207, None);
        }
        h.finalize().into()
    }

    #[test]
    fn the_replay_hashes_ecreate_then_each_page_as_the_sdm_records_it() {
        let manifest = b"[loader.env]\nMSE_FINGERPRINT = \"00\"\n";
        assert_eq!(layout().mr_enclave(manifest).unwrap(), by_hand(manifest));
        let other = b"[loader.env]\nMSE_FINGERPRINT = \"01\"\n";
        assert_ne!(
            layout().mr_enclave(other).unwrap(),
            layout().mr_enclave(manifest).unwrap()
        );
    }

    #[test]
    fn a_template_renders_each_fingerprint_to_a_manifest_of_the_same_length() {
        let signed = format!(
            "[loader.env]\n{FINGERPRINT_KEY} = \"{}\"\n",
            "ab".repeat(32)
        );
        let template = manifest_template(&signed).unwrap();
        assert!(template.contains(&"0".repeat(64)));
        let rendered = render_manifest(&template, &[0xAB; 32]).unwrap();
        assert_eq!(rendered, signed);
        assert_eq!(
            render_manifest(&template, &[1; 32]).unwrap().len(),
            signed.len()
        );
        // No fingerprint, two, or a short one: refused.
        assert!(manifest_template("[loader.env]\n").is_err());
        assert!(manifest_template(&format!("{signed}{signed}")).is_err());
        assert!(manifest_template("MSE_FINGERPRINT = \"abc\"\n").is_err());
        assert!(render_manifest(&format!("{template}{template}"), &[1; 32]).is_err());
    }

    #[test]
    fn a_bad_layout_is_refused_saying_why_without_work() {
        type Change = Box<dyn Fn(&mut Layout)>;
        let cases: Vec<(Change, &str)> = vec![
            (Box::new(|l| l.enclave_size = 3 << 20), "power of two"),
            (Box::new(|l| l.enclave_size = 1 << 50), "power of two"),
            (Box::new(|l| l.ssa_frame_pages = 0), "ssa_frame_pages"),
            (
                Box::new(|l| l.manifest_offset = 1 << 20),
                "past the enclave",
            ),
            (Box::new(|l| l.manifest_offset = 17), "page-aligned"),
            (
                Box::new(|l| l.areas[0].pages = u64::MAX),
                "past the enclave",
            ),
            (
                Box::new(|l| l.areas[1].offset = u64::MAX - 4095),
                "past the enclave",
            ),
            (Box::new(|l| l.areas[0].flags = 0x8201), "flags"),
            (Box::new(|l| l.areas[0].flags = 0x7), "flags"),
            (
                Box::new(|l| l.areas[0].offset = (1 << 20) - 2 * PAGE),
                "overlap",
            ),
            (
                Box::new(|l| l.areas[0].content = Some("%%%".into())),
                "base64",
            ),
            (
                Box::new(|l| {
                    l.areas[0].content =
                        Some(base64::engine::general_purpose::STANDARD.encode(vec![1u8; 3 * 4096]));
                }),
                "larger than",
            ),
            (
                Box::new(|l| l.areas[1].content = Some("AA==".into())),
                "unmeasured",
            ),
        ];
        for (change, why) in cases {
            let mut bad = layout();
            change(&mut bad);
            let err = bad.mr_enclave(b"m").unwrap_err().0;
            assert!(err.contains(why), "{why}: {err}");
        }
        // A manifest that needs more pages than the layout gives it.
        let err = layout().mr_enclave(&[b'a'; 4096]).unwrap_err().0;
        assert!(err.contains("fills 2 pages"), "{err}");
    }

    #[test]
    fn a_sigstruct_signed_with_an_exponent_3_key_checks_and_gives_mrenclave_and_mrsigner() {
        use rsa::pkcs8::EncodePrivateKey as _;
        let key = rsa::RsaPrivateKey::new_with_exp(
            &mut rsa::rand_core::OsRng,
            3072,
            &rsa::BigUint::from(3u8),
        )
        .unwrap();
        let pem = key.to_pkcs8_pem(Default::default()).unwrap();
        let sig = sigstruct(&pem, &[7; 32], 20261207).unwrap();
        let signed = check_sigstruct(&sig).unwrap();
        assert_eq!(signed.mr_enclave, [7; 32]);
        assert_eq!(signed.flags & ATTRIBUTE_DEBUG, 0);
        let public = rsa::RsaPublicKey::from(&key);
        assert_eq!(signed.mr_signer, crate::signer::mr_signer(&public).unwrap());
        assert_eq!(&sig[20..24], &[0x07, 0x12, 0x26, 0x20], "the date in BCD");
        // Q1 is what the CPU checks S² with.
        use rsa::traits::PublicKeyParts as _;
        let s = rsa::BigUint::from_bytes_le(&sig[SIGSTRUCT_SIGNATURE..SIGSTRUCT_SIGNATURE + 384]);
        let q1 = rsa::BigUint::from_bytes_le(&sig[SIGSTRUCT_Q1..SIGSTRUCT_Q1 + 384]);
        assert_eq!(q1, (&s * &s) / public.n());

        // One changed byte of ENCLAVEHASH, or a cut copy: refused.
        let mut changed = sig.clone();
        changed[SIGSTRUCT_ENCLAVE_HASH] ^= 1;
        assert!(check_sigstruct(&changed)
            .unwrap_err()
            .0
            .contains("does not verify"));
        assert!(check_sigstruct(&sig[1..]).is_err());
        // A key with exponent 65537 cannot sign for SGX.
        let other = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 3072).unwrap();
        let pem = other.to_pkcs8_pem(Default::default()).unwrap();
        assert!(sigstruct(&pem, &[7; 32], 20261207)
            .unwrap_err()
            .0
            .contains("exponent 3"));
    }
}
