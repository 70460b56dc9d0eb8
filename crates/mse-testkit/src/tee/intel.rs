//! An emulated Intel DCAP PKI: SGX v3 and TDX v4 quotes, with the PCK chain
//! and collateral (CRLs, TCB info, QE identity) that verify them, all under
//! a fresh test root that only the tests trust.
//!
//! The formats are Intel's public ones (the SGX/TDX quote headers and
//! bodies of `sgx_quote_3.h` and `sgx_quote_4.h`, the PCK certificate's SGX
//! extension, the PCS's TCB info v3 and QE identity v2 JSON), written here
//! independently of the verifier in `mse-attest`, so a test shows that two
//! separate readings of the formats agree. Nothing here proves anything
//! about hardware: every chain ends at [`EmulatedIntel::root_der`].

use anyhow::Context as _;
use chrono::{DateTime, Duration, Utc};
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::DecodePrivateKey as _;
use sha2::{Digest as _, Sha256};

/// Which TEE a quote or collateral is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tee {
    /// SGX: quote v3, TCB info `SGX`, QE identity `QE`.
    Sgx,
    /// TDX: quote v4, TCB info `TDX`, QE identity `TD_QE`.
    Tdx,
}

/// The platform's FMSPC (family, model, stepping, platform type).
pub const FMSPC: [u8; 6] = [0x00, 0x90, 0x6e, 0xd5, 0x00, 0x00];
/// The PCE's id.
pub const PCE_ID: [u8; 2] = [0, 0];
/// The platform's CPUSVN: its 16 SGX TCB component SVNs.
pub const CPU_SVN: [u8; 16] = [7, 7, 2, 2, 3, 1, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0];
/// The PCE's security version.
pub const PCE_SVN: u16 = 13;
/// TEE_TCB_SVN of the emulated TDX module: ISVSVN 3, module version 1
/// (`TDX_01`), then the TDX TCB components.
pub const TEE_TCB_SVN: [u8; 16] = [3, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
/// MRSIGNER of the emulated quoting enclaves.
pub const QE_MR_SIGNER: [u8; 32] = [0x51; 32];
/// ISVSVN of the emulated quoting enclaves.
pub const QE_SVN: u16 = 8;
/// SGX attributes INIT and MODE64, not DEBUG: a production enclave.
pub const SGX_ATTRIBUTES: [u8; 16] = [0x05, 0, 0, 0, 0, 0, 0, 0, 0x03, 0, 0, 0, 0, 0, 0, 0];
/// TD attributes with only SEPT_VE_DISABLE (bit 28) set: not debug, and
/// what verifiers require of a TD.
pub const TD_ATTRIBUTES: [u8; 8] = [0, 0, 0, 0x10, 0, 0, 0, 0];

/// Intel's QE vendor id, in every quote header.
const QE_VENDOR_ID: [u8; 16] = [
    0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9, 0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07,
];
/// The SGX extension of PCK certificates, and its children's arcs.
const SGX_EXTENSION: [u64; 7] = [1, 2, 840, 113741, 1, 13, 1];
/// The QE authentication data every emulated quote carries.
const QE_AUTH_DATA: [u8; 32] = [0xa5; 32];
/// How long the collateral (CRLs, TCB info, QE identity) is valid.
const COLLATERAL_DAYS: i64 = 30;
/// How long the certificates are valid.
const CERT_DAYS: i64 = 3650;

/// A certificate, in both encodings.
struct Cert {
    der: Vec<u8>,
    pem: String,
}

impl Cert {
    fn new(cert: &rcgen::Certificate) -> Self {
        Cert {
            der: cert.der().to_vec(),
            pem: cert.pem(),
        }
    }
}

/// An emulated Intel PKI and one platform certified by it: a root CA, a PCK
/// Platform CA, the platform's PCK certificate, the TCB signing
/// certificate, both CRLs, and the platform's quoting enclaves.
pub struct EmulatedIntel {
    issued: DateTime<Utc>,
    root: Cert,
    pck_ca: Cert,
    pck: Cert,
    pck_key: SigningKey,
    tcb_signer: Cert,
    tcb_key: SigningKey,
    attestation_key: SigningKey,
    root_crl: Vec<u8>,
    pck_crl: Vec<u8>,
}

impl std::fmt::Debug for EmulatedIntel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmulatedIntel")
            .field("issued", &self.issued)
            .finish_non_exhaustive()
    }
}

