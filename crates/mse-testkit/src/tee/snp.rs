//! Emulated SEV-SNP hardware: a test ARK, an ASK and a VCEK certified the
//! way AMD certifies them, and attestation reports the VCEK signs.
//!
//! Written from AMD's specifications ("SEV Secure Nested Paging Firmware ABI
//! Specification": ATTESTATION_REPORT and TCB_VERSION; "VCEK Certificate and
//! KDS Interface Specification": the certificates; the GHCB specification:
//! the certificate table), independently of `mse-attest`'s parser, so that
//! each checks the other.

use std::str::FromStr as _;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use p384::ecdsa::signature::Signer as _;
use rsa::signature::{RandomizedSigner as _, SignatureEncoding as _};
use x509_cert::der::asn1::{BitString, ObjectIdentifier, OctetString};
use x509_cert::der::{Decode as _, Encode as _};
use x509_cert::ext::Extension;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::DynSignatureAlgorithmIdentifier as _;
use x509_cert::spki::SubjectPublicKeyInfoOwned;
use x509_cert::time::{Time, Validity};
use x509_cert::{Certificate, TbsCertificate, Version};

/// The security version numbers of the emulated platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tcb {
    /// Boot loader SVN.
    pub bootloader: u8,
    /// PSP OS (TEE) SVN.
    pub tee: u8,
    /// SNP firmware SVN.
    pub snp: u8,
    /// Microcode patch level.
    pub microcode: u8,
    /// FMC SVN: `Some` makes the platform a Turin, with Turin's TCB layout.
    pub fmc: Option<u8>,
}

impl Tcb {
    /// The 8 bytes of a TCB_VERSION. Milan and Genoa: boot loader, TEE, 4
    /// reserved, SNP, microcode. Turin: FMC, boot loader, TEE, SNP, 3
    /// reserved, microcode.
    pub fn to_bytes(&self) -> [u8; 8] {
        match self.fmc {
            None => [
                self.bootloader,
                self.tee,
                0,
                0,
                0,
                0,
                self.snp,
                self.microcode,
            ],
            Some(fmc) => [
                fmc,
                self.bootloader,
                self.tee,
                self.snp,
                0,
                0,
                0,
                self.microcode,
            ],
        }
    }
}

/// What a report says besides the key's identity. `Default` is a guest at
/// VMPL 0 with zero data and policy `0x30000` (SMT allowed, reserved bit
/// 17 set, debug off).
#[derive(Debug, Clone)]
pub struct ReportFields {
    /// The report format's version: 2, 3 or 5.
    pub version: u32,
    /// REPORT_DATA.
    pub report_data: [u8; 64],
    /// MEASUREMENT.
    pub measurement: [u8; 48],
    /// Guest POLICY.
    pub policy: u64,
    /// HOST_DATA.
    pub host_data: [u8; 32],
    /// VMPL.
    pub vmpl: u32,
    /// REPORTED_TCB, when it should differ from the TCB the VCEK certifies.
    pub reported_tcb: Option<Tcb>,
    /// CHIP_ID, when it should differ from the chip's.
    pub chip_id: Option<[u8; 64]>,
}

impl Default for ReportFields {
    fn default() -> Self {
        ReportFields {
            version: 3,
            report_data: [0; 64],
            measurement: [0; 48],
            policy: 0x3_0000,
            host_data: [0; 32],
            vmpl: 0,
            reported_tcb: None,
            chip_id: None,
        }
    }
}

/// An emulated SEV-SNP processor: its ARK, ASK and VCEK, and a signer of
/// attestation reports.
pub struct EmulatedSnp {
    product: String,
    tcb: Tcb,
    chip_id: [u8; 64],
    ark_der: Vec<u8>,
    ask_der: Vec<u8>,
    vcek_der: Vec<u8>,
    vcek_key: p384::ecdsa::SigningKey,
}

const REPORT_LEN: usize = 1184;
const SIGNED_LEN: usize = 0x2A0;

