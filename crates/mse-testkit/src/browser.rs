//! A real browser for tests: headless Chromium (Debian's), driven by
//! Playwright for Python from the shared test environment, run once per page.
//!
//! A [`Browser`] owns a temporary home whose NSS database (`~/.pki/nssdb`,
//! where Chromium on Linux reads locally trusted roots) holds the one root
//! the test chose, or none. [`Browser::open`] loads one URL and returns the
//! page's DOM after load, a 1280×800 screenshot, and the network error the
//! browser reported for the navigation, if any.
//!
//! The verdict is the browser's own: the failure Playwright reports for the
//! main navigation request (`net::ERR_CERT_AUTHORITY_INVALID`, or another
//! `net::ERR_CERT_*` code), never the text of an error page, which changes
//! from one Chromium release to the next.

use std::fs::{self, File};
use std::io::BufReader;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{bail, Context as _};

use crate::wait;

/// Environment variable naming the Chromium program (`chromium` otherwise).
pub const CHROMIUM_ENV: &str = "MSE_TEST_CHROMIUM";

/// The programs this module runs, for a test's check that they are installed.
pub const PROGRAMS: [&str; 2] = ["chromium", "certutil"];

/// The Playwright script that loads one page and reports the browser's verdict.
const SCRIPT: &str = include_str!("browser.py");

/// How long one page may take, Chromium's start included.
const PAGE_TIMEOUT: Duration = Duration::from_secs(60);

/// A headless Chromium with its own home and trust store.
pub struct Browser {
    home: tempfile::TempDir,
    runs: AtomicU32,
}

/// A page as Chromium loaded it.
#[derive(Debug)]
pub struct Page {
    /// The DOM after load; empty when the load failed.
    pub dom: String,
    /// The screenshot (PNG), inside the [`Browser`]'s folder: it lasts as
    /// long as the browser. `None` when the load failed. [`Page::save_screenshot`] copies it out.
    pub screenshot: Option<PathBuf>,
    /// The network error that stopped the load, such as
    /// `net::ERR_CERT_AUTHORITY_INVALID`, as the browser reported it.
    pub load_error: Option<String>,
    /// The HTTP status of the loaded page (`None` when the load failed).
    pub status: Option<u16>,
    /// What the browser and its driver wrote to their standard error, for
    /// a failing test's message.
    pub log: String,
}

impl Browser {
    /// A browser that trusts `trust_root_pem` (a PEM certificate) as a
    /// root, or no locally added root at all.
    pub fn new(trust_root_pem: Option<&str>) -> anyhow::Result<Browser> {
        let home = tempfile::Builder::new()
            .prefix("mse-browser-")
            .tempdir()
            .context("cannot create the browser's home")?;
        let nssdb = home.path().join(".pki/nssdb");
        fs::create_dir_all(&nssdb).with_context(|| format!("cannot create {}", nssdb.display()))?;
        let db = format!("sql:{}", nssdb.display());
        certutil(&["-d", &db, "-N", "--empty-password"])?;
        if let Some(pem) = trust_root_pem {
            let root = home.path().join("trusted-root.pem");
            fs::write(&root, pem).with_context(|| format!("cannot write {}", root.display()))?;
            let root = root.to_string_lossy();
            certutil(&["-d", &db, "-A", "-t", "C,,", "-n", "test-root", "-i", &root])?;
        }
        Ok(Browser {
            home,
            runs: AtomicU32::new(0),
        })
    }

    /// Loads `url` and returns the page once loaded (or failed).
    ///
    /// `resolve` sends the host name `name` to `addr` (Chromium's
    /// `--host-resolver-rules`); without it Chromium resolves names itself,
    /// `*.localhost` to loopback. Each call starts a new Chromium with a
    /// fresh profile, so pages share no cookies or cache; it is killed when
    /// it takes longer than 60 s.
    pub fn open(&self, url: &str, resolve: Option<(&str, SocketAddr)>) -> anyhow::Result<Page> {
        let run = self.runs.fetch_add(1, Ordering::Relaxed);
        let dir = self.home.path().join(format!("run-{run}"));
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let script = dir.join("browser.py");
        fs::write(&script, SCRIPT).with_context(|| format!("cannot write {}", script.display()))?;
        let out_path = dir.join("result.json");
        let log_path = dir.join("browser.log");

        let mut command = Command::new(crate::python());
        command.arg(&script).arg(url).arg(&dir);
        if let Some((name, addr)) = resolve {
            command.arg(format!("MAP {name} {addr}"));
        }
        command
            .env("HOME", self.home.path())
            .stdin(Stdio::null())
            .stdout(File::create(&out_path)?)
            .stderr(File::create(&log_path)?)
            .process_group(0);
        let mut child = command
            .spawn()
            .context("cannot run the browser script with the test Python environment")?;
        let status = wait::within(PAGE_TIMEOUT, || child.try_wait().transpose()).transpose()?;
        // Chromium and Playwright's driver share the script's process
        // group; none may outlive it.
        kill_group(child.id());
        let _ = child.wait();

        let log = fs::read_to_string(&log_path).unwrap_or_default();
        let Some(status) = status else {
            bail!("Chromium did not finish loading {url} within {PAGE_TIMEOUT:?}:\n{log}");
        };
        let out = fs::read_to_string(&out_path).unwrap_or_default();
        if !status.success() {
            bail!(
                "the browser failed on {url} ({status}; on Debian: apt-get install chromium):\n{log}{out}"
            );
        }
        let report: serde_json::Value = serde_json::from_str(&out)
            .with_context(|| format!("the browser script printed no report:\n{out}\n{log}"))?;
        let screenshot = dir.join("screenshot.png");
        Ok(Page {
            dom: report["dom"].as_str().unwrap_or_default().to_string(),
            screenshot: (report["screenshot"] == true && screenshot.exists()).then_some(screenshot),
            load_error: report["load_error"].as_str().map(str::to_string),
            status: report["status"]
                .as_u64()
                .and_then(|s| u16::try_from(s).ok()),
            log,
        })
    }
}

