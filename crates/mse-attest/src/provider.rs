//! Where a node's evidence comes from: Gramine's attestation device inside
//! an SGX enclave, configfs-tsm in a TDX or SEV-SNP confidential VM, or the
//! simulation TEE. Each root is configurable, so tests point a provider at
//! an emulated device that answers in the hardware's exact formats.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::AttestError;

/// What a provider returns for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attested {
    /// The quote (SGX, TDX) or attestation report (SEV-SNP).
    pub evidence: Vec<u8>,
    /// What endorses it, served beside it: on SEV-SNP the certificate
    /// table (VCEK or VLEK, ASK, ARK) of configfs-tsm's `auxblob`; for an
    /// SGX or TDX quote Intel's collateral (JSON), when the node fetched it
    /// ([`WithCollateral`]).
    pub aux: Option<Vec<u8>>,
}

/// A provider whose SGX and TDX quotes come with Intel's collateral for
/// them (JSON, dcap-qvl's `QuoteCollateralV3`), fetched from a PCCS when
/// the quote is made: the node serves it beside its quote, so a verifier
/// needs no PCCS of its own. A fetch that fails leaves the quote without
/// it (verifiers then fetch their own) and is kept for the node to log.
#[cfg(feature = "pccs")]
pub struct WithCollateral {
    inner: Box<dyn QuoteProvider>,
    pccs_url: String,
    problem: std::sync::Arc<std::sync::Mutex<Option<String>>>,
}

#[cfg(feature = "pccs")]
impl WithCollateral {
    /// `inner`'s quotes with collateral from the PCCS at `pccs_url`.
    pub fn new(inner: Box<dyn QuoteProvider>, pccs_url: impl Into<String>) -> Self {
        WithCollateral {
            inner,
            pccs_url: pccs_url.into(),
            problem: Default::default(),
        }
    }

    /// Where this provider says why its last quote has no collateral, if
    /// it has none; it stays readable once the provider is boxed.
    pub fn problem(&self) -> std::sync::Arc<std::sync::Mutex<Option<String>>> {
        self.problem.clone()
    }

    fn collateral(&self, quote: &[u8]) -> Result<Vec<u8>, String> {
        let url = self.pccs_url.clone();
        let quote = quote.to_vec();
        // On a thread of its own: the fetch runs its own async runtime,
        // which cannot start inside a caller's.
        let fetched = std::thread::spawn(move || crate::collateral::fetch_pccs(&url, &quote))
            .join()
            .map_err(|_| "the collateral fetch panicked".to_string())?
            .map_err(|e| e.to_string())?;
        serde_json::to_vec(&fetched).map_err(|e| e.to_string())
    }
}

#[cfg(feature = "pccs")]
impl QuoteProvider for WithCollateral {
    fn quote(&self, report_data: &[u8; 64]) -> Result<Vec<u8>, AttestError> {
        self.inner.quote(report_data)
    }

    fn attest(&self, report_data: &[u8; 64]) -> Result<Attested, AttestError> {
        let mut attested = self.inner.attest(report_data)?;
        let dcap = matches!(
            crate::hardware::kind(&attested.evidence),
            Ok(crate::verify::Tee::Sgx | crate::verify::Tee::Tdx)
        );
        if dcap && attested.aux.is_none() {
            let result = self.collateral(&attested.evidence);
            let problem = result.as_ref().err().cloned();
            attested.aux = result.ok();
            if let Ok(mut slot) = self.problem.lock() {
                *slot = problem;
            }
        }
        Ok(attested)
    }

    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn app_binding(&self) -> Option<[u8; 32]> {
        self.inner.app_binding()
    }
}