/// AMD's extensions of a VCEK certificate.
const OID_STRUCT_VERSION: &str = "1.3.6.1.4.1.3704.1.1";
const OID_PRODUCT_NAME: &str = "1.3.6.1.4.1.3704.1.2";
const OID_BL_SPL: &str = "1.3.6.1.4.1.3704.1.3.1";
const OID_TEE_SPL: &str = "1.3.6.1.4.1.3704.1.3.2";
const OID_SNP_SPL: &str = "1.3.6.1.4.1.3704.1.3.3";
const OID_UCODE_SPL: &str = "1.3.6.1.4.1.3704.1.3.8";
const OID_FMC_SPL: &str = "1.3.6.1.4.1.3704.1.3.9";
const OID_HWID: &str = "1.3.6.1.4.1.3704.1.4";
const OID_BASIC_CONSTRAINTS: &str = "2.5.29.19";

/// The certificate table's GUIDs (GHCB specification), in stored order.
const GUID_ARK: &str = "c0b406a4-a803-4952-9743-3fb6014cd0ae";
const GUID_ASK: &str = "4ab7b379-bbac-4fe4-a02f-05aef327c782";
const GUID_VCEK: &str = "63da758d-e664-4564-adc5-f4b93be8accd";

impl EmulatedSnp {
    /// A processor of `product_name` (`Milan`, `Genoa`, `Turin`: it names
    /// the certificates and sets the CPUID family and model in reports) at
    /// `tcb`, whose CHIP_ID is `chip_id`. Generates an RSA-4096 ARK and ASK
    /// (RSA-PSS SHA-384 signatures, AMD's names) and a P-384 VCEK, all
    /// valid from an hour ago.
    pub fn new(product_name: &str, tcb: Tcb, chip_id: [u8; 64]) -> anyhow::Result<EmulatedSnp> {
        let mut rng = rsa::rand_core::OsRng;
        let ark_key = rsa::RsaPrivateKey::new(&mut rng, 4096).context("generating the ARK")?;
        let ask_key = rsa::RsaPrivateKey::new(&mut rng, 4096).context("generating the ASK")?;
        let vcek_key = p384::ecdsa::SigningKey::random(&mut rng);

        let ark_name = amd_name(&format!("ARK-{product_name}"))?;
        let ask_name = amd_name(&format!("SEV-{product_name}"))?;
        let vcek_name = amd_name("SEV-VCEK")?;
        let now = SystemTime::now() - Duration::from_secs(3600);
        let years = |n: u64| Duration::from_secs(n * 365 * 24 * 3600);

        let ca = || -> anyhow::Result<Vec<Extension>> {
            Ok(vec![Extension {
                extn_id: oid(OID_BASIC_CONSTRAINTS)?,
                critical: true,
                // SEQUENCE { BOOLEAN TRUE }
                extn_value: OctetString::new(vec![0x30, 0x03, 0x01, 0x01, 0xff])?,
            }])
        };
        let ark_der = sign_certificate(
            &ark_key,
            &ark_name,
            ark_name.clone(),
            spki(&ark_key.to_public_key())?,
            (now, now + years(25)),
            ca()?,
        )?;
        let ask_der = sign_certificate(
            &ark_key,
            &ark_name,
            ask_name.clone(),
            spki(&ask_key.to_public_key())?,
            (now, now + years(25)),
            ca()?,
        )?;

        let mut extensions = vec![
            der_extension(OID_STRUCT_VERSION, integer(u8::from(tcb.fmc.is_some())))?,
            der_extension(OID_PRODUCT_NAME, ia5_string(product_name))?,
            der_extension(OID_BL_SPL, integer(tcb.bootloader))?,
            der_extension(OID_TEE_SPL, integer(tcb.tee))?,
            der_extension(OID_SNP_SPL, integer(tcb.snp))?,
            der_extension(OID_UCODE_SPL, integer(tcb.microcode))?,
        ];
        if let Some(fmc) = tcb.fmc {
            extensions.push(der_extension(OID_FMC_SPL, integer(fmc))?);
        }
        // Turin's hwID is the first 8 bytes of CHIP_ID; earlier products' all 64.
        let hwid_len = if tcb.fmc.is_some() { 8 } else { 64 };
        extensions.push(der_extension(OID_HWID, chip_id[..hwid_len].to_vec())?);
        let vcek_der = sign_certificate(
            &ask_key,
            &ask_name,
            vcek_name,
            spki(vcek_key.verifying_key())?,
            (now, now + years(7)),
            extensions,
        )?;

        Ok(EmulatedSnp {
            product: product_name.to_string(),
            tcb,
            chip_id,
            ark_der,
            ask_der,
            vcek_der,
            vcek_key,
        })
    }