fn offset(at: DateTime<Utc>) -> anyhow::Result<time::OffsetDateTime> {
    time::OffsetDateTime::from_unix_timestamp(at.timestamp()).context("date out of range")
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn new_key() -> anyhow::Result<(rcgen::KeyPair, SigningKey)> {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let signing = SigningKey::from_pkcs8_der(pair.serialized_der())
        .map_err(|e| anyhow::anyhow!("P-256 key: {e}"))?;
    Ok((pair, signing))
}

/// Raw ECDSA P-256 / SHA-256 signature, r ‖ s, as Intel's formats carry them.
fn sign(key: &SigningKey, message: &[u8]) -> anyhow::Result<[u8; 64]> {
    let signature: Signature = key
        .try_sign(message)
        .map_err(|e| anyhow::anyhow!("ECDSA: {e}"))?;
    let mut out = [0u8; 64];
    out.copy_from_slice(&signature.to_bytes());
    Ok(out)
}

/// The attestation key's public point, X ‖ Y.
fn public_xy(key: &SigningKey) -> [u8; 64] {
    let point = key.verifying_key().to_encoded_point(false);
    let mut out = [0u8; 64];
    // An uncompressed point is 0x04 ‖ X ‖ Y.
    out.copy_from_slice(&point.as_bytes()[1..65]);
    out
}

/// Certificate parameters of the emulated PKI, valid from a day before
/// `issued` for ten years.
fn params(common_name: &str, issued: DateTime<Utc>) -> anyhow::Result<rcgen::CertificateParams> {
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, common_name);
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "MSE tests - not Intel");
    params.not_before = offset(issued - Duration::days(1))?;
    params.not_after = offset(issued + Duration::days(CERT_DAYS))?;
    Ok(params)
}

fn ca_params(
    common_name: &str,
    path_len: u8,
    issued: DateTime<Utc>,
) -> anyhow::Result<rcgen::CertificateParams> {
    let mut params = params(common_name, issued)?;
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(path_len));
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    Ok(params)
}

fn leaf_params(
    common_name: &str,
    issued: DateTime<Utc>,
) -> anyhow::Result<rcgen::CertificateParams> {
    let mut params = params(common_name, issued)?;
    params.is_ca = rcgen::IsCa::ExplicitNoCa;
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::DigitalSignature,
        rcgen::KeyUsagePurpose::ContentCommitment,
    ];
    Ok(params)
}

fn crl(
    issuer: &rcgen::Issuer<'_, &rcgen::KeyPair>,
    issued: DateTime<Utc>,
) -> anyhow::Result<Vec<u8>> {
    let params = rcgen::CertificateRevocationListParams {
        this_update: offset(issued)?,
        next_update: offset(issued + Duration::days(COLLATERAL_DAYS))?,
        crl_number: rcgen::SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: Vec::new(),
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    };
    Ok(params.signed_by(issuer)?.der().to_vec())
}

// A few DER encoders, enough for the SGX extension.

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend_from_slice(&bytes);
    }
    out.extend_from_slice(content);
    out
}

fn der_oid(arcs: &[u64]) -> Vec<u8> {
    let mut content = Vec::new();
    let mut push = |mut arc: u64| {
        let mut groups = vec![(arc & 0x7f) as u8];
        arc >>= 7;
        while arc > 0 {
            groups.push(0x80 | (arc & 0x7f) as u8);
            arc >>= 7;
        }
        content.extend(groups.iter().rev());
    };
    if let [first, second, rest @ ..] = arcs {
        push(first * 40 + second);
        rest.iter().for_each(|arc| push(*arc));
    }
    der(0x06, &content)
}

fn der_uint(value: u16) -> Vec<u8> {
    let mut bytes: Vec<u8> = value
        .to_be_bytes()
        .into_iter()
        .skip_while(|b| *b == 0)
        .collect();
    if bytes.first().is_none_or(|b| b & 0x80 != 0) {
        bytes.insert(0, 0);
    }
    der(0x02, &bytes)
}