/// Produces evidence binding 64 bytes of REPORTDATA.
pub trait QuoteProvider: Send + Sync {
    /// A quote (or report) whose report data is `report_data`.
    fn quote(&self, report_data: &[u8; 64]) -> Result<Vec<u8>, AttestError>;
    /// The quote with what the device gave beside it.
    fn attest(&self, report_data: &[u8; 64]) -> Result<Attested, AttestError> {
        Ok(Attested {
            evidence: self.quote(report_data)?,
            aux: None,
        })
    }
    /// `gramine`, `tdx`, `sev-snp` or `simulation`.
    fn name(&self) -> &'static str;
    /// What this TEE binds in REPORTDATA[32..64], when it is the app's
    /// identity: the fingerprint on TDX and SEV-SNP, where only the runtime
    /// reaches the device. `None` where the measurement itself carries the
    /// fingerprint (SGX, simulation).
    fn app_binding(&self) -> Option<[u8; 32]> {
        None
    }
}

/// Gramine's `/dev/attestation` interface: write REPORTDATA to
/// `<root>/user_report_data`, read the quote from `<root>/quote`.
#[derive(Debug, Clone)]
pub struct GramineProvider {
    root: PathBuf,
}

impl GramineProvider {
    /// Default root of the attestation device.
    pub const DEFAULT_ROOT: &'static str = "/dev/attestation";

    /// A provider reading the device at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        GramineProvider { root: root.into() }
    }

    /// True when the attestation device exists.
    pub fn available(&self) -> bool {
        self.root.join("quote").exists()
    }
}

fn read(path: &Path) -> Result<Vec<u8>, AttestError> {
    std::fs::read(path).map_err(|source| AttestError::ProviderIo {
        action: "read",
        path: path.to_path_buf(),
        source,
    })
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), AttestError> {
    std::fs::write(path, bytes).map_err(|source| AttestError::ProviderIo {
        action: "write",
        path: path.to_path_buf(),
        source,
    })
}

impl QuoteProvider for GramineProvider {
    fn quote(&self, report_data: &[u8; 64]) -> Result<Vec<u8>, AttestError> {
        write(&self.root.join("user_report_data"), report_data)?;
        let quote = read(&self.root.join("quote"))?;
        let parsed = crate::quote::Quote::parse(&quote)?;
        if parsed.body.report_data() != *report_data {
            return Err(AttestError::Provider(
                "the quote from the attestation device does not carry the REPORTDATA written"
                    .into(),
            ));
        }
        Ok(quote)
    }

    fn name(&self) -> &'static str {
        "gramine"
    }
}

/// The confidential VMs that configfs-tsm serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TsmKind {
    /// Intel TDX: quotes v4 or v5.
    Tdx,
    /// AMD SEV-SNP: attestation reports, and the certificate table.
    SevSnp,
}

impl TsmKind {
    /// What the kernel writes in `provider` for this kind.
    pub fn kernel_provider(self) -> &'static str {
        match self {
            TsmKind::Tdx => "tdx_guest",
            TsmKind::SevSnp => "sev_guest",
        }
    }

    /// Where REPORTDATA sits in this kind's evidence.
    fn report_data(self, evidence: &[u8]) -> Option<&[u8]> {
        let at = match self {
            // 48-byte header, then the TD report body, REPORTDATA at 520.
            TsmKind::Tdx => 48 + 520,
            // The report's REPORT_DATA is at 0x50.
            TsmKind::SevSnp => 0x50,
        };
        evidence.get(at..at + 64)
    }
}

/// configfs-tsm (`/sys/kernel/config/tsm`, Linux 6.7 and later): make a
/// report entry, check `provider`, write REPORTDATA to `inblob`, read
/// `outblob` (and `auxblob` on SEV-SNP), and check by `generation` that no
/// one else wrote to the entry in between.
#[derive(Debug)]
pub struct TsmProvider {
    root: PathBuf,
    kind: TsmKind,
    app_binding: [u8; 32],
}

/// Entries made by this process, so that two requests never share a name.
static ENTRIES: AtomicU64 = AtomicU64::new(0);

/// How often a request whose entry someone else wrote to is made again.
const TSM_ATTEMPTS: usize = 3;

impl TsmProvider {
    /// Default root of configfs-tsm.
    pub const DEFAULT_ROOT: &'static str = "/sys/kernel/config/tsm";