    /// The test ARK (DER): the only root that verifies this processor.
    pub fn ark_der(&self) -> Vec<u8> {
        self.ark_der.clone()
    }

    /// The ASK (DER).
    pub fn ask_der(&self) -> Vec<u8> {
        self.ask_der.clone()
    }

    /// The VCEK (DER).
    pub fn vcek_der(&self) -> Vec<u8> {
        self.vcek_der.clone()
    }

    /// VCEK, ASK and ARK as PEM, leaf first.
    pub fn chain_pem(&self) -> String {
        [&self.vcek_der, &self.ask_der, &self.ark_der]
            .iter()
            .map(|der| pem(der))
            .collect()
    }

    /// The KDS's answer to a GET of `route?query`: the VCEK for this
    /// chip at exactly its TCB, or its product's ASK and ARK.
    fn kds_answer(&self, route: &str, query: &str) -> super::http::Answer {
        let base = format!("/vcek/v1/{}/", self.product);
        let rest = route.strip_prefix(&base)?;
        if rest == "cert_chain" {
            let chain = format!("{}{}", pem(&self.ask_der), pem(&self.ark_der));
            return Some((Vec::new(), chain.into_bytes()));
        }
        let hwid = if self.tcb.fmc.is_some() {
            &self.chip_id[..8]
        } else {
            &self.chip_id[..]
        };
        let mut expected = format!(
            "blSPL={}&teeSPL={}&snpSPL={}&ucodeSPL={}",
            self.tcb.bootloader, self.tcb.tee, self.tcb.snp, self.tcb.microcode
        );
        if let Some(fmc) = self.tcb.fmc {
            expected.push_str(&format!("&fmcSPL={fmc}"));
        }
        (rest == hex::encode(hwid) && query == expected)
            .then(|| (Vec::new(), self.vcek_der.clone()))
    }

    /// The certificate table configfs-tsm's `auxblob` holds: entries of
    /// GUID, offset and length (little-endian u32, from the table's start),
    /// an all-zero entry, then the DER certificates.
    pub fn auxblob(&self) -> Vec<u8> {
        let certs = [
            (GUID_VCEK, &self.vcek_der),
            (GUID_ASK, &self.ask_der),
            (GUID_ARK, &self.ark_der),
        ];
        let header = (certs.len() + 1) * 24;
        let mut table = Vec::new();
        let mut data = Vec::new();
        for (guid, der) in certs {
            table.extend_from_slice(&guid_bytes(guid));
            table.extend_from_slice(&((header + data.len()) as u32).to_le_bytes());
            table.extend_from_slice(&(der.len() as u32).to_le_bytes());
            data.extend_from_slice(der);
        }
        table.extend_from_slice(&[0; 24]);
        table.extend_from_slice(&data);
        table
    }

    /// A version-3 report of a guest, signed by the VCEK, at the TCB the
    /// VCEK certifies.
    pub fn report(
        &self,
        report_data: &[u8; 64],
        measurement: &[u8; 48],
        policy: u64,
        host_data: &[u8; 32],
        vmpl: u32,
    ) -> Vec<u8> {
        self.report_with(&ReportFields {
            report_data: *report_data,
            measurement: *measurement,
            policy,
            host_data: *host_data,
            vmpl,
            ..ReportFields::default()
        })
    }