fn der_seq(items: &[Vec<u8>]) -> Vec<u8> {
    der(0x30, &items.concat())
}

/// `SEQUENCE { OID sgx-extension.<child>, value }`.
fn sgx_entry(child: &[u64], value: Vec<u8>) -> Vec<u8> {
    let oid = [&SGX_EXTENSION[..], child].concat();
    der_seq(&[der_oid(&oid), value])
}

/// The content of the PCK certificate's SGX extension: PPID, TCB (the 16
/// component SVNs, PCESVN, CPUSVN), PCE-ID, FMSPC, SGX type (standard),
/// and, as a Platform CA issues it, the platform instance and configuration.
fn sgx_extension() -> Vec<u8> {
    let mut tcb: Vec<Vec<u8>> = CPU_SVN
        .iter()
        .zip(1u64..)
        .map(|(svn, i)| sgx_entry(&[2, i], der_uint(u16::from(*svn))))
        .collect();
    tcb.push(sgx_entry(&[2, 17], der_uint(PCE_SVN)));
    tcb.push(sgx_entry(&[2, 18], der(0x04, &CPU_SVN)));
    der_seq(&[
        sgx_entry(&[1], der(0x04, &[0x11; 16])),
        sgx_entry(&[2], der_seq(&tcb)),
        sgx_entry(&[3], der(0x04, &PCE_ID)),
        sgx_entry(&[4], der(0x04, &FMSPC)),
        sgx_entry(&[5], der(0x0a, &[0])),
        sgx_entry(&[6], der(0x04, &[0x22; 16])),
        sgx_entry(
            &[7],
            der_seq(&[
                sgx_entry(&[7, 1], der(0x01, &[0x00])),
                sgx_entry(&[7, 2], der(0x01, &[0xff])),
                sgx_entry(&[7, 3], der(0x01, &[0xff])),
            ]),
        ),
    ])
}

fn svns(values: &[u8]) -> serde_json::Value {
    values
        .iter()
        .map(|svn| serde_json::json!({ "svn": svn }))
        .collect()
}

fn hex_upper(bytes: &[u8]) -> String {
    hex::encode_upper(bytes)
}

/// An SGX report body (384 bytes) with MRENCLAVE, MRSIGNER, ATTRIBUTES and
/// REPORTDATA at their offsets (64, 128, 48, 320), CPUSVN the platform's.
pub fn sgx_report_body(
    mr_enclave: &[u8; 32],
    mr_signer: &[u8; 32],
    attributes: &[u8; 16],
    report_data: &[u8; 64],
) -> [u8; 384] {
    let mut body = [0u8; 384];
    body[0..16].copy_from_slice(&CPU_SVN);
    body[48..64].copy_from_slice(attributes);
    body[64..96].copy_from_slice(mr_enclave);
    body[128..160].copy_from_slice(mr_signer);
    body[320..384].copy_from_slice(report_data);
    body
}

/// A TD 1.0 report body (584 bytes) with MRTD (136), RTMR0..3 (328, 376,
/// 424, 472), TD attributes (120) and REPORTDATA (520); TEE_TCB_SVN is the
/// emulated module's, MRSIGNERSEAM and SEAMATTRIBUTES zero, as the TCB
/// info expects.
pub fn td_report_body(
    mr_td: &[u8; 48],
    rtmrs: &[[u8; 48]; 4],
    td_attributes: &[u8; 8],
    report_data: &[u8; 64],
) -> [u8; 584] {
    let mut body = [0u8; 584];
    body[0..16].copy_from_slice(&TEE_TCB_SVN);
    body[120..128].copy_from_slice(td_attributes);
    // XFAM: x87, SSE, AVX (bits 0-2).
    body[128] = 0x07;
    body[136..184].copy_from_slice(mr_td);
    for (i, rtmr) in rtmrs.iter().enumerate() {
        let at = 328 + 48 * i;
        body[at..at + 48].copy_from_slice(rtmr);
    }
    body[520..584].copy_from_slice(report_data);
    body
}

