//! The app's sandbox (SPEC section 8): in the simulation TEE nothing but the
//! kernel keeps an app from the platform and from other tenants, so every
//! process the node starts for the app (its server, the installer of its
//! `requirements.txt`) runs confined:
//!
//! - **An identity of its own**: where the node runs as root, the app runs
//!   as an unprivileged uid derived from its uuid (never uid 0), and owns
//!   nothing another tenant uses; an installer runs as a uid of its own too.
//! - **A mount namespace of its own**: a private `/tmp` (its own temporary
//!   folder), and the folders it must read shown to it even where a parent
//!   folder is closed to other users (a runtime under `/root`): the closed
//!   folder is covered by an empty read-only tmpfs in which only what the
//!   app may use is mounted again ([`Exposure`]).
//! - **Landlock**: it reads only its runtime environment, its own code and
//!   TLS files and a short list of system files, and writes only its own home
//!   and temporary folder. It binds only its own TCP port, cannot signal or
//!   trace a process outside its sandbox, and cannot reach abstract UNIX
//!   sockets outside it.
//! - **seccomp**: it cannot create a UNIX socket (so it reaches no path
//!   socket: a database's peer authentication, D-Bus, an init system or a
//!   container engine), nor a socket-diagnostics netlink socket (the list of
//!   the host's connections), cannot change a file's owner or extended
//!   attributes, and cannot set the set-user-ID or set-group-ID bit.
//! - `PR_SET_NO_NEW_PRIVS`, a cap on its open files, and the app dies with
//!   its runtime (`PR_SET_PDEATHSIG`).
//!
//! The decision of what to do from what the kernel offers is pure
//! ([`decide`]); applying it is [`Confinement::apply`].
//!
//! Its files: the decision and the app's identity (`decide`), the mount
//! namespace a process with a uid of its own sees (`exposure`), the seccomp
//! filter (`seccomp`), the confinement applied to one command
//! (`confinement`), and what the node's own process offers and does for its
//! app (`host`).

mod confinement;
mod decide;
mod exposure;
mod host;
mod seccomp;

use std::path::{Path, PathBuf};

pub use confinement::Confinement;
pub use decide::{
    app_uid, decide, describe, installer_uid, Decision, Identity, Mode, Offered, APP_UID_BASE,
    APP_UID_SPAN, INSTALLER_UID_BASE, INSTALLER_UID_SPAN,
};
pub use exposure::Exposure;
pub use host::{
    chown_tree, enter_own_mount_namespace, landlock_abi, make_undumpable, mount_private_tmpfs,
    running_as_root,
};
pub use seccomp::seccomp_filter;

/// What a confined process may touch.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Read and execute, recursively.
    pub read: Vec<PathBuf>,
    /// Read, write, create and remove, recursively.
    pub write: Vec<PathBuf>,
    /// TCP ports it may bind (none: it may bind no port).
    pub bind_tcp: Vec<u16>,
    /// The folder its `/tmp` is (a private `/tmp`; with a uid of its own).
    pub private_tmp: Option<PathBuf>,
    /// The most files it may hold open (`RLIMIT_NOFILE`).
    pub open_files: Option<u64>,
}

/// System files every Python process needs to read (those that exist).
/// `/etc` is listed file by file: it also holds what no app may read.
pub fn system_read_paths() -> Vec<PathBuf> {
    const ALWAYS: &[&str] = &[
        "/usr",
        "/lib",
        "/lib64",
        "/lib32",
        "/bin",
        "/sbin",
        "/etc/ld.so.cache",
        "/etc/ld.so.conf",
        "/etc/ld.so.conf.d",
        "/etc/localtime",
        "/etc/timezone",
        "/etc/resolv.conf",
        "/etc/hosts",
        "/etc/host.conf",
        "/etc/gai.conf",
        "/etc/nsswitch.conf",
        "/etc/services",
        "/etc/protocols",
        "/etc/passwd",
        "/etc/group",
        "/etc/mime.types",
        "/etc/os-release",
        "/etc/debian_version",
        "/etc/lsb-release",
        "/etc/ssl",
        "/etc/ca-certificates",
        "/etc/ca-certificates.conf",
        "/etc/pip.conf",
        "/etc/xdg/pip",
        "/dev/urandom",
        "/dev/random",
        "/dev/zero",
        // How many processors and how much memory there is (sizing thread
        // and process pools): global facts, nothing of other processes.
        "/sys/devices/system/cpu",
        "/proc/cpuinfo",
        "/proc/meminfo",
    ];
    let mut paths: Vec<PathBuf> = ALWAYS.iter().map(PathBuf::from).collect();
    // Debian's Python reads its site customisation from /etc/python3.X.
    if let Ok(entries) = std::fs::read_dir("/etc") {
        paths.extend(
            entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
                .map(|e| e.path()),
        );
    }
    paths.retain(|p| p.exists());
    paths
}

/// The folders of a Python environment: the virtual environment and the
/// installation it was made from (`home` in its `pyvenv.cfg`).
pub fn python_paths(python: &Path) -> Vec<PathBuf> {
    let mut paths = Vec::new();
    let Some(venv) = python.parent().and_then(Path::parent) else {
        return vec![python.to_path_buf()];
    };
    paths.push(venv.to_path_buf());
    if let Ok(cfg) = std::fs::read_to_string(venv.join("pyvenv.cfg")) {
        for line in cfg.lines() {
            if let Some((key, value)) = line.split_once('=') {
                if key.trim() == "home" {
                    let home = PathBuf::from(value.trim());
                    paths.push(home.parent().map(Path::to_path_buf).unwrap_or(home));
                }
            }
        }
    }
    if let Ok(real) = std::fs::canonicalize(python) {
        if let Some(prefix) = real.parent().and_then(Path::parent) {
            paths.push(prefix.to_path_buf());
        }
    }
    paths.sort();
    paths.dedup();
    paths
}

/// Errors while building a confinement.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SandboxError {
    /// A Landlock rule could not be made.
    #[error("cannot build the Landlock sandbox: {0}")]
    Landlock(#[from] landlock::RulesetError),
    /// A path of the policy cannot be opened.
    #[error("cannot open {0} for the sandbox: {1}")]
    Path(PathBuf, #[source] landlock::PathFdError),
    /// A folder to show in the app's mount namespace cannot be opened.
    #[error("cannot open {0} for the app's mount namespace: {1}")]
    Expose(PathBuf, #[source] std::io::Error),
    /// The seccomp filter could not be built.
    #[error("cannot build the seccomp filter: {0}")]
    Seccomp(String),
}