    /// A report with every field chosen, signed by the VCEK.
    pub fn report_with(&self, fields: &ReportFields) -> Vec<u8> {
        let mut r = vec![0u8; REPORT_LEN];
        let mut put = |at: usize, bytes: &[u8]| r[at..at + bytes.len()].copy_from_slice(bytes);
        let tcb = self.tcb.to_bytes();
        put(0x00, &fields.version.to_le_bytes()); // VERSION
        put(0x08, &fields.policy.to_le_bytes()); // POLICY
        put(0x30, &fields.vmpl.to_le_bytes()); // VMPL
        put(0x34, &1u32.to_le_bytes()); // SIGNATURE_ALGO: ECDSA P-384 SHA-384
        put(0x38, &tcb); // CURRENT_TCB
        put(0x40, &1u64.to_le_bytes()); // PLATFORM_INFO: SMT enabled
        put(0x48, &0u32.to_le_bytes()); // KEY_INFO: signed by the VCEK
        put(0x50, &fields.report_data); // REPORT_DATA
        put(0x90, &fields.measurement); // MEASUREMENT
        put(0xC0, &fields.host_data); // HOST_DATA
        put(0x140, &[0x5A; 32]); // REPORT_ID
        put(0x160, &[0xFF; 32]); // REPORT_ID_MA: no migration agent
        let reported = fields.reported_tcb.unwrap_or(self.tcb).to_bytes();
        put(0x180, &reported); // REPORTED_TCB
        if fields.version >= 3 {
            let (family, model) = cpuid(&self.product);
            put(0x188, &[family, model, 1]); // CPUID_FAM_ID, CPUID_MOD_ID, CPUID_STEP
        }
        put(0x1A0, &fields.chip_id.unwrap_or(self.chip_id)); // CHIP_ID
        put(0x1E0, &tcb); // COMMITTED_TCB
        put(0x1E8, &[8, 55, 1]); // CURRENT_BUILD, _MINOR, _MAJOR
        put(0x1EC, &[8, 55, 1]); // COMMITTED_BUILD, _MINOR, _MAJOR
        put(0x1F0, &tcb); // LAUNCH_TCB

        let signature: p384::ecdsa::Signature = self.vcek_key.sign(&r[..SIGNED_LEN]);
        let (big_r, big_s) = signature.split_bytes();
        // R and S: little-endian, each in a 72-byte field.
        let little = |big: &[u8]| big.iter().rev().copied().collect::<Vec<u8>>();
        r[0x2A0..0x2A0 + 48].copy_from_slice(&little(&big_r));
        r[0x2E8..0x2E8 + 48].copy_from_slice(&little(&big_s));
        r
    }
}

/// CPUID family and model of a product's processors.
fn cpuid(product: &str) -> (u8, u8) {
    match product {
        "Turin" => (0x1A, 0x02),
        "Genoa" => (0x19, 0x11),
        _ => (0x19, 0x01),
    }
}

/// AMD's subject names, with `common_name`.
fn amd_name(common_name: &str) -> anyhow::Result<Name> {
    Name::from_str(&format!(
        "CN={common_name},O=Advanced Micro Devices,ST=CA,L=Santa Clara,C=US,OU=Engineering"
    ))
    .context("an AMD name")
}

fn oid(dotted: &str) -> anyhow::Result<ObjectIdentifier> {
    ObjectIdentifier::new(dotted).with_context(|| format!("OID {dotted}"))
}

/// A DER INTEGER from 0 to 255.
fn integer(value: u8) -> Vec<u8> {
    if value < 0x80 {
        vec![0x02, 0x01, value]
    } else {
        vec![0x02, 0x02, 0x00, value]
    }
}

/// A DER IA5String.
fn ia5_string(text: &str) -> Vec<u8> {
    let mut der = vec![0x16, text.len() as u8];
    der.extend_from_slice(text.as_bytes());
    der
}

fn der_extension(dotted: &str, value: Vec<u8>) -> anyhow::Result<Extension> {
    Ok(Extension {
        extn_id: oid(dotted)?,
        critical: false,
        extn_value: OctetString::new(value)?,
    })
}

fn spki(key: &impl rsa::pkcs8::EncodePublicKey) -> anyhow::Result<SubjectPublicKeyInfoOwned> {
    let der = key.to_public_key_der().context("encoding a public key")?;
    SubjectPublicKeyInfoOwned::from_der(der.as_bytes()).context("reading a public key")
}