impl EmulatedIntel {
    /// One PKI for the whole test process, issued an hour ago: its keys
    /// are made once.
    pub fn shared() -> std::sync::Arc<EmulatedIntel> {
        static SHARED: std::sync::OnceLock<std::sync::Arc<EmulatedIntel>> =
            std::sync::OnceLock::new();
        SHARED
            .get_or_init(|| {
                std::sync::Arc::new(
                    EmulatedIntel::new(Utc::now() - Duration::hours(1))
                        .expect("an emulated Intel PKI"),
                )
            })
            .clone()
    }

    /// A fresh PKI whose collateral is issued at `issued` and valid for 30
    /// days; its certificates are valid from a day before for ten years.
    pub fn new(issued: DateTime<Utc>) -> anyhow::Result<Self> {
        let (root_key, _) = new_key()?;
        let root_params = ca_params("Emulated Intel SGX Root CA", 1, issued)?;
        let root = root_params.clone().self_signed(&root_key)?;
        let root_issuer = rcgen::Issuer::new(root_params, &root_key);

        let (pck_ca_key, _) = new_key()?;
        let pck_ca_params = ca_params("Emulated Intel SGX PCK Platform CA", 0, issued)?;
        let pck_ca = pck_ca_params.clone().signed_by(&pck_ca_key, &root_issuer)?;
        let pck_ca_issuer = rcgen::Issuer::new(pck_ca_params, &pck_ca_key);

        let (pck_pair, pck_key) = new_key()?;
        let mut pck_params = leaf_params("Emulated Intel SGX PCK Certificate", issued)?;
        pck_params
            .custom_extensions
            .push(rcgen::CustomExtension::from_oid_content(
                &SGX_EXTENSION,
                sgx_extension(),
            ));
        let pck = pck_params.signed_by(&pck_pair, &pck_ca_issuer)?;

        let (tcb_pair, tcb_key) = new_key()?;
        let tcb_signer = leaf_params("Emulated Intel SGX TCB Signing", issued)?
            .signed_by(&tcb_pair, &root_issuer)?;

        let (_, attestation_key) = new_key()?;
        Ok(EmulatedIntel {
            issued,
            root_crl: crl(&root_issuer, issued)?,
            pck_crl: crl(&pck_ca_issuer, issued)?,
            root: Cert::new(&root),
            pck_ca: Cert::new(&pck_ca),
            pck: Cert::new(&pck),
            pck_key,
            tcb_signer: Cert::new(&tcb_signer),
            tcb_key,
            attestation_key,
        })
    }

    /// Writes this platform, keys included, to `path` (mode 0600): what
    /// another process of the test (an emulated Gramine loader) needs to
    /// quote on it. Emulated hardware secrets, for tests only.
    pub fn save(&self, path: &std::path::Path) -> anyhow::Result<()> {
        use p256::pkcs8::EncodePrivateKey as _;
        let key = |k: &SigningKey| -> anyhow::Result<String> {
            Ok(hex::encode(
                k.to_pkcs8_der()
                    .map_err(|e| anyhow::anyhow!("P-256 key: {e}"))?
                    .as_bytes(),
            ))
        };
        let cert = |c: &Cert| serde_json::json!({ "der": hex::encode(&c.der), "pem": c.pem });
        let saved = serde_json::json!({
            "issued": self.issued.to_rfc3339(),
            "root": cert(&self.root),
            "pck_ca": cert(&self.pck_ca),
            "pck": cert(&self.pck),
            "tcb_signer": cert(&self.tcb_signer),
            "pck_key": key(&self.pck_key)?,
            "tcb_key": key(&self.tcb_key)?,
            "attestation_key": key(&self.attestation_key)?,
            "root_crl": hex::encode(&self.root_crl),
            "pck_crl": hex::encode(&self.pck_crl),
        });
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        file.write_all(saved.to_string().as_bytes())?;
        Ok(())
    }