    /// A provider of `kind` at `root` (the folder that holds `report/`),
    /// for an app whose fingerprint is `app_binding`.
    pub fn new(root: impl Into<PathBuf>, kind: TsmKind, app_binding: [u8; 32]) -> Self {
        TsmProvider {
            root: root.into(),
            kind,
            app_binding,
        }
    }

    /// Why configfs-tsm at this root cannot serve this kind, if it cannot.
    pub fn unavailable(&self) -> Option<String> {
        let reports = self.root.join("report");
        if !reports.is_dir() {
            return Some(format!(
                "no configfs-tsm at {} (is this a TDX or SEV-SNP guest on Linux 6.7 or later, \
                 with configfs mounted?)",
                reports.display()
            ));
        }
        None
    }

    fn generation(entry: &Path) -> Result<u64, AttestError> {
        let path = entry.join("generation");
        let text = read(&path)?;
        std::str::from_utf8(&text)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .ok_or_else(|| AttestError::Provider(format!("{} is not a number", path.display())))
    }

    fn once(&self, entry: &Path, report_data: &[u8; 64]) -> Result<Option<Attested>, AttestError> {
        let before = Self::generation(entry)?;
        write(&entry.join("inblob"), report_data)?;
        let written = Self::generation(entry)?;
        let evidence = read(&entry.join("outblob"))?;
        let aux = match self.kind {
            TsmKind::SevSnp => Some(read(&entry.join("auxblob"))?),
            TsmKind::Tdx => None,
        };
        let after = Self::generation(entry)?;
        if written != before + 1 || after != written {
            return Ok(None);
        }
        Ok(Some(Attested { evidence, aux }))
    }
}

/// A report entry, removed when dropped.
struct Entry(PathBuf);

impl Drop for Entry {
    fn drop(&mut self) {
        // configfs removes the entry and its files with the folder.
        let _ = std::fs::remove_dir(&self.0);
    }
}

impl QuoteProvider for TsmProvider {
    fn quote(&self, report_data: &[u8; 64]) -> Result<Vec<u8>, AttestError> {
        self.attest(report_data).map(|attested| attested.evidence)
    }

    fn attest(&self, report_data: &[u8; 64]) -> Result<Attested, AttestError> {
        if let Some(why) = self.unavailable() {
            return Err(AttestError::Provider(why));
        }
        let name = format!(
            "mse-{}-{}",
            std::process::id(),
            ENTRIES.fetch_add(1, Ordering::Relaxed)
        );
        let path = self.root.join("report").join(name);
        std::fs::create_dir(&path).map_err(|source| AttestError::ProviderIo {
            action: "create",
            path: path.clone(),
            source,
        })?;
        let entry = Entry(path);
        let provider = read(&entry.0.join("provider"))?;
        let provider = String::from_utf8_lossy(&provider).trim().to_string();
        if provider != self.kind.kernel_provider() {
            return Err(AttestError::Provider(format!(
                "configfs-tsm at {} is served by `{provider}`, not `{}`: this is not a {} guest",
                self.root.display(),
                self.kind.kernel_provider(),
                self.name()
            )));
        }
        for _ in 0..TSM_ATTEMPTS {
            let Some(attested) = self.once(&entry.0, report_data)? else {
                continue;
            };
            if self.kind.report_data(&attested.evidence) != Some(&report_data[..]) {
                return Err(AttestError::Provider(format!(
                    "the {} evidence from configfs-tsm does not carry the REPORTDATA written",
                    self.name()
                )));
            }
            return Ok(attested);
        }
        Err(AttestError::Provider(format!(
            "configfs-tsm entry {} was written by someone else during each of {TSM_ATTEMPTS} \
             requests (its generation moved)",
            entry.0.display()
        )))
    }

    fn name(&self) -> &'static str {
        match self.kind {
            TsmKind::Tdx => "tdx",
            TsmKind::SevSnp => "sev-snp",
        }
    }

    fn app_binding(&self) -> Option<[u8; 32]> {
        Some(self.app_binding)
    }
}
