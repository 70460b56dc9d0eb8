//! SEV-SNP attestation reports: parsing, the VCEK/VLEK → ASK/ASVK → ARK
//! chain, and the TCB the VCEK certifies.
//!
//! The verifier is pure: [`verify`] takes the report, the chain, the roots it
//! trusts, an optional minimum TCB and "now", and returns an [`Outcome`] or
//! the [`SnpFailure`] naming the check that failed. Where the bytes come from
//! (configfs-tsm's `outblob` and `auxblob`, a file, a node's evidence) is the
//! caller's business.
//!
//! Field offsets follow AMD's "SEV Secure Nested Paging Firmware ABI
//! Specification" (the ATTESTATION_REPORT structure) and the VCEK
//! certificate extensions AMD's "Versioned Chip Endorsement Key (VCEK)
//! Certificate and KDS Interface Specification" lists. The `sev` crate gives
//! AMD's own ARKs and checks the RSA-PSS certificate signatures; the report's
//! ECDSA signature is checked here with `p384` over the report's own bytes
//! (never a re-encoding), and validity and extensions are read with
//! `x509-parser`.

use std::fmt;

use chrono::{DateTime, Utc};
use p384::ecdsa::signature::Verifier as _;
use sev::certs::snp::{Certificate as SevCertificate, Verifiable as _};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer as _;
use x509_parser::time::ASN1Time;

use crate::AttestError;

/// The size of an SEV-SNP attestation report, whatever its version.
pub const REPORT_LEN: usize = 1184;

/// The report's bytes the signature covers: everything before the signature.
pub const SIGNED_LEN: usize = 0x2A0;

/// The report versions this verifier reads.
pub const VERSIONS: [u32; 3] = [2, 3, 5];

/// SIGNATURE_ALGO of a report signed with ECDSA P-384 and SHA-384, the only
/// algorithm AMD defines.
const ECDSA_P384_SHA384: u32 = 1;

// Offsets in the ATTESTATION_REPORT structure.
const VERSION: usize = 0x00;
const GUEST_SVN: usize = 0x04;
const POLICY: usize = 0x08;
const FAMILY_ID: usize = 0x10;
const IMAGE_ID: usize = 0x20;
const VMPL: usize = 0x30;
const SIGNATURE_ALGO: usize = 0x34;
const CURRENT_TCB: usize = 0x38;
const KEY_INFO: usize = 0x48;
const REPORT_DATA: usize = 0x50;
const MEASUREMENT: usize = 0x90;
const HOST_DATA: usize = 0xC0;
const ID_KEY_DIGEST: usize = 0xE0;
const AUTHOR_KEY_DIGEST: usize = 0x110;
const REPORT_ID: usize = 0x140;
const REPORTED_TCB: usize = 0x180;
const CPUID_FAM_ID: usize = 0x188;
const CPUID_MOD_ID: usize = 0x189;
const CPUID_STEP: usize = 0x18A;
const CHIP_ID: usize = 0x1A0;
const COMMITTED_TCB: usize = 0x1E0;
const LAUNCH_TCB: usize = 0x1F0;
const SIGNATURE_R: usize = 0x2A0;
const SIGNATURE_S: usize = 0x2E8;
/// Each of R and S is a little-endian field of 72 bytes (a P-384 scalar is 48).
const SCALAR_FIELD: usize = 72;

/// The guest policy bit that allows the host to debug the guest.
const POLICY_DEBUG: u64 = 1 << 19;

/// CPUID family of Turin (Zen 5), whose TCB_VERSION has the FMC layout.
const FAMILY_TURIN: u8 = 0x1A;

/// The key that signed a report (KEY_INFO.SIGNING_KEY).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningKey {
    /// The Versioned Chip Endorsement Key, derived from the chip and its TCB.
    Vcek,
    /// The Versioned Loaded Endorsement Key, loaded by a cloud provider.
    Vlek,
}

impl SigningKey {
    /// `VCEK` or `VLEK`.
    pub fn as_str(self) -> &'static str {
        match self {
            SigningKey::Vcek => "VCEK",
            SigningKey::Vlek => "VLEK",
        }
    }
}

impl fmt::Display for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The security version numbers of the platform's components (a
/// TCB_VERSION): what the VCEK is derived from and certifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tcb {
    /// The PSP boot loader's SVN.
    pub bootloader: u8,
    /// The PSP operating system's SVN.
    pub tee: u8,
    /// The SNP firmware's SVN.
    pub snp: u8,
    /// The lowest microcode patch level of all cores.
    pub microcode: u8,
    /// The FMC firmware's SVN, on Turin and later only.
    pub fmc: Option<u8>,
}

impl Tcb {
    /// Decodes a little-endian TCB_VERSION: before Turin boot loader, TEE,
    /// four reserved bytes, SNP, microcode; on Turin FMC, boot loader, TEE,
    /// SNP, three reserved bytes, microcode.
    pub fn from_raw(raw: [u8; 8], turin: bool) -> Tcb {
        if turin {
            Tcb {
                fmc: Some(raw[0]),
                bootloader: raw[1],
                tee: raw[2],
                snp: raw[3],
                microcode: raw[7],
            }
        } else {
            Tcb {
                bootloader: raw[0],
                tee: raw[1],
                snp: raw[6],
                microcode: raw[7],
                fmc: None,
            }
        }
    }

    /// The components below `min`'s, each as `name=value<minimum`.
    pub fn below(&self, min: &Tcb) -> Vec<String> {
        let mut below = Vec::new();
        let pairs = [
            ("bl", self.bootloader, min.bootloader),
            ("tee", self.tee, min.tee),
            ("snp", self.snp, min.snp),
            ("ucode", self.microcode, min.microcode),
        ];
        for (name, value, minimum) in pairs {
            if value < minimum {
                below.push(format!("{name}={value}<{minimum}"));
            }
        }
        match (self.fmc, min.fmc) {
            (Some(value), Some(minimum)) if value < minimum => {
                below.push(format!("fmc={value}<{minimum}"));
            }
            (None, Some(minimum)) => below.push(format!("fmc=none<{minimum}")),
            _ => {}
        }
        below
    }
}

