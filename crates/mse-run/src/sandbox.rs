//! The app's sandbox (SPEC section 8): in the simulation TEE nothing but the
//! kernel keeps an app from the platform and from other tenants, so every
//! process the node starts for the app (its server, `pip` for its
//! `requirements.txt`) runs confined:
//!
//! - **Landlock**: it reads only its runtime environment, its own code and
//!   TLS files and a short list of system files, and writes only its own home
//!   and temporary folder. It binds only its own TCP port, cannot signal or
//!   trace a process outside its sandbox, and cannot reach abstract UNIX
//!   sockets outside it.
//! - **An identity of its own**: where the node runs as root, the app runs
//!   as an unprivileged uid derived from its uuid, or, where its runtime is
//!   not reachable by such a uid, as uid 0 stripped of every capability.
//! - `PR_SET_NO_NEW_PRIVS`, and the app dies with its runtime
//!   (`PR_SET_PDEATHSIG`).
//!
//! The decision of what to do from what the kernel offers is pure
//! ([`decide`]); applying it is [`Confinement::apply`].

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use landlock::{
    Access, AccessFs, AccessNet, CompatLevel, Compatible, NetPort, PathBeneath, PathFd, Ruleset,
    RulesetAttr, RulesetCreated, RulesetCreatedAttr, RulesetStatus, Scope, ABI,
};

/// The Landlock ABI this sandbox is written and tested against.
const TARGET_ABI: ABI = ABI::V7;

/// First uid of the range apps run as when the node runs as root.
pub const APP_UID_BASE: u32 = 0x6000_0000;
/// Size of that range (2^28): two live apps share a uid with probability
/// about n²/2^29 for n live apps on one host.
pub const APP_UID_SPAN: u32 = 1 << 28;

/// What the operator asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Confine every app; refuse to start an app that cannot be confined.
    Required,
    /// The operator's explicit opt-out: confine where the kernel allows,
    /// run unconfined (and say so) where it does not.
    BestEffort,
}

impl Mode {
    /// The command-line spelling (`--sandbox MODE`).
    pub fn as_arg(self) -> &'static str {
        match self {
            Mode::Required => "required",
            Mode::BestEffort => "best-effort",
        }
    }
}

/// What the kernel and the node's identity offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offered {
    /// The kernel's Landlock ABI (0: none).
    pub landlock_abi: i32,
    /// Whether the node runs as root.
    pub root: bool,
    /// Whether an unprivileged uid can reach every file the app needs.
    pub reachable_unprivileged: bool,
}

/// Who the app runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity {
    /// The node's own (unprivileged) user.
    Inherited,
    /// An unprivileged uid and gid of its own.
    Uid(u32),
    /// uid 0 with no capability at all (its runtime is only reachable by
    /// root).
    RootWithoutCapabilities,
}

/// What the node does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Confine the app.
    Confine {
        /// Landlock ABI in force.
        abi: i32,
        /// Who the app runs as.
        identity: Identity,
    },
    /// Run it unconfined (only in [`Mode::BestEffort`]); the reason is shown
    /// to its owner.
    Unconfined(String),
    /// Refuse to start it.
    Refuse(String),
}

/// Decides how to run an app from what is offered (pure).
pub fn decide(mode: Mode, offered: Offered, app_uid: u32) -> Decision {
    if offered.landlock_abi < 1 {
        let why = "this kernel does not offer Landlock (Linux 5.13 or later with `landlock` \
                   in the lsm= boot parameter)";
        return match mode {
            Mode::Required => Decision::Refuse(format!(
                "cannot sandbox the app: {why}; the operator can run apps unsandboxed with \
                 --sandbox best-effort"
            )),
            Mode::BestEffort => Decision::Unconfined(format!("UNSANDBOXED: {why}")),
        };
    }
    let identity = match (offered.root, offered.reachable_unprivileged) {
        (false, _) => Identity::Inherited,
        (true, true) => Identity::Uid(app_uid),
        (true, false) => Identity::RootWithoutCapabilities,
    };
    Decision::Confine {
        abi: offered.landlock_abi,
        identity,
    }
}

/// The uid an app runs as when the node runs as root (from its uuid).
pub fn app_uid(uuid: &str) -> u32 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(uuid.as_bytes());
    let n = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
    APP_UID_BASE + n % APP_UID_SPAN
}

/// The kernel's Landlock ABI version (0 when it offers none).
pub fn landlock_abi() -> i32 {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: the documented way to ask for the ABI: no ruleset, size 0.
    let abi = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    i32::try_from(abi).unwrap_or(0).max(0)
}