    /// The platform [`EmulatedIntel::save`] wrote to `path`.
    pub fn load(path: &std::path::Path) -> anyhow::Result<EmulatedIntel> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let saved: serde_json::Value = serde_json::from_str(&text)?;
        let field = |name: &str| -> anyhow::Result<&str> {
            saved[name]
                .as_str()
                .with_context(|| format!("{}: no {name}", path.display()))
        };
        let bytes = |name: &str| -> anyhow::Result<Vec<u8>> { Ok(hex::decode(field(name)?)?) };
        let key = |name: &str| -> anyhow::Result<SigningKey> {
            SigningKey::from_pkcs8_der(&bytes(name)?).map_err(|e| anyhow::anyhow!("{name}: {e}"))
        };
        let cert = |name: &str| -> anyhow::Result<Cert> {
            let entry = &saved[name];
            Ok(Cert {
                der: hex::decode(entry["der"].as_str().context("der")?)?,
                pem: entry["pem"].as_str().context("pem")?.to_string(),
            })
        };
        Ok(EmulatedIntel {
            issued: DateTime::parse_from_rfc3339(field("issued")?)?.with_timezone(&Utc),
            root: cert("root")?,
            pck_ca: cert("pck_ca")?,
            pck: cert("pck")?,
            pck_key: key("pck_key")?,
            tcb_signer: cert("tcb_signer")?,
            tcb_key: key("tcb_key")?,
            attestation_key: key("attestation_key")?,
            root_crl: bytes("root_crl")?,
            pck_crl: bytes("pck_crl")?,
        })
    }

    /// The test root CA (DER): the only root these quotes verify under.
    pub fn root_der(&self) -> Vec<u8> {
        self.root.der.clone()
    }

    /// The PCK certificate chain, leaf to root (PEM), as quotes carry it.
    pub fn pck_chain_pem(&self) -> String {
        format!("{}{}{}", self.pck.pem, self.pck_ca.pem, self.root.pem)
    }

    /// The TCB info JSON (the `tcbInfo` object, version 3): one level,
    /// `UpToDate`, exactly the platform's TCB, and an `OutOfDate` one below.
    pub fn tcb_info(&self, tee: Tee) -> String {
        let level = |sgx: &[u8], pce_svn: u16, tdx: &[u8], status: &str, date| {
            let mut tcb = serde_json::json!({ "sgxtcbcomponents": svns(sgx), "pcesvn": pce_svn });
            if tee == Tee::Tdx {
                tcb["tdxtcbcomponents"] = svns(tdx);
            }
            serde_json::json!({ "tcb": tcb, "tcbDate": date, "tcbStatus": status })
        };
        let date = rfc3339(self.issued - Duration::days(COLLATERAL_DAYS));
        let old_date = rfc3339(self.issued - Duration::days(10 * COLLATERAL_DAYS));
        let mut info = serde_json::json!({
            "id": match tee { Tee::Sgx => "SGX", Tee::Tdx => "TDX" },
            "version": 3,
            "issueDate": rfc3339(self.issued),
            "nextUpdate": rfc3339(self.issued + Duration::days(COLLATERAL_DAYS)),
            "fmspc": hex_upper(&FMSPC),
            "pceId": hex_upper(&PCE_ID),
            "tcbType": 0,
            "tcbEvaluationDataNumber": 17,
        });
        if tee == Tee::Tdx {
            let module = |id: Option<&str>| {
                let mut module = serde_json::json!({
                    "mrsigner": hex_upper(&[0; 48]),
                    "attributes": hex_upper(&[0; 8]),
                    "attributesMask": hex_upper(&[0xff; 8]),
                });
                if let Some(id) = id {
                    module["id"] = id.into();
                    module["tcbLevels"] = serde_json::json!([{
                        "tcb": { "isvsvn": TEE_TCB_SVN[0] },
                        "tcbDate": date,
                        "tcbStatus": "UpToDate",
                    }]);
                }
                module
            };
            info["tdxModule"] = module(None);
            info["tdxModuleIdentities"] =
                serde_json::json!([module(Some(&format!("TDX_{:02X}", TEE_TCB_SVN[1])))]);
        }
        let mut lower = CPU_SVN;
        lower[0] -= 1;
        info["tcbLevels"] = serde_json::json!([
            level(&CPU_SVN, PCE_SVN, &TEE_TCB_SVN, "UpToDate", date.clone()),
            level(&lower, PCE_SVN - 1, &TEE_TCB_SVN, "OutOfDate", old_date),
        ]);
        info.to_string()
    }

    /// The QE identity JSON (version 2, `QE` or `TD_QE`): the emulated QE's
    /// MRSIGNER and product id, `UpToDate` at its ISVSVN.
    pub fn qe_identity(&self, tee: Tee) -> String {
        serde_json::json!({
            "id": match tee { Tee::Sgx => "QE", Tee::Tdx => "TD_QE" },
            "version": 2,
            "issueDate": rfc3339(self.issued),
            "nextUpdate": rfc3339(self.issued + Duration::days(COLLATERAL_DAYS)),
            "tcbEvaluationDataNumber": 17,
            "miscselect": "00000000",
            "miscselectMask": "FFFFFFFF",
            "attributes": hex_upper(&SGX_ATTRIBUTES),
            "attributesMask": "FBFFFFFFFFFFFFFF0000000000000000",
            "mrsigner": hex_upper(&QE_MR_SIGNER),
            "isvprodid": qe_prod_id(tee),
            "tcbLevels": [{
                "tcb": { "isvsvn": QE_SVN },
                "tcbDate": rfc3339(self.issued - Duration::days(COLLATERAL_DAYS)),
                "tcbStatus": "UpToDate",
            }],
        })
        .to_string()
    }

    /// The collateral for `tee`'s quotes, in dcap-qvl's `QuoteCollateralV3`
    /// JSON: PEM chains, CRLs and raw r ‖ s signatures in hex, the TCB info
    /// and QE identity as the exact text their signatures cover.
    pub fn collateral_json(&self, tee: Tee) -> anyhow::Result<String> {
        let tcb_info = self.tcb_info(tee);
        let qe_identity = self.qe_identity(tee);
        let signer_chain = format!("{}{}", self.tcb_signer.pem, self.root.pem);
        Ok(serde_json::json!({
            "pck_crl_issuer_chain": format!("{}{}", self.pck_ca.pem, self.root.pem),
            "root_ca_crl": hex::encode(&self.root_crl),
            "pck_crl": hex::encode(&self.pck_crl),
            "tcb_info_issuer_chain": signer_chain,
            "tcb_info_signature": hex::encode(sign(&self.tcb_key, tcb_info.as_bytes())?),
            "tcb_info": tcb_info,
            "qe_identity_issuer_chain": signer_chain,
            "qe_identity_signature": hex::encode(sign(&self.tcb_key, qe_identity.as_bytes())?),
            "qe_identity": qe_identity,
        })
        .to_string())
    }

    /// The quoting enclave's report: its identity, and REPORTDATA binding
    /// the attestation key and the QE authentication data.
    fn qe_report(&self, tee: Tee) -> [u8; 384] {
        let mut digest = Sha256::new();
        digest.update(public_xy(&self.attestation_key));
        digest.update(QE_AUTH_DATA);
        let mut report_data = [0u8; 64];
        report_data[..32].copy_from_slice(&digest.finalize());
        let mut report = sgx_report_body(&[0x9e; 32], &QE_MR_SIGNER, &SGX_ATTRIBUTES, &report_data);
        report[256..258].copy_from_slice(&qe_prod_id(tee).to_le_bytes());
        report[258..260].copy_from_slice(&QE_SVN.to_le_bytes());
        report
    }

    /// QE report, its PCK signature, the QE authentication data and the
    /// type-5 certification data (the PCK chain): the part of the signature
    /// data SGX v3 and TDX v4 (inside type 6) share.
    fn qe_report_certification(&self, tee: Tee) -> anyhow::Result<Vec<u8>> {
        let qe_report = self.qe_report(tee);
        let chain = self.pck_chain_pem();
        let mut out = qe_report.to_vec();
        out.extend_from_slice(&sign(&self.pck_key, &qe_report)?);
        out.extend_from_slice(&(QE_AUTH_DATA.len() as u16).to_le_bytes());
        out.extend_from_slice(&QE_AUTH_DATA);
        out.extend_from_slice(&5u16.to_le_bytes());
        out.extend_from_slice(&u32::try_from(chain.len())?.to_le_bytes());
        out.extend_from_slice(chain.as_bytes());
        Ok(out)
    }

    fn header(version: u16, tee_type: u32) -> Vec<u8> {
        let mut header = vec![0u8; 48];
        header[0..2].copy_from_slice(&version.to_le_bytes());
        header[2..4].copy_from_slice(&2u16.to_le_bytes()); // ECDSA P-256
        header[4..8].copy_from_slice(&tee_type.to_le_bytes());
        header[8..10].copy_from_slice(&QE_SVN.to_le_bytes());
        header[10..12].copy_from_slice(&PCE_SVN.to_le_bytes());
        header[12..28].copy_from_slice(&QE_VENDOR_ID);
        // User data: the QE id, then zeros.
        header[28..44].copy_from_slice(&[0x33; 16]);
        header
    }

    /// header ‖ body ‖ signature data length ‖ signature data, where the
    /// signature data starts with the attestation key's signature over
    /// header ‖ body and the key itself.
    fn quote(&self, header: Vec<u8>, body: &[u8], rest: Vec<u8>) -> anyhow::Result<Vec<u8>> {
        let mut quote = header;
        quote.extend_from_slice(body);
        let mut auth = sign(&self.attestation_key, &quote)?.to_vec();
        auth.extend_from_slice(&public_xy(&self.attestation_key));
        auth.extend_from_slice(&rest);
        quote.extend_from_slice(&u32::try_from(auth.len())?.to_le_bytes());
        quote.extend_from_slice(&auth);
        Ok(quote)
    }

    /// An SGX quote (v3) of `report_body`, signed by this platform's QE.
    pub fn sgx_quote(&self, report_body: &[u8; 384]) -> anyhow::Result<Vec<u8>> {
        let rest = self.qe_report_certification(Tee::Sgx)?;
        self.quote(Self::header(3, 0), report_body, rest)
    }

    /// A TDX quote (v4) of a TD 1.0 report, signed by this platform's TD
    /// QE: certification data type 6 wraps the QE report and the PCK chain.
    pub fn tdx_quote(&self, td_report: &[u8; 584]) -> anyhow::Result<Vec<u8>> {
        let inner = self.qe_report_certification(Tee::Tdx)?;
        let mut rest = 6u16.to_le_bytes().to_vec();
        rest.extend_from_slice(&u32::try_from(inner.len())?.to_le_bytes());
        rest.extend_from_slice(&inner);
        self.quote(Self::header(4, 0x81), td_report, rest)
    }
}