/// A certificate for `subject` and its key, signed by `issuer_key` with
/// RSA-PSS, SHA-384, MGF1 SHA-384 and a 48-byte salt, as AMD signs.
fn sign_certificate(
    issuer_key: &rsa::RsaPrivateKey,
    issuer: &Name,
    subject: Name,
    subject_public_key_info: SubjectPublicKeyInfoOwned,
    (not_before, not_after): (SystemTime, SystemTime),
    extensions: Vec<Extension>,
) -> anyhow::Result<Vec<u8>> {
    let signer = rsa::pss::BlindedSigningKey::<sha2::Sha384>::new(issuer_key.clone());
    let algorithm = signer
        .signature_algorithm_identifier()
        .context("the RSA-PSS algorithm identifier")?;
    let tbs = TbsCertificate {
        version: Version::V3,
        serial_number: SerialNumber::new(&[1]).context("a serial number")?,
        signature: algorithm.clone(),
        issuer: issuer.clone(),
        validity: Validity {
            not_before: Time::try_from(not_before).context("a start date")?,
            not_after: Time::try_from(not_after).context("an end date")?,
        },
        subject,
        subject_public_key_info,
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: Some(extensions),
    };
    let message = tbs.to_der().context("encoding a certificate")?;
    let signature = signer.sign_with_rng(&mut rsa::rand_core::OsRng, &message);
    let certificate = Certificate {
        tbs_certificate: tbs,
        signature_algorithm: algorithm,
        signature: BitString::from_bytes(&signature.to_vec())?,
    };
    certificate.to_der().context("encoding a certificate")
}

/// A GUID's 16 bytes in the order its text writes them.
fn guid_bytes(text: &str) -> [u8; 16] {
    let hex: Vec<u8> = text
        .bytes()
        .filter(|b| *b != b'-')
        .map(|b| (b as char).to_digit(16).expect("a hex GUID") as u8)
        .collect();
    let mut out = [0; 16];
    for (byte, pair) in out.iter_mut().zip(hex.chunks(2)) {
        *byte = (pair[0] << 4) | pair[1];
    }
    out
}

fn pem(der: &[u8]) -> String {
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|line| std::str::from_utf8(line).expect("base64 is ASCII"))
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}

/// An emulated SEV-SNP guest at configfs-tsm's interface: each report is
/// signed by the processor's VCEK for this guest's MEASUREMENT and POLICY,
/// at the VMPL configfs asks for, and `auxblob` holds the certificate table.
pub struct SnpGuest {
    /// The processor.
    pub snp: std::sync::Arc<EmulatedSnp>,
    /// The guest's launch measurement.
    pub measurement: [u8; 48],
    /// The guest policy (`0x30000`: no debugging, SMT allowed).
    pub policy: u64,
}

impl super::configfs::TsmDevice for SnpGuest {
    fn provider(&self) -> &'static str {
        "sev_guest"
    }

    fn report(&self, inblob: &[u8; 64], privlevel: u32) -> Result<(Vec<u8>, Vec<u8>), String> {
        let report = self
            .snp
            .report(inblob, &self.measurement, self.policy, &[0; 32], privlevel);
        Ok((report, self.snp.auxblob()))
    }
}

/// An emulated AMD Key Distribution Service on loopback: the VCEK of a
/// chip at its TCB (DER) at `/vcek/v1/PRODUCT/HWID?blSPL=…&teeSPL=…&snpSPL=…&ucodeSPL=…`
/// (and `fmcSPL` on Turin), the product's ASK and ARK (PEM) at
/// `/vcek/v1/PRODUCT/cert_chain`; anything else is 404. Stops when dropped.
pub struct Kds {
    service: super::http::Service,
}

impl Kds {
    /// Serves `snp`'s certificates on a free loopback port.
    pub fn start(snp: std::sync::Arc<EmulatedSnp>) -> anyhow::Result<Kds> {
        Ok(Kds {
            service: super::http::Service::start(move |route, query| {
                Ok(snp.kds_answer(route, query))
            })?,
        })
    }

    /// The KDS's base URL (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> &str {
        self.service.url()
    }

    /// How many requests it answered.
    pub fn requests(&self) -> usize {
        self.service.requests()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcb_bytes_follow_the_product_layout() {
        let milan = Tcb {
            bootloader: 3,
            tee: 0,
            snp: 8,
            microcode: 115,
            fmc: None,
        };
        assert_eq!(milan.to_bytes(), [3, 0, 0, 0, 0, 0, 8, 115]);
        let turin = Tcb {
            fmc: Some(1),
            ..milan
        };
        assert_eq!(turin.to_bytes(), [1, 3, 0, 8, 0, 0, 0, 115]);
    }

    #[test]
    fn guids_are_stored_in_text_order() {
        assert_eq!(guid_bytes(GUID_ARK)[..4], [0xc0, 0xb4, 0x06, 0xa4]);
        assert_eq!(guid_bytes(GUID_VCEK)[15], 0xcd);
    }
}