/// Whether this process runs as root.
pub fn running_as_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Whether a user that owns none of the files can read `path` (a file or a
/// folder) and traverse every folder above it.
pub fn reachable_by_others(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let Ok(path) = std::fs::canonicalize(path) else {
        return false;
    };
    let Ok(meta) = std::fs::metadata(&path) else {
        return false;
    };
    let mode = meta.permissions().mode();
    let own = if meta.is_dir() { 0o005 } else { 0o004 };
    mode & own == own && path.parent().is_none_or(traversable_by_others)
}

/// Whether a user that owns none of the folders can pass through `dir` and
/// every folder above it.
pub fn traversable_by_others(dir: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let Ok(dir) = std::fs::canonicalize(dir) else {
        return false;
    };
    dir.ancestors()
        .all(|d| std::fs::metadata(d).is_ok_and(|m| m.permissions().mode() & 0o001 != 0))
}

/// What a confined process may touch.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Read and execute, recursively.
    pub read: Vec<PathBuf>,
    /// Read, write, create and remove, recursively.
    pub write: Vec<PathBuf>,
    /// TCP ports it may bind (none: it may bind no port).
    pub bind_tcp: Vec<u16>,
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
}

/// A confinement ready to apply to one command.
#[derive(Debug)]
pub struct Confinement {
    /// `None` when the app runs unconfined (the operator's opt-out).
    ruleset: Option<RulesetCreated>,
    identity: Identity,
}

impl Confinement {
    /// No confinement but dying with this process: the operator's opt-out,
    /// where the kernel offers no sandbox.
    pub fn unconfined() -> Self {
        Confinement {
            ruleset: None,
            identity: Identity::Inherited,
        }
    }

    /// Builds the Landlock ruleset of `policy` for a process running as
    /// `identity` (before the fork: this allocates and opens files).
    pub fn new(policy: &Policy, identity: Identity) -> Result<Self, SandboxError> {
        let fs_all = AccessFs::from_all(TARGET_ABI);
        let read = AccessFs::from_read(TARGET_ABI);
        let mut ruleset = Ruleset::default()
            .set_compatibility(CompatLevel::BestEffort)
            .handle_access(fs_all)?
            .handle_access(AccessNet::BindTcp)?
            .scope(Scope::AbstractUnixSocket | Scope::Signal)?
            .create()?;
        let rule = |path: &Path, access| -> Result<PathBeneath<PathFd>, SandboxError> {
            let fd = PathFd::new(path).map_err(|e| SandboxError::Path(path.to_path_buf(), e))?;
            Ok(PathBeneath::new(fd, access))
        };
        for path in &policy.read {
            ruleset = ruleset.add_rule(rule(path, read)?)?;
        }
        for path in &policy.write {
            ruleset = ruleset.add_rule(rule(path, fs_all)?)?;
        }
        // /dev/null is written to (and opened with O_TRUNC) as often as read.
        if Path::new("/dev/null").exists() {
            ruleset = ruleset.add_rule(rule(
                Path::new("/dev/null"),
                AccessFs::ReadFile | AccessFs::WriteFile | AccessFs::Truncate,
            )?)?;
        }
        for port in &policy.bind_tcp {
            ruleset = ruleset.add_rule(NetPort::new(*port, AccessNet::BindTcp))?;
        }
        Ok(Confinement {
            ruleset: Some(ruleset),
            identity,
        })
    }

    /// Makes `command` start confined: its identity is set, and just before
    /// it executes it drops every capability (uid 0), asks to die with this
    /// process, and restricts itself with the ruleset.
    pub fn apply(mut self, command: &mut Command) {
        match self.identity {
            Identity::Uid(uid) => {
                // The standard library drops supplementary groups when root
                // changes uid.
                command.uid(uid).gid(uid);
            }
            Identity::Inherited | Identity::RootWithoutCapabilities => {}
        }
        let drop_capabilities = self.identity == Identity::RootWithoutCapabilities;
        let mut ruleset = self.ruleset.take();
        let confined = ruleset.is_some();
        // SAFETY: between fork and exec the closure only makes system calls
        // (prctl, capset, landlock_restrict_self, close): no allocation and
        // no lock; the ruleset was built before the fork.
        unsafe {
            command.pre_exec(move || {
                if drop_capabilities {
                    drop_all_capabilities()?;
                }
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if !confined {
                    return Ok(());
                }
                let ruleset = ruleset
                    .take()
                    .ok_or_else(|| std::io::Error::other("the sandbox was already used"))?;
                match ruleset.restrict_self() {
                    Ok(status) if status.ruleset != RulesetStatus::NotEnforced => Ok(()),
                    Ok(_) => Err(std::io::Error::other(
                        "the Landlock sandbox is not enforced",
                    )),
                    Err(_) => Err(std::io::Error::other("cannot enter the Landlock sandbox")),
                }
            });
        }
    }
}