/// ISVPRODID of Intel's QE (1) and TD QE (2).
fn qe_prod_id(tee: Tee) -> u16 {
    match tee {
        Tee::Sgx => 1,
        Tee::Tdx => 2,
    }
}

/// An emulated TDX guest at configfs-tsm's interface: each report is a TD
/// quote of this TD (its MRTD, RTMRs and attributes) with the REPORTDATA
/// written to `inblob`, signed by the emulated platform.
pub struct TdxGuest {
    /// The platform that signs the quotes.
    pub intel: std::sync::Arc<EmulatedIntel>,
    /// The TD's MRTD.
    pub mr_td: [u8; 48],
    /// RTMR0..3.
    pub rtmrs: [[u8; 48]; 4],
    /// The TD attributes ([`TD_ATTRIBUTES`]: not debug).
    pub td_attributes: [u8; 8],
}

impl super::configfs::TsmDevice for TdxGuest {
    fn provider(&self) -> &'static str {
        "tdx_guest"
    }

    fn report(&self, inblob: &[u8; 64], _privlevel: u32) -> Result<(Vec<u8>, Vec<u8>), String> {
        let body = td_report_body(&self.mr_td, &self.rtmrs, &self.td_attributes, inblob);
        let quote = self.intel.tdx_quote(&body).map_err(|e| e.to_string())?;
        Ok((quote, Vec::new()))
    }
}

