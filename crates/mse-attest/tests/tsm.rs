//! The configfs-tsm provider against an emulated configfs-tsm mounted as a
//! real file system: the provider runs the code it runs in a TDX or SEV-SNP
//! guest, and the emulator keeps the kernel's rules.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use mse_attest::provider::{QuoteProvider, TsmKind, TsmProvider};
use mse_testkit::tee::configfs::{EmulatedTsm, TsmDevice};

/// A device answering in the layout of its kind: a TDX quote carries
/// REPORTDATA at 568 (header 48 + TD report 520), an SEV-SNP report at 0x50.
/// `lie` makes it answer for other data.
struct Device {
    provider: &'static str,
    lie: Arc<AtomicBool>,
}

impl TsmDevice for Device {
    fn provider(&self) -> &'static str {
        self.provider
    }
    fn report(&self, inblob: &[u8; 64], _privlevel: u32) -> Result<(Vec<u8>, Vec<u8>), String> {
        let (len, at) = match self.provider {
            "tdx_guest" => (1024, 568),
            _ => (1184, 0x50),
        };
        let mut out = vec![0xEE; len];
        out[at..at + 64].copy_from_slice(inblob);
        if self.lie.load(Ordering::SeqCst) {
            out[at] ^= 1;
        }
        let aux = if self.provider == "sev_guest" {
            b"certificates".to_vec()
        } else {
            Vec::new()
        };
        Ok((out, aux))
    }
}

fn mount(test: &str, provider: &'static str) -> Option<(EmulatedTsm, Arc<AtomicBool>)> {
    let lie = Arc::new(AtomicBool::new(false));
    let device = Device {
        provider,
        lie: lie.clone(),
    };
    EmulatedTsm::for_test(test, device).map(|tsm| (tsm, lie))
}

const FINGERPRINT: [u8; 32] = [0xF1; 32];

#[test]
fn a_tdx_provider_writes_inblob_reads_outblob_and_leaves_no_entry() {
    let Some((tsm, _)) = mount(
        "a_tdx_provider_writes_inblob_reads_outblob_and_leaves_no_entry",
        "tdx_guest",
    ) else {
        return;
    };
    let provider = TsmProvider::new(tsm.root(), TsmKind::Tdx, FINGERPRINT);
    assert_eq!(provider.unavailable(), None);
    assert_eq!(provider.app_binding(), Some(FINGERPRINT));
    let data = [0x42; 64];
    let attested = provider.attest(&data).unwrap();
    assert_eq!(&attested.evidence[568..632], &data[..]);
    assert_eq!(attested.aux, None);
    let served = tsm.served();
    assert_eq!(served.len(), 1);
    assert_eq!(served[0].report_data, data);
    // FUSE names the asking thread: one of this process's.
    let task = format!("/proc/self/task/{}", served[0].pid);
    assert!(std::path::Path::new(&task).exists(), "{task}");
    // The entry is removed once the report is read.
    let left: Vec<_> = std::fs::read_dir(tsm.root().join("report"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn an_sev_snp_provider_reads_the_certificates_from_auxblob() {
    let Some((tsm, _)) = mount(
        "an_sev_snp_provider_reads_the_certificates_from_auxblob",
        "sev_guest",
    ) else {
        return;
    };
    let provider = TsmProvider::new(tsm.root(), TsmKind::SevSnp, FINGERPRINT);
    let attested = provider.attest(&[7; 64]).unwrap();
    assert_eq!(attested.evidence.len(), 1184);
    assert_eq!(&attested.evidence[0x50..0x90], &[7; 64][..]);
    assert_eq!(attested.aux.as_deref(), Some(&b"certificates"[..]));
}

#[test]
fn a_provider_of_another_kind_or_a_device_that_answers_for_other_data_is_refused() {
    let Some((tsm, lie)) = mount(
        "a_provider_of_another_kind_or_a_device_that_answers_for_other_data_is_refused",
        "sev_guest",
    ) else {
        return;
    };
    let tdx = TsmProvider::new(tsm.root(), TsmKind::Tdx, FINGERPRINT);
    let error = tdx.quote(&[1; 64]).unwrap_err().to_string();
    assert!(
        error.contains("is served by `sev_guest`, not `tdx_guest`"),
        "{error}"
    );
    lie.store(true, Ordering::SeqCst);
    let snp = TsmProvider::new(tsm.root(), TsmKind::SevSnp, FINGERPRINT);
    let error = snp.quote(&[1; 64]).unwrap_err().to_string();
    assert!(
        error.contains("does not carry the REPORTDATA written"),
        "{error}"
    );
}

#[test]
fn the_emulator_keeps_the_kernels_rules() {
    let Some((tsm, _)) = mount("the_emulator_keeps_the_kernels_rules", "tdx_guest") else {
        return;
    };
    let entry = tsm.root().join("report").join("manual");
    std::fs::create_dir(&entry).unwrap();
    let generation = || std::fs::read_to_string(entry.join("generation")).unwrap();
    assert_eq!(generation(), "0\n");
    assert_eq!(
        std::fs::read_to_string(entry.join("provider")).unwrap(),
        "tdx_guest\n"
    );
    // More than 64 bytes is refused and moves nothing.
    assert!(std::fs::write(entry.join("inblob"), [0u8; 65]).is_err());
    assert_eq!(generation(), "0\n");
    std::fs::write(entry.join("inblob"), [9u8; 64]).unwrap();
    assert_eq!(generation(), "1\n");
    // No auxblob or privlevel for TDX; outblob is not writable.
    assert!(!entry.join("auxblob").exists());
    assert!(std::fs::write(entry.join("outblob"), b"x").is_err());
    let out = std::fs::read(entry.join("outblob")).unwrap();
    assert_eq!(&out[568..632], &[9u8; 64][..]);
    // Reading again without a new write gives the same report.
    assert_eq!(std::fs::read(entry.join("outblob")).unwrap(), out);
    assert_eq!(tsm.served().len(), 1);
    std::fs::remove_dir(&entry).unwrap();
    assert!(!entry.exists());
}

#[test]
fn configfs_tsm_missing_is_said_in_words() {
    let dir = tempfile::tempdir().unwrap();
    let provider = TsmProvider::new(dir.path(), TsmKind::Tdx, FINGERPRINT);
    let why = provider.unavailable().unwrap();
    assert!(why.starts_with("no configfs-tsm at "), "{why}");
    let error = provider.quote(&[0; 64]).unwrap_err().to_string();
    assert!(error.contains("TDX or SEV-SNP guest"), "{error}");
}