/// Drops every capability of a root process for good: locked secure bits so
/// that uid 0 grants nothing at exec, an empty bounding set, no ambient
/// capabilities, and empty effective, permitted and inheritable sets.
/// Async-signal-safe (system calls only).
fn drop_all_capabilities() -> std::io::Result<()> {
    const SECBIT_NOROOT: libc::c_ulong = 1 << 0;
    const SECBIT_NOROOT_LOCKED: libc::c_ulong = 1 << 1;
    const SECBIT_NO_SETUID_FIXUP: libc::c_ulong = 1 << 2;
    const SECBIT_NO_SETUID_FIXUP_LOCKED: libc::c_ulong = 1 << 3;
    const SECBIT_KEEP_CAPS_LOCKED: libc::c_ulong = 1 << 5;
    const SECBIT_NO_CAP_AMBIENT_RAISE: libc::c_ulong = 1 << 6;
    const SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED: libc::c_ulong = 1 << 7;
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    let last_os_error = std::io::Error::last_os_error;
    // SAFETY: plain system calls on this process with valid arguments.
    unsafe {
        let bits = SECBIT_NOROOT
            | SECBIT_NOROOT_LOCKED
            | SECBIT_NO_SETUID_FIXUP
            | SECBIT_NO_SETUID_FIXUP_LOCKED
            | SECBIT_KEEP_CAPS_LOCKED
            | SECBIT_NO_CAP_AMBIENT_RAISE
            | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED;
        if libc::prctl(libc::PR_SET_SECUREBITS, bits, 0, 0, 0) != 0 {
            return Err(last_os_error());
        }
        for cap in 0..64 {
            if libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 {
                // EINVAL past the kernel's last capability.
                break;
            }
        }
        if libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        ) != 0
        {
            return Err(last_os_error());
        }
        let header = Header {
            version: LINUX_CAPABILITY_VERSION_3,
            pid: 0,
        };
        let data = [
            Data {
                effective: 0,
                permitted: 0,
                inheritable: 0,
            },
            Data {
                effective: 0,
                permitted: 0,
                inheritable: 0,
            },
        ];
        if libc::syscall(libc::SYS_capset, &header, data.as_ptr()) != 0 {
            return Err(last_os_error());
        }
    }
    Ok(())
}

/// Makes this process undumpable: no process of the same user can trace
/// it or read its memory (the code key and the app's secrets pass through
/// it).
pub fn make_undumpable() {
    // SAFETY: a prctl on this process.
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
}

/// One line telling the app's owner how the app is confined.
pub fn describe(decision: &Decision) -> String {
    match decision {
        Decision::Confine { abi, identity } => {
            let who = match identity {
                Identity::Inherited => "the node's user".to_string(),
                Identity::Uid(uid) => format!("uid {uid}"),
                Identity::RootWithoutCapabilities => {
                    "uid 0 without capabilities (its runtime is only reachable by root)".to_string()
                }
            };
            format!("landlock ABI {abi}, {who}, no new privileges")
        }
        Decision::Unconfined(reason) | Decision::Refuse(reason) => reason.clone(),
    }
}

/// Gives `path` and everything under it to `uid` (files the app must own:
/// its home, temporary folder, code and TLS files).
pub fn chown_tree(path: &Path, uid: u32) -> std::io::Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(uid))?;
    if std::fs::symlink_metadata(path)?.is_dir() {
        for entry in std::fs::read_dir(path)? {
            chown_tree(&entry?.path(), uid)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offered(abi: i32, root: bool, reachable: bool) -> Offered {
        Offered {
            landlock_abi: abi,
            root,
            reachable_unprivileged: reachable,
        }
    }

    #[test]
    fn without_landlock_the_app_is_refused_unless_the_operator_opted_out() {
        match decide(Mode::Required, offered(0, true, true), 7) {
            Decision::Refuse(why) => assert!(why.contains("--sandbox best-effort"), "{why}"),
            other => panic!("{other:?}"),
        }
        match decide(Mode::BestEffort, offered(0, true, true), 7) {
            Decision::Unconfined(why) => assert!(why.starts_with("UNSANDBOXED"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn root_nodes_give_apps_their_own_uid_or_strip_root() {
        assert_eq!(
            decide(Mode::Required, offered(7, true, true), 42),
            Decision::Confine {
                abi: 7,
                identity: Identity::Uid(42)
            }
        );
        assert_eq!(
            decide(Mode::Required, offered(7, true, false), 42),
            Decision::Confine {
                abi: 7,
                identity: Identity::RootWithoutCapabilities
            }
        );
        assert_eq!(
            decide(Mode::BestEffort, offered(3, false, false), 42),
            Decision::Confine {
                abi: 3,
                identity: Identity::Inherited
            }
        );
    }

    #[test]
    fn app_uids_are_unprivileged_and_stable() {
        let a = app_uid("0b9c6a2e-1f4d-4e8a-9c1b-2d3e4f5a6b7c");
        assert_eq!(a, app_uid("0b9c6a2e-1f4d-4e8a-9c1b-2d3e4f5a6b7c"));
        assert_ne!(a, app_uid("0b9c6a2e-1f4d-4e8a-9c1b-2d3e4f5a6b7d"));
        assert!((APP_UID_BASE..APP_UID_BASE + APP_UID_SPAN).contains(&a));
    }
}