impl Page {
    /// The certificate error that stopped the load (`net::ERR_CERT_…`), as
    /// the browser reported it.
    pub fn certificate_error(&self) -> Option<String> {
        self.load_error
            .as_ref()
            .filter(|e| e.starts_with("net::ERR_CERT_"))
            .cloned()
    }

    /// Copies the screenshot to `dest` (its folder is created), for a test's
    /// artifacts.
    pub fn save_screenshot(&self, dest: &Path) -> anyhow::Result<()> {
        let Some(screenshot) = &self.screenshot else {
            bail!("Chromium took no screenshot:\n{}", self.log);
        };
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        fs::copy(screenshot, dest).with_context(|| format!("cannot write {}", dest.display()))?;
        Ok(())
    }

    /// Whether the screenshot shows nothing: every pixel the same colour.
    pub fn screenshot_is_blank(&self) -> anyhow::Result<bool> {
        let Some(screenshot) = &self.screenshot else {
            bail!("Chromium took no screenshot:\n{}", self.log);
        };
        png_is_blank(screenshot)
    }
}

/// Whether the PNG image at `path` is a single colour.
pub fn png_is_blank(path: &Path) -> anyhow::Result<bool> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut decoder = png::Decoder::new(BufReader::new(file));
    // Palette and sub-byte images become 8-bit samples, compared bytewise.
    decoder.set_transformations(png::Transformations::EXPAND);
    let mut reader = decoder
        .read_info()
        .with_context(|| format!("{} is not a PNG image", path.display()))?;
    let size = reader
        .output_buffer_size()
        .with_context(|| format!("{} is too large", path.display()))?;
    let mut pixels = vec![0; size];
    let frame = reader
        .next_frame(&mut pixels)
        .with_context(|| format!("cannot decode {}", path.display()))?;
    let pixel = frame.color_type.samples() * (frame.bit_depth as usize).div_ceil(8);
    let row_bytes = pixel * frame.width as usize;
    let pixels = &pixels[..frame.buffer_size()];
    let first = &pixels[..pixel.min(pixels.len())];
    Ok(pixels
        .chunks(frame.line_size)
        .all(|row| row[..row_bytes].chunks(pixel).all(|p| p == first)))
}

fn certutil(args: &[&str]) -> anyhow::Result<()> {
    let output = Command::new("certutil")
        .args(args)
        .output()
        .context("cannot run certutil (on Debian: apt-get install libnss3-tools)")?;
    if !output.status.success() {
        bail!(
            "certutil {} failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

fn kill_group(pgid: u32) {
    if let Ok(pgid) = libc::pid_t::try_from(pgid) {
        // SAFETY: kill only sends a signal; the group is the one this
        // module created for the child it spawned.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(error: &str) -> Page {
        Page {
            dom: String::new(),
            screenshot: None,
            load_error: Some(error.to_string()),
            status: None,
            log: String::new(),
        }
    }

    #[test]
    fn a_certificate_load_failure_is_a_certificate_error() {
        let page = failed("net::ERR_CERT_AUTHORITY_INVALID");
        assert_eq!(
            page.certificate_error().as_deref(),
            Some("net::ERR_CERT_AUTHORITY_INVALID")
        );
    }

    fn write_png(path: &Path, pixels: &[u8]) {
        let mut encoder = png::Encoder::new(File::create(path).unwrap(), 2, 2);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        encoder
            .write_header()
            .unwrap()
            .write_image_data(pixels)
            .unwrap();
    }

    #[test]
    fn a_single_colour_image_is_blank_and_one_other_pixel_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let white = dir.path().join("white.png");
        write_png(&white, &[255; 12]);
        assert!(png_is_blank(&white).unwrap());
        let dot = dir.path().join("dot.png");
        let mut pixels = [255; 12];
        pixels[10] = 0;
        write_png(&dot, &pixels);
        assert!(!png_is_blank(&dot).unwrap());
    }

    #[test]
    fn another_load_failure_is_no_certificate_error() {
        let page = failed("net::ERR_NAME_NOT_RESOLVED");
        assert_eq!(page.certificate_error(), None);
    }
}