impl fmt::Display for Tcb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "bl={} tee={} snp={} ucode={}",
            self.bootloader, self.tee, self.snp, self.microcode
        )?;
        if let Some(fmc) = self.fmc {
            write!(f, " fmc={fmc}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Tcb {
    type Err = String;

    /// Reads what [`Tcb`]'s `Display` writes: `bl=3 tee=0 snp=8 ucode=115`,
    /// `fmc=N` optional, separated by spaces or commas.
    fn from_str(text: &str) -> Result<Tcb, String> {
        let usage = "expected bl=N tee=N snp=N ucode=N [fmc=N], each N from 0 to 255";
        let mut values: [Option<u8>; 5] = [None; 5];
        for part in text.split([' ', ',']).filter(|p| !p.is_empty()) {
            let (name, value) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}` is not NAME=N: {usage}"))?;
            let slot = match name {
                "bl" => 0,
                "tee" => 1,
                "snp" => 2,
                "ucode" => 3,
                "fmc" => 4,
                _ => return Err(format!("unknown TCB component `{name}`: {usage}")),
            };
            let value: u8 = value
                .parse()
                .map_err(|_| format!("`{part}`: {value} is not from 0 to 255"))?;
            if values[slot].replace(value).is_some() {
                return Err(format!("`{name}` is given twice"));
            }
        }
        match values {
            [Some(bootloader), Some(tee), Some(snp), Some(microcode), fmc] => Ok(Tcb {
                bootloader,
                tee,
                snp,
                microcode,
                fmc,
            }),
            _ => Err(format!("`{text}` lacks a component: {usage}")),
        }
    }
}

/// A parsed SEV-SNP attestation report (versions 2, 3 and 5): the bytes,
/// checked for length, version, signature algorithm and signing key, with
/// typed accessors.
#[derive(Clone, PartialEq, Eq)]
pub struct Report {
    bytes: Box<[u8; REPORT_LEN]>,
}

impl fmt::Debug for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Report")
            .field("version", &self.version())
            .field("policy", &format_args!("{:#x}", self.policy()))
            .field("vmpl", &self.vmpl())
            .field("measurement", &hex::encode(self.measurement()))
            .field("reported_tcb", &format_args!("{}", self.reported_tcb()))
            .field("signing_key", &self.signing_key())
            .finish_non_exhaustive()
    }
}

impl Report {
    /// Reads a report, refusing anything that is not exactly one: 1184
    /// bytes, version 2, 3 or 5, signed (ECDSA P-384 with SHA-384) by the
    /// VCEK or a VLEK.
    pub fn parse(bytes: &[u8]) -> Result<Report, AttestError> {
        let bad = |what: String| AttestError::SnpReport(what);
        let Ok(array) = <[u8; REPORT_LEN]>::try_from(bytes) else {
            return Err(bad(format!(
                "{} bytes, but an SEV-SNP attestation report is {REPORT_LEN} bytes",
                bytes.len()
            )));
        };
        let report = Report {
            bytes: Box::new(array),
        };
        let version = report.version();
        if !VERSIONS.contains(&version) {
            return Err(bad(format!(
                "version {version}, but only versions 2, 3 and 5 are SEV-SNP attestation reports this verifier reads"
            )));
        }
        let algorithm = report.u32_at(SIGNATURE_ALGO);
        if algorithm != ECDSA_P384_SHA384 {
            return Err(bad(format!(
                "signature algorithm {algorithm}, but SEV-SNP reports are signed with ECDSA P-384 SHA-384 (1)"
            )));
        }
        match report.signing_key_field() {
            0 | 1 => {}
            7 => return Err(bad("the report is unsigned (signing key: none)".into())),
            other => {
                return Err(bad(format!(
                    "signing key {other} is reserved (0 is the VCEK, 1 a VLEK)"
                )))
            }
        }
        Ok(report)
    }

    fn field<const N: usize>(&self, at: usize) -> [u8; N] {
        let mut out = [0; N];
        // In bounds: every offset used is a constant inside the report.
        out.copy_from_slice(&self.bytes[at..at + N]);
        out
    }

    fn u32_at(&self, at: usize) -> u32 {
        u32::from_le_bytes(self.field(at))
    }

    fn u64_at(&self, at: usize) -> u64 {
        u64::from_le_bytes(self.field(at))
    }

    fn signing_key_field(&self) -> u32 {
        (self.u32_at(KEY_INFO) >> 2) & 0b111
    }

    /// Whether TCB_VERSION fields have Turin's layout (with FMC): reports of
    /// version 3 and later name the CPU family, and Turin's is 0x1A.
    /// Version 2 reports predate Turin.
    fn turin_layout(&self) -> bool {
        self.version() >= 3 && self.bytes[CPUID_FAM_ID] == FAMILY_TURIN
    }

    fn tcb_at(&self, at: usize) -> Tcb {
        Tcb::from_raw(self.field(at), self.turin_layout())
    }

    /// The report format's version (2, 3 or 5).
    pub fn version(&self) -> u32 {
        self.u32_at(VERSION)
    }

    /// The guest's security version number, from its ID block.
    pub fn guest_svn(&self) -> u32 {
        self.u32_at(GUEST_SVN)
    }

    /// The guest policy the VM was launched with.
    pub fn policy(&self) -> u64 {
        self.u64_at(POLICY)
    }

    /// Whether the policy lets the host debug the guest (bit 19): such a
    /// guest protects nothing from the host.
    pub fn debug_allowed(&self) -> bool {
        self.policy() & POLICY_DEBUG != 0
    }

    /// FAMILY_ID from the guest's ID block.
    pub fn family_id(&self) -> [u8; 16] {
        self.field(FAMILY_ID)
    }

    /// IMAGE_ID from the guest's ID block.
    pub fn image_id(&self) -> [u8; 16] {
        self.field(IMAGE_ID)
    }

    /// The privilege level that requested the report (0 is the most privileged).
    pub fn vmpl(&self) -> u32 {
        self.u32_at(VMPL)
    }

    /// The launch measurement of the guest.
    pub fn measurement(&self) -> [u8; 48] {
        self.field(MEASUREMENT)
    }

    /// The 32 bytes the host chose at launch (not trusted).
    pub fn host_data(&self) -> [u8; 32] {
        self.field(HOST_DATA)
    }

    /// The 64 bytes the guest asked the report for.
    pub fn report_data(&self) -> [u8; 64] {
        self.field(REPORT_DATA)
    }

    /// The digest of the ID block's signing key, zero without an ID block.
    pub fn id_key_digest(&self) -> [u8; 48] {
        self.field(ID_KEY_DIGEST)
    }

    /// The digest of the ID key's author key, zero without one.
    pub fn author_key_digest(&self) -> [u8; 48] {
        self.field(AUTHOR_KEY_DIGEST)
    }

    /// The guest's REPORT_ID, unique per launch.
    pub fn report_id(&self) -> [u8; 32] {
        self.field(REPORT_ID)
    }

    /// The TCB the report claims, from which the VCEK that signed it derives.
    pub fn reported_tcb(&self) -> Tcb {
        self.tcb_at(REPORTED_TCB)
    }

    /// The TCB the platform runs.
    pub fn current_tcb(&self) -> Tcb {
        self.tcb_at(CURRENT_TCB)
    }

    /// The TCB the platform committed to (it cannot roll back below it).
    pub fn committed_tcb(&self) -> Tcb {
        self.tcb_at(COMMITTED_TCB)
    }

    /// The committed TCB when the guest launched.
    pub fn launch_tcb(&self) -> Tcb {
        self.tcb_at(LAUNCH_TCB)
    }

    /// CPUID family, model and stepping (versions 3 and later).
    pub fn cpuid(&self) -> Option<(u8, u8, u8)> {
        (self.version() >= 3).then(|| {
            (
                self.bytes[CPUID_FAM_ID],
                self.bytes[CPUID_MOD_ID],
                self.bytes[CPUID_STEP],
            )
        })
    }

    /// The chip's identifier (zero when the guest policy masks it; on Turin
    /// only the first 8 bytes are used).
    pub fn chip_id(&self) -> [u8; 64] {
        self.field(CHIP_ID)
    }

    /// The key that signed the report.
    pub fn signing_key(&self) -> SigningKey {
        // `parse` accepted only 0 and 1.
        if self.signing_key_field() == 1 {
            SigningKey::Vlek
        } else {
            SigningKey::Vcek
        }
    }

    /// The whole report.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes[..]
    }

    /// The bytes the signature covers.
    pub fn signed_bytes(&self) -> &[u8] {
        &self.bytes[..SIGNED_LEN]
    }

    /// The signature as a P-384 ECDSA signature (R and S turned from the
    /// report's little-endian 72-byte fields into big-endian scalars).
    fn signature(&self) -> Result<p384::ecdsa::Signature, String> {
        let scalar = |at: usize, name: &str| -> Result<[u8; 48], String> {
            let field: [u8; SCALAR_FIELD] = self.field(at);
            if field[48..].iter().any(|&b| b != 0) {
                return Err(format!("the signature's {name} is longer than 48 bytes"));
            }
            let mut big_endian = [0; 48];
            for (out, byte) in big_endian.iter_mut().zip(field[..48].iter().rev()) {
                *out = *byte;
            }
            Ok(big_endian)
        };
        let r = scalar(SIGNATURE_R, "R")?;
        let s = scalar(SIGNATURE_S, "S")?;
        p384::ecdsa::Signature::from_scalars(r, s)
            .map_err(|e| format!("the signature is not a P-384 signature: {e}"))
    }
}

/// The certificates that certify a report's signing key, as DER: the
/// VCEK (or VLEK), the ASK (or ASVK) that signed it, and the ARK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// The VCEK or VLEK certificate.
    pub vcek_der: Vec<u8>,
    /// The ASK (or, for a VLEK, the ASVK) certificate.
    pub ask_der: Vec<u8>,
    /// The ARK certificate.
    pub ark_der: Vec<u8>,
}

/// The processor line of a report's chip, as AMD's Key Distribution
/// Service names it (`Milan`, `Genoa`, `Turin`), from its CPUID family and
/// model (reports of version 3 and later); `None` for a version 2 report
/// or an unknown processor.
pub fn kds_product(report: &Report) -> Option<&'static str> {
    let (family, model, _) = report.cpuid()?;
    match (family, model) {
        (0x19, 0x00..=0x0F) => Some("Milan"),
        (0x19, 0x10..=0x1F | 0xA0..=0xAF) => Some("Genoa"),
        (0x1A, 0x00..=0x1F) => Some("Turin"),
        _ => None,
    }
}

/// Where AMD's Key Distribution Service serves what certifies `report`,
/// as paths under its base URL: the VCEK of the report's chip at its
/// reported TCB (DER), and the ASK and ARK of `product` (PEM, ASK first).
/// Refused for a report signed by a VLEK (a cloud provider's key, which the
/// KDS does not serve) or whose chip id the guest policy masked.
pub fn kds_paths(report: &Report, product: &str) -> Result<(String, String), AttestError> {
    if !matches!(product, "Milan" | "Genoa" | "Turin") {
        return Err(AttestError::SnpChain(format!(
            "`{product}` is not a processor AMD's KDS serves: Milan, Genoa or Turin"
        )));
    }
    if report.signing_key() != SigningKey::Vcek {
        return Err(AttestError::SnpChain(
            "the report is signed by a VLEK, which AMD's KDS does not serve: give its chain".into(),
        ));
    }
    let chip_id = report.chip_id();
    let hwid = if product == "Turin" {
        &chip_id[..8]
    } else {
        &chip_id[..]
    };
    if hwid.iter().all(|&b| b == 0) {
        return Err(AttestError::SnpChain(
            "the report's chip id is masked by the guest policy: its VCEK cannot be looked up"
                .into(),
        ));
    }
    let tcb = report.reported_tcb();
    let mut vcek = format!(
        "/vcek/v1/{product}/{}?blSPL={}&teeSPL={}&snpSPL={}&ucodeSPL={}",
        hex::encode(hwid),
        tcb.bootloader,
        tcb.tee,
        tcb.snp,
        tcb.microcode
    );
    if let Some(fmc) = tcb.fmc {
        vcek.push_str(&format!("&fmcSPL={fmc}"));
    }
    Ok((vcek, format!("/vcek/v1/{product}/cert_chain")))
}

/// GUIDs of the SEV-SNP certificate table (GHCB specification, "SNP
/// Extended Guest Request"), in the byte order they are stored: the
/// canonical text's bytes in order.
mod guid {
    /// `c0b406a4-a803-4952-9743-3fb6014cd0ae`: the ARK.
    pub const ARK: [u8; 16] = [
        0xc0, 0xb4, 0x06, 0xa4, 0xa8, 0x03, 0x49, 0x52, 0x97, 0x43, 0x3f, 0xb6, 0x01, 0x4c, 0xd0,
        0xae,
    ];
    /// `4ab7b379-bbac-4fe4-a02f-05aef327c782`: the ASK (or ASVK).
    pub const ASK: [u8; 16] = [
        0x4a, 0xb7, 0xb3, 0x79, 0xbb, 0xac, 0x4f, 0xe4, 0xa0, 0x2f, 0x05, 0xae, 0xf3, 0x27, 0xc7,
        0x82,
    ];
    /// `63da758d-e664-4564-adc5-f4b93be8accd`: the VCEK.
    pub const VCEK: [u8; 16] = [
        0x63, 0xda, 0x75, 0x8d, 0xe6, 0x64, 0x45, 0x64, 0xad, 0xc5, 0xf4, 0xb9, 0x3b, 0xe8, 0xac,
        0xcd,
    ];
    /// `a8074bc2-a25a-483e-aae6-39c045a0b8a1`: the VLEK.
    pub const VLEK: [u8; 16] = [
        0xa8, 0x07, 0x4b, 0xc2, 0xa2, 0x5a, 0x48, 0x3e, 0xaa, 0xe6, 0x39, 0xc0, 0x45, 0xa0, 0xb8,
        0xa1,
    ];
}

/// One entry of the certificate table: GUID, offset, length.
const TABLE_ENTRY: usize = 24;

impl Chain {
    /// Reads three PEM certificates, leaf first: the VCEK (or VLEK), the
    /// ASK (or ASVK), the ARK.
    pub fn from_pem(text: &str) -> Result<Chain, AttestError> {
        let mut ders = Vec::new();
        for pem in x509_parser::pem::Pem::iter_from_buffer(text.as_bytes()) {
            let pem = pem.map_err(|source| AttestError::Pem { source })?;
            if pem.label != "CERTIFICATE" {
                return Err(AttestError::SnpChain(format!(
                    "a PEM block labelled {:?}, but the chain holds only CERTIFICATE blocks",
                    pem.label
                )));
            }
            ders.push(pem.contents);
        }
        let count = ders.len();
        let mut ders = ders.into_iter();
        match (ders.next(), ders.next(), ders.next(), ders.next()) {
            (Some(vcek_der), Some(ask_der), Some(ark_der), None) => Ok(Chain {
                vcek_der,
                ask_der,
                ark_der,
            }),
            _ => Err(AttestError::SnpChain(format!(
                "{count} PEM certificates, but the chain is three: VCEK (or VLEK), ASK (or ASVK), ARK"
            ))),
        }
    }

    /// The chain as AMD's KDS serves it: the VCEK (DER) and its product's
    /// `cert_chain` (PEM: the ASK, then the ARK).
    pub fn from_kds(vcek_der: &[u8], cert_chain_pem: &str) -> Result<Chain, AttestError> {
        let vcek = crate::ratls::der_to_pem(vcek_der);
        Chain::from_pem(&format!("{vcek}{cert_chain_pem}"))
    }

    /// The three certificates as PEM, leaf first.
    pub fn to_pem(&self) -> String {
        [&self.vcek_der, &self.ask_der, &self.ark_der]
            .iter()
            .map(|der| crate::ratls::der_to_pem(der))
            .collect()
    }

    /// Reads the SEV-SNP certificate table (configfs-tsm's `auxblob`, the
    /// certificates of an extended report): entries of a 16-byte GUID, a
    /// little-endian u32 offset and u32 length, ended by an all-zero entry;
    /// the certificates in DER at their offsets from the table's start.
    /// Entries of other kinds (a CRL, vendor data) are skipped.
    pub fn from_auxblob(bytes: &[u8]) -> Result<Chain, AttestError> {
        let bad = |what: String| AttestError::SnpChain(format!("certificate table: {what}"));
        let (mut ark, mut ask, mut vcek, mut vlek) = (None, None, None, None);
        let mut at = 0;
        loop {
            let Some(entry) = bytes.get(at..at + TABLE_ENTRY) else {
                return Err(bad(format!(
                    "ends at byte {} without the all-zero entry that closes the table",
                    bytes.len()
                )));
            };
            if entry.iter().all(|&b| b == 0) {
                break;
            }
            let (guid, place) = entry.split_at(16);
            let (offset, length) = place.split_at(4);
            let offset = le_u32(offset) as usize;
            let length = le_u32(length) as usize;
            let data = offset
                .checked_add(length)
                .and_then(|end| bytes.get(offset..end))
                .ok_or_else(|| {
                    bad(format!(
                        "entry {} points at bytes {offset}..{offset}+{length}, outside the {} bytes",
                        at / TABLE_ENTRY,
                        bytes.len()
                    ))
                })?;
            let slot = match <[u8; 16]>::try_from(guid) {
                Ok(guid::ARK) => Some((&mut ark, "ARK")),
                Ok(guid::ASK) => Some((&mut ask, "ASK")),
                Ok(guid::VCEK) => Some((&mut vcek, "VCEK")),
                Ok(guid::VLEK) => Some((&mut vlek, "VLEK")),
                _ => None,
            };
            if let Some((slot, name)) = slot {
                if slot.replace(data.to_vec()).is_some() {
                    return Err(bad(format!("more than one {name} certificate")));
                }
            }
            at += TABLE_ENTRY;
        }
        let vcek_der = match (vcek, vlek) {
            (Some(vcek), None) => vcek,
            (None, Some(vlek)) => vlek,
            (None, None) => return Err(bad("no VCEK or VLEK certificate".into())),
            (Some(_), Some(_)) => {
                return Err(bad(
                    "both a VCEK and a VLEK: the table must hold the one key that signs".into(),
                ))
            }
        };
        Ok(Chain {
            vcek_der,
            ask_der: ask.ok_or_else(|| bad("no ASK certificate".into()))?,
            ark_der: ark.ok_or_else(|| bad("no ARK certificate".into()))?,
        })
    }

    /// The chain as an SEV-SNP certificate table: ARK, ASK, then the VCEK
    /// (or the VLEK, when the leaf certificate is not a VCEK: it carries no
    /// hwID).
    pub fn to_auxblob(&self) -> Vec<u8> {
        let leaf = match X509Certificate::from_der(&self.vcek_der) {
            Ok((_, cert)) if cert_extension(&cert, OID_HWID).is_none() => guid::VLEK,
            _ => guid::VCEK,
        };
        let entries = [
            (guid::ARK, &self.ark_der),
            (guid::ASK, &self.ask_der),
            (leaf, &self.vcek_der),
        ];
        let mut offset = (entries.len() + 1) * TABLE_ENTRY;
        let mut table = Vec::new();
        for (guid, der) in entries {
            table.extend_from_slice(&guid);
            table.extend_from_slice(&u32_len(offset).to_le_bytes());
            table.extend_from_slice(&u32_len(der.len()).to_le_bytes());
            offset += der.len();
        }
        table.extend_from_slice(&[0; TABLE_ENTRY]);
        for (_, der) in entries {
            table.extend_from_slice(der);
        }
        table
    }
}

fn le_u32(bytes: &[u8]) -> u32 {
    bytes
        .iter()
        .rev()
        .fold(0, |value, &byte| (value << 8) | u32::from(byte))
}

/// A length written in the table; certificates are a few kilobytes.
fn u32_len(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

/// The ARKs a verification trusts.
#[derive(Debug, Clone)]
pub enum Roots {
    /// AMD's ARKs of Milan, Genoa and Turin, recognised by public key.
    Amd,
    /// Only these ARKs (DER certificates): the emulated hardware of tests.
    /// A verification under them is reported as emulated.
    Test(Vec<Vec<u8>>),
}

/// AMD's ARK certificates (PEM) by product, as the `sev` crate ships them.
fn amd_arks() -> [(&'static str, &'static [u8]); 3] {
    use sev::certs::snp::builtin::{genoa, milan, turin};
    [
        ("Milan", milan::ARK),
        ("Genoa", genoa::ARK),
        ("Turin", turin::ARK),
    ]
}

/// What a verified report proves.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Outcome {
    /// The product whose ARK ends the chain: `Milan`, `Genoa`, `Turin`, or
    /// `test` under [`Roots::Test`].
    pub product: String,
    /// `VCEK` or `VLEK`.
    pub signing_key: String,
    /// The reported TCB, equal to the one the VCEK certifies.
    pub tcb: Tcb,
    /// `UpToDate` when every component is at least the minimum asked for,
    /// `NoMinimum` when none was.
    pub status: String,
    /// The chain ends at a test root, not at AMD: no hardware protection.
    pub emulated: bool,
}

/// A failed check: which, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnpFailure {
    /// `quote_signature` (the chain or the report's signature) or `tcb`.
    pub check: &'static str,
    /// What was wrong.
    pub detail: String,
}

impl fmt::Display for SnpFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.check, self.detail)
    }
}

impl std::error::Error for SnpFailure {}

/// The check of the chain and of the report's signature.
pub const CHECK_SIGNATURE: &str = "quote_signature";
/// The check of the TCB.
pub const CHECK_TCB: &str = "tcb";

fn signature_failure(detail: impl Into<String>) -> SnpFailure {
    SnpFailure {
        check: CHECK_SIGNATURE,
        detail: detail.into(),
    }
}

fn tcb_failure(detail: impl Into<String>) -> SnpFailure {
    SnpFailure {
        check: CHECK_TCB,
        detail: detail.into(),
    }
}

const OID_BOOTLOADER: &str = "1.3.6.1.4.1.3704.1.3.1";
const OID_TEE: &str = "1.3.6.1.4.1.3704.1.3.2";
const OID_SNP: &str = "1.3.6.1.4.1.3704.1.3.3";
const OID_MICROCODE: &str = "1.3.6.1.4.1.3704.1.3.8";
const OID_FMC: &str = "1.3.6.1.4.1.3704.1.3.9";
const OID_HWID: &str = "1.3.6.1.4.1.3704.1.4";
const OID_CSP_ID: &str = "1.3.6.1.4.1.3704.1.5";

/// The value of the extension `oid` (dotted) of `cert`.
fn cert_extension<'a>(cert: &'a X509Certificate<'_>, oid: &str) -> Option<&'a [u8]> {
    cert.extensions()
        .iter()
        .find(|ext| ext.oid.to_id_string() == oid)
        .map(|ext| ext.value)
}

/// A TCB component of the VCEK: a DER INTEGER from 0 to 255.
fn tcb_extension(cert: &X509Certificate<'_>, oid: &str, name: &str) -> Result<Option<u8>, String> {
    let Some(value) = cert_extension(cert, oid) else {
        return Ok(None);
    };
    let parsed = x509_parser::der_parser::der::parse_der_integer(value)
        .ok()
        .filter(|(rest, _)| rest.is_empty())
        .and_then(|(_, integer)| integer.as_u64().ok())
        .and_then(|n| u8::try_from(n).ok());
    match parsed {
        Some(n) => Ok(Some(n)),
        None => Err(format!(
            "the certificate's {name} extension ({oid}) is not an integer from 0 to 255"
        )),
    }
}

/// The TCB a VCEK or VLEK certifies.
fn certified_tcb(cert: &X509Certificate<'_>) -> Result<Tcb, String> {
    let required = |oid: &str, name: &str| {
        tcb_extension(cert, oid, name)?
            .ok_or_else(|| format!("the certificate has no {name} extension ({oid})"))
    };
    Ok(Tcb {
        bootloader: required(OID_BOOTLOADER, "boot loader SPL")?,
        tee: required(OID_TEE, "TEE SPL")?,
        snp: required(OID_SNP, "SNP SPL")?,
        microcode: required(OID_MICROCODE, "microcode SPL")?,
        fmc: tcb_extension(cert, OID_FMC, "FMC SPL")?,
    })
}

fn parse_cert<'a>(der: &'a [u8], name: &str) -> Result<X509Certificate<'a>, SnpFailure> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        Ok(_) => Err(signature_failure(format!(
            "the {name} certificate is followed by extra bytes"
        ))),
        Err(e) => Err(signature_failure(format!(
            "the {name} is not an X.509 certificate: {e}"
        ))),
    }
}

/// The chain's verified leaf: the product of its root and whether that
/// root is a test root.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChainOutcome {
    /// `Milan`, `Genoa`, `Turin`, or `test`.
    pub product: String,
    /// The root is a test root.
    pub emulated: bool,
}

/// Checks that `chain` ends at a root of `roots` (compared by public key),
/// that each certificate signs the next (RSA-PSS with SHA-384) and that all
/// are valid at `now`. Every failure is a `quote_signature` failure.
pub fn verify_chain(
    chain: &Chain,
    roots: &Roots,
    now: DateTime<Utc>,
) -> Result<ChainOutcome, SnpFailure> {
    let vcek = parse_cert(&chain.vcek_der, "VCEK")?;
    let ask = parse_cert(&chain.ask_der, "ASK")?;
    let ark = parse_cert(&chain.ark_der, "ARK")?;
    let ark_key = ark.public_key().raw;

    let (product, emulated) = match roots {
        Roots::Amd => {
            let product = amd_arks().into_iter().find_map(|(product, pem)| {
                let (_, pem) = x509_parser::pem::parse_x509_pem(pem).ok()?;
                let cert = pem.parse_x509().ok()?;
                (cert.public_key().raw == ark_key).then_some(product)
            });
            let Some(product) = product else {
                return Err(signature_failure(format!(
                    "the chain does not end at AMD's ARK of Milan, Genoa or Turin (its root calls itself {:?}, but its key is none of AMD's)",
                    ark.subject().to_string()
                )));
            };
            (product.to_string(), false)
        }
        Roots::Test(roots) => {
            let mut trusted = false;
            for (i, root) in roots.iter().enumerate() {
                let cert = parse_cert(root, &format!("test root #{}", i + 1))?;
                trusted |= cert.public_key().raw == ark_key;
            }
            if !trusted {
                return Err(signature_failure(
                    "the chain does not end at one of the given test ARKs",
                ));
            }
            ("test".to_string(), true)
        }
    };

    let at = ASN1Time::from_timestamp(now.timestamp())
        .map_err(|e| signature_failure(format!("time {now} cannot be compared: {e}")))?;
    for (name, cert) in [("ARK", &ark), ("ASK", &ask), ("VCEK", &vcek)] {
        let validity = cert.validity();
        if !validity.is_valid_at(at) {
            return Err(signature_failure(format!(
                "the {name} certificate is valid from {} to {}, not at {}",
                validity.not_before,
                validity.not_after,
                now.format("%Y-%m-%d %H:%M:%S UTC")
            )));
        }
    }

    let sev_cert = |der: &[u8], name: &str| {
        SevCertificate::from_der(der)
            .map_err(|e| signature_failure(format!("the {name} certificate: {e}")))
    };
    let (sev_vcek, sev_ask, sev_ark) = (
        sev_cert(&chain.vcek_der, "VCEK")?,
        sev_cert(&chain.ask_der, "ASK")?,
        sev_cert(&chain.ark_der, "ARK")?,
    );
    (&sev_ark, &sev_ark)
        .verify()
        .map_err(|e| signature_failure(format!("the ARK is not self-signed: {e}")))?;
    (&sev_ark, &sev_ask)
        .verify()
        .map_err(|e| signature_failure(format!("the ASK is not signed by the ARK: {e}")))?;
    (&sev_ask, &sev_vcek).verify().map_err(|e| {
        signature_failure(format!("the VCEK/VLEK is not signed by the ASK/ASVK: {e}"))
    })?;
    Ok(ChainOutcome { product, emulated })
}

/// Verifies an SEV-SNP report: its chain ends at a root of `roots`, its
/// signature is the VCEK's (or VLEK's), the VCEK certifies the report's
/// REPORTED_TCB and (for a VCEK) its CHIP_ID, and, when `min_tcb` is
/// given, no component is below it.
///
/// The guest's measurement, policy, VMPL and REPORT_DATA are the caller's
/// to compare with what it expects.
pub fn verify(
    report: &Report,
    chain: &Chain,
    roots: &Roots,
    min_tcb: Option<&Tcb>,
    now: DateTime<Utc>,
) -> Result<Outcome, SnpFailure> {
    let ChainOutcome { product, emulated } = verify_chain(chain, roots, now)?;
    let vcek = parse_cert(&chain.vcek_der, "VCEK")?;
    let signing_key = report.signing_key();

    // The leaf must be the kind of key the report says signed it.
    let hwid = cert_extension(&vcek, OID_HWID);
    match signing_key {
        SigningKey::Vlek if hwid.is_some() => {
            return Err(signature_failure(
                "the report is signed by a VLEK, but the leaf certificate is a VCEK (it has a hwID)",
            ))
        }
        SigningKey::Vlek if cert_extension(&vcek, OID_CSP_ID).is_none() => {
            return Err(signature_failure(
                "the report is signed by a VLEK, but the leaf certificate has no CSP ID: it is not a VLEK",
            ))
        }
        _ => {}
    }

    // The report's signature, with the leaf's P-384 key.
    let spki = vcek.public_key();
    let key = p384::ecdsa::VerifyingKey::from_sec1_bytes(&spki.subject_public_key.data).map_err(
        |_| {
            signature_failure(format!(
                "the {signing_key} certificate's key is not an ECDSA P-384 key"
            ))
        },
    )?;
    let signature = report.signature().map_err(signature_failure)?;
    key.verify(report.signed_bytes(), &signature)
        .map_err(|_| {
            signature_failure(format!(
                "the report's signature is not the {signing_key}'s: the report was changed, or another key signed it"
            ))
        })?;

    // The TCB and the chip the VCEK certifies.
    let certified = certified_tcb(&vcek).map_err(tcb_failure)?;
    let reported = report.reported_tcb();
    if certified != reported {
        return Err(tcb_failure(format!(
            "the report's REPORTED_TCB is {reported}, but its {signing_key} certifies {certified}"
        )));
    }
    if signing_key == SigningKey::Vcek {
        let Some(hwid) = hwid else {
            return Err(tcb_failure(format!(
                "the VCEK certificate has no hwID extension ({OID_HWID})"
            )));
        };
        let chip_id = report.chip_id();
        let matches = hwid.len() <= chip_id.len()
            && chip_id[..hwid.len()] == *hwid
            && chip_id[hwid.len()..].iter().all(|&b| b == 0);
        if !matches {
            return Err(tcb_failure(format!(
                "the report's CHIP_ID {} is not the VCEK's hwID {}",
                hex::encode(chip_id),
                hex::encode(hwid)
            )));
        }
    }

    let status = match min_tcb {
        None => "NoMinimum",
        Some(min) => {
            let below = reported.below(min);
            if !below.is_empty() {
                return Err(tcb_failure(format!(
                    "OutOfDate: {} (reported {reported}, minimum {min})",
                    below.join(", ")
                )));
            }
            "UpToDate"
        }
    };

    Ok(Outcome {
        product,
        signing_key: signing_key.to_string(),
        tcb: reported,
        status: status.to_string(),
        emulated,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A well-formed report of `version`: signed by the VCEK with ECDSA
    /// P-384 (the signature itself is not checked by `parse`).
    fn report_bytes(version: u32) -> Vec<u8> {
        let mut bytes = vec![0u8; REPORT_LEN];
        bytes[VERSION..VERSION + 4].copy_from_slice(&version.to_le_bytes());
        bytes[SIGNATURE_ALGO..SIGNATURE_ALGO + 4].copy_from_slice(&1u32.to_le_bytes());
        bytes
    }

    #[test]
    fn a_tcb_reads_back_from_its_text_and_bad_text_is_refused() {
        let tcb = Tcb {
            bootloader: 3,
            tee: 0,
            snp: 8,
            microcode: 115,
            fmc: Some(2),
        };
        assert_eq!(tcb.to_string().parse::<Tcb>(), Ok(tcb));
        assert_eq!(
            "bl=3,tee=0,snp=8,ucode=115".parse::<Tcb>().map(|t| t.fmc),
            Ok(None)
        );
        for bad in [
            "",
            "bl=3 tee=0 snp=8",
            "bl=300 tee=0 snp=8 ucode=1",
            "x=1",
            "bl=1 bl=2",
        ] {
            assert!(bad.parse::<Tcb>().is_err(), "{bad}");
        }
    }

    #[test]
    fn reports_of_versions_2_3_and_5_parse() {
        for version in VERSIONS {
            let report = Report::parse(&report_bytes(version)).expect("a report");
            assert_eq!(report.version(), version);
            assert_eq!(report.signing_key(), SigningKey::Vcek);
        }
    }

    #[test]
    fn every_truncation_and_extension_of_a_report_is_refused() {
        let bytes = report_bytes(3);
        for len in 0..REPORT_LEN {
            let error = Report::parse(&bytes[..len]).expect_err("a truncated report");
            assert!(
                error.to_string().contains(&format!("{len} bytes")),
                "{error}"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Report::parse(&longer).is_err());
    }

    #[test]
    fn other_versions_are_refused_saying_which_are_read() {
        for version in [0, 1, 4, 6, 0x8100_0004] {
            let error = Report::parse(&report_bytes(version)).expect_err("another version");
            assert_eq!(
                error.to_string(),
                format!("malformed SEV-SNP report: version {version}, but only versions 2, 3 and 5 are SEV-SNP attestation reports this verifier reads")
            );
        }
    }

    #[test]
    fn a_report_not_signed_with_ecdsa_p384_or_unsigned_is_refused() {
        let mut bytes = report_bytes(2);
        bytes[SIGNATURE_ALGO] = 2;
        let error = Report::parse(&bytes).expect_err("another algorithm");
        assert!(
            error.to_string().contains("signature algorithm 2"),
            "{error}"
        );

        let mut bytes = report_bytes(2);
        bytes[KEY_INFO] = 7 << 2;
        let error = Report::parse(&bytes).expect_err("unsigned");
        assert!(error.to_string().contains("unsigned"), "{error}");

        let mut bytes = report_bytes(2);
        bytes[KEY_INFO] = 1 << 2;
        let report = Report::parse(&bytes).expect("a VLEK report");
        assert_eq!(report.signing_key(), SigningKey::Vlek);
    }

    #[test]
    fn fields_are_read_at_their_offsets() {
        let mut bytes = report_bytes(3);
        bytes[POLICY..POLICY + 8].copy_from_slice(&0x000b_0000u64.to_le_bytes());
        bytes[VMPL] = 2;
        bytes[REPORT_DATA] = 0xAA;
        bytes[MEASUREMENT + 47] = 0xBB;
        bytes[HOST_DATA] = 0xCC;
        bytes[CHIP_ID + 63] = 0xDD;
        bytes[REPORTED_TCB..REPORTED_TCB + 8].copy_from_slice(&[3, 0, 0, 0, 0, 0, 8, 115]);
        let report = Report::parse(&bytes).expect("a report");
        assert!(report.debug_allowed());
        assert_eq!(report.policy(), 0xb_0000);
        assert_eq!(report.vmpl(), 2);
        assert_eq!(report.report_data()[0], 0xAA);
        assert_eq!(report.measurement()[47], 0xBB);
        assert_eq!(report.host_data()[0], 0xCC);
        assert_eq!(report.chip_id()[63], 0xDD);
        assert_eq!(
            report.reported_tcb().to_string(),
            "bl=3 tee=0 snp=8 ucode=115"
        );
    }

    #[test]
    fn a_turin_report_has_the_fmc_in_its_tcb() {
        let mut bytes = report_bytes(3);
        bytes[CPUID_FAM_ID] = FAMILY_TURIN;
        bytes[REPORTED_TCB..REPORTED_TCB + 8].copy_from_slice(&[1, 2, 3, 4, 0, 0, 0, 9]);
        let report = Report::parse(&bytes).expect("a report");
        assert_eq!(
            report.reported_tcb(),
            Tcb {
                fmc: Some(1),
                bootloader: 2,
                tee: 3,
                snp: 4,
                microcode: 9
            }
        );
        assert_eq!(
            report.reported_tcb().to_string(),
            "bl=2 tee=3 snp=4 ucode=9 fmc=1"
        );
    }

    #[test]
    fn a_tcb_below_the_minimum_names_each_component() {
        let tcb = Tcb {
            bootloader: 3,
            tee: 0,
            snp: 8,
            microcode: 115,
            fmc: None,
        };
        let min = Tcb {
            snp: 10,
            microcode: 200,
            ..tcb
        };
        assert_eq!(tcb.below(&min), ["snp=8<10", "ucode=115<200"]);
        assert!(tcb.below(&tcb).is_empty());
    }

    #[test]
    fn the_certificate_table_guids_are_the_ones_the_sev_crate_knows() {
        use sev::firmware::host::CertType;
        let text = |guid: [u8; 16]| {
            let hex = hex::encode(guid);
            format!(
                "{}-{}-{}-{}-{}",
                &hex[..8],
                &hex[8..12],
                &hex[12..16],
                &hex[16..20],
                &hex[20..]
            )
        };
        assert_eq!(text(guid::ARK), CertType::ARK.to_string());
        assert_eq!(text(guid::ASK), CertType::ASK.to_string());
        assert_eq!(text(guid::VCEK), CertType::VCEK.to_string());
        assert_eq!(text(guid::VLEK), CertType::VLEK.to_string());
    }

    #[test]
    fn a_certificate_table_round_trips_and_bad_tables_are_refused() {
        let chain = Chain {
            vcek_der: b"vcek".to_vec(),
            ask_der: b"ask".to_vec(),
            ark_der: b"ark".to_vec(),
        };
        let blob = chain.to_auxblob();
        assert_eq!(Chain::from_auxblob(&blob).expect("a table"), chain);

        // Every truncation loses a certificate or the closing entry.
        for len in 0..blob.len() {
            assert!(Chain::from_auxblob(&blob[..len]).is_err(), "{len}");
        }
        // An offset past the end.
        let mut far = blob.clone();
        far[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        let error = Chain::from_auxblob(&far).expect_err("out of bounds");
        assert!(error.to_string().contains("outside"), "{error}");
        // A length that overflows.
        let mut long = blob.clone();
        long[20..24].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Chain::from_auxblob(&long).is_err());
        // Two ARKs.
        let mut twice = blob;
        twice[24..40].copy_from_slice(&guid::ARK);
        let error = Chain::from_auxblob(&twice).expect_err("two ARKs");
        assert!(error.to_string().contains("more than one ARK"), "{error}");
    }

    #[test]
    fn a_pem_chain_of_other_than_three_certificates_is_refused() {
        let chain = Chain {
            vcek_der: vec![0x30, 0x00],
            ask_der: vec![0x30, 0x01, 0x00],
            ark_der: vec![0x30, 0x02, 0x00, 0x00],
        };
        let pem = chain.to_pem();
        assert_eq!(Chain::from_pem(&pem).expect("three"), chain);
        let two: String = pem
            .split_inclusive("-----END CERTIFICATE-----\n")
            .take(2)
            .collect();
        let error = Chain::from_pem(&two).expect_err("two");
        assert!(error.to_string().contains("2 PEM certificates"), "{error}");
    }
}