/// An emulated PCCS on loopback: the v4 API paths a collateral client
/// fetches (`pckcrl`, `tcb`, `qe/identity`, `rootcacrl`, under `/sgx/` and
/// `/tdx/`), answered from an [`EmulatedIntel`] with the headers Intel's
/// PCS sends (issuer chains URL-encoded). Stops when dropped.
pub struct Pccs {
    service: super::http::Service,
}

impl Pccs {
    /// Serves `intel`'s collateral on a free loopback port.
    pub fn start(intel: std::sync::Arc<EmulatedIntel>) -> anyhow::Result<Pccs> {
        Ok(Pccs {
            service: super::http::Service::start(move |route, _| pccs_answer(&intel, route))?,
        })
    }

    /// The PCCS's base URL (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> &str {
        self.service.url()
    }
}

/// Percent-encodes a header value as Intel's PCS does its issuer chains.
fn url_encoded(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A PCCS's answer to a GET of `route` (v4 API).
fn pccs_answer(intel: &EmulatedIntel, route: &str) -> anyhow::Result<super::http::Answer> {
    let signer_chain = format!("{}{}", intel.tcb_signer.pem, intel.root.pem);
    let json = |key: &str, text: String| -> anyhow::Result<Vec<u8>> {
        let signature = hex::encode(sign(&intel.tcb_key, text.as_bytes())?);
        Ok(format!("{{\"{key}\":{text},\"signature\":\"{signature}\"}}").into_bytes())
    };
    Ok(match route {
        "/sgx/certification/v4/pckcrl" => Some((
            vec![(
                "SGX-PCK-CRL-Issuer-Chain",
                url_encoded(&format!("{}{}", intel.pck_ca.pem, intel.root.pem)),
            )],
            intel.pck_crl.clone(),
        )),
        "/sgx/certification/v4/rootcacrl" => {
            Some((Vec::new(), hex::encode(&intel.root_crl).into_bytes()))
        }
        "/sgx/certification/v4/tcb" | "/tdx/certification/v4/tcb" => {
            let tee = if route.starts_with("/tdx") {
                Tee::Tdx
            } else {
                Tee::Sgx
            };
            Some((
                vec![("TCB-Info-Issuer-Chain", url_encoded(&signer_chain))],
                json("tcbInfo", intel.tcb_info(tee))?,
            ))
        }
        "/sgx/certification/v4/qe/identity" | "/tdx/certification/v4/qe/identity" => {
            let tee = if route.starts_with("/tdx") {
                Tee::Tdx
            } else {
                Tee::Sgx
            };
            Some((
                vec![(
                    "SGX-Enclave-Identity-Issuer-Chain",
                    url_encoded(&signer_chain),
                )],
                json("enclaveIdentity", intel.qe_identity(tee))?,
            ))
        }
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_encodes_oids_integers_and_long_lengths() {
        // 1.2.840.113741 is 06 07 2a 86 48 86 f8 4d (Intel's arc).
        assert_eq!(
            der_oid(&[1, 2, 840, 113741]),
            [0x06, 0x06, 0x2a, 0x86, 0x48, 0x86, 0xf8, 0x4d]
        );
        assert_eq!(der_uint(0), [0x02, 0x01, 0x00]);
        assert_eq!(der_uint(200), [0x02, 0x02, 0x00, 0xc8]);
        assert_eq!(&der(0x04, &[0; 300])[..4], &[0x04, 0x82, 0x01, 0x2c]);
    }

    #[test]
    fn quotes_have_the_documented_lengths_and_headers() {
        let intel = EmulatedIntel::new(Utc::now()).unwrap();
        let sgx = intel
            .sgx_quote(&sgx_report_body(
                &[1; 32],
                &[2; 32],
                &SGX_ATTRIBUTES,
                &[3; 64],
            ))
            .unwrap();
        assert_eq!(&sgx[0..8], &[3, 0, 2, 0, 0, 0, 0, 0]);
        assert_eq!(&sgx[48 + 64..48 + 96], &[1; 32]);
        let auth_len = u32::from_le_bytes(sgx[432..436].try_into().unwrap()) as usize;
        assert_eq!(sgx.len(), 436 + auth_len);

        let tdx = intel
            .tdx_quote(&td_report_body(
                &[4; 48],
                &[[5; 48]; 4],
                &TD_ATTRIBUTES,
                &[6; 64],
            ))
            .unwrap();
        assert_eq!(&tdx[0..8], &[4, 0, 2, 0, 0x81, 0, 0, 0]);
        assert_eq!(&tdx[48 + 136..48 + 184], &[4; 48]);
        let auth_len = u32::from_le_bytes(tdx[632..636].try_into().unwrap()) as usize;
        assert_eq!(tdx.len(), 636 + auth_len);
        assert_eq!(&tdx[636 + 128..636 + 130], &6u16.to_le_bytes());
    }
}
