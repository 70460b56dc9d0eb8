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

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt as _;
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
/// First uid of the range installers of `requirements.txt` run as: one per
/// requirements folder, outside the apps' range.
pub const INSTALLER_UID_BASE: u32 = APP_UID_BASE + APP_UID_SPAN;
/// Size of the installers' range.
pub const INSTALLER_UID_SPAN: u32 = 1 << 24;

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
    /// Whether the node runs as root (then it can give the app a uid and a
    /// mount namespace of its own).
    pub root: bool,
}

/// Who the app runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity {
    /// The node's own (unprivileged) user.
    Inherited,
    /// An unprivileged uid and gid of its own, in a mount namespace of its
    /// own.
    Uid(u32),
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
    let missing = if offered.landlock_abi < 1 {
        Some(
            "this kernel does not offer Landlock (Linux 5.13 or later with `landlock` in the \
             lsm= boot parameter)",
        )
    } else if !offered.root {
        Some(
            "the node does not run as root, so it cannot give the app a uid, a private /tmp \
             and a disk limit of its own (run mse-server as root)",
        )
    } else {
        None
    };
    match (missing, mode) {
        (None, _) => Decision::Confine {
            abi: offered.landlock_abi,
            identity: Identity::Uid(app_uid),
        },
        (Some(why), Mode::Required) => Decision::Refuse(format!(
            "cannot sandbox the app: {why}; the operator can run apps without it with \
             --sandbox best-effort"
        )),
        // Opted out: Landlock and seccomp where the kernel has them, as the
        // node's own user.
        (Some(_), Mode::BestEffort) if offered.landlock_abi >= 1 => Decision::Confine {
            abi: offered.landlock_abi,
            identity: Identity::Inherited,
        },
        (Some(why), Mode::BestEffort) => Decision::Unconfined(format!("UNSANDBOXED: {why}")),
    }
}

/// A uid in `[base, base + span)` derived from `name`.
fn derived_uid(name: &str, base: u32, span: u32) -> u32 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(name.as_bytes());
    let n = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
    base + n % span
}

/// The uid an app runs as when the node runs as root (from its uuid).
pub fn app_uid(uuid: &str) -> u32 {
    derived_uid(uuid, APP_UID_BASE, APP_UID_SPAN)
}

/// The uid the installer of one requirements folder runs as (from its
/// path): no app's, and another folder's installer has another.
pub fn installer_uid(folder: &Path) -> u32 {
    derived_uid(
        &folder.to_string_lossy(),
        INSTALLER_UID_BASE,
        INSTALLER_UID_SPAN,
    )
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

/// The mount namespace of a process with a uid of its own: what it sees of
/// the file system beyond what the host shows every user.
///
/// A folder that other users cannot pass through (`/root`, a data folder
/// of mode 0700) but that holds something the process must use is covered
/// by an empty read-only tmpfs; inside it, only the paths of the policy are
/// mounted again (bind mounts of the very same files, read-only where the
/// policy only reads). `/tmp` becomes the process's own temporary folder.
/// Built before the fork (it opens files and allocates); applied in the
/// child with system calls only.
#[derive(Debug, Default)]
pub struct Exposure {
    /// Folders covered: by an empty tmpfs (`None`), or by the process's own
    /// temporary folder (`/tmp`: the index of its source in `sources`).
    covers: Vec<(CString, Option<usize>)>,
    /// Mount points to create inside those covers, parents first (`true`:
    /// a folder; `false`: an empty file).
    points: Vec<(CString, bool)>,
    /// Bind mounts: the index of the source in `sources`, the target, and
    /// whether it is read-only.
    binds: Vec<(usize, CString, bool)>,
    /// The paths mounted again, each cloned (`open_tree`) in the new
    /// namespace before a cover hides it.
    sources: Vec<CString>,
    /// The clones' descriptors, while entering (allocated before the fork).
    clones: Vec<libc::c_int>,
}

/// `path` as a C string (paths hold no NUL byte).
fn c_path(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).unwrap_or_default()
}

/// Whether users other than its owner can pass through the folder `dir`.
fn passable_by_others(dir: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(dir).is_ok_and(|m| m.permissions().mode() & 0o001 != 0)
}

impl Exposure {
    /// What a process confined by `policy` must be shown (it reads the
    /// folders' modes).
    pub fn new(policy: &Policy) -> Result<Self, SandboxError> {
        let tmp_root = Path::new("/tmp");
        let private_tmp = policy
            .private_tmp
            .as_ref()
            .map(|tmp| std::fs::canonicalize(tmp).map_err(|e| SandboxError::Expose(tmp.clone(), e)))
            .transpose()?;
        let mut wanted: Vec<(PathBuf, bool)> = Vec::new();
        for (paths, writable) in [(&policy.read, false), (&policy.write, true)] {
            wanted.extend(
                paths
                    .iter()
                    .filter_map(|p| std::fs::canonicalize(p).ok())
                    .map(|p| (p, writable)),
            );
        }
        // Each wanted path under a cover: `/tmp` when the process has its
        // own, else the topmost folder above it that others cannot pass.
        let mut covers: Vec<PathBuf> = Vec::new();
        let mut shown: Vec<(PathBuf, PathBuf, bool)> = Vec::new();
        for (path, writable) in wanted {
            let cover = if private_tmp.is_some() && path.starts_with(tmp_root) {
                Some(tmp_root.to_path_buf())
            } else {
                let mut ancestors: Vec<&Path> = path.ancestors().skip(1).collect();
                ancestors.reverse();
                ancestors
                    .into_iter()
                    .find(|a| !passable_by_others(a))
                    .map(Path::to_path_buf)
            };
            let Some(cover) = cover else { continue };
            if !covers.contains(&cover) {
                covers.push(cover.clone());
            }
            shown.push((cover, path, writable));
        }
        if private_tmp.is_some() && !covers.iter().any(|c| c == tmp_root) {
            covers.push(tmp_root.to_path_buf());
        }
        // Shortest first; nothing already shown through another.
        shown.sort_by(|a, b| a.1.cmp(&b.1));
        let mut exposure = Exposure::default();
        let mut bound: Vec<PathBuf> = Vec::new();
        let mut points: Vec<(PathBuf, bool)> = Vec::new();
        for (cover, path, writable) in shown {
            if bound.iter().any(|b| path.starts_with(b)) || path == cover {
                continue;
            }
            let is_dir = path.is_dir();
            let parts: Vec<_> = path
                .strip_prefix(&cover)
                .unwrap_or(Path::new(""))
                .components()
                .collect();
            let mut point = cover.clone();
            for (i, part) in parts.iter().enumerate() {
                point.push(part);
                if !points.iter().any(|(p, _)| *p == point) {
                    points.push((point.clone(), i + 1 < parts.len() || is_dir));
                }
            }
            exposure.sources.push(c_path(&path));
            exposure
                .binds
                .push((exposure.sources.len() - 1, c_path(&path), !writable));
            bound.push(path);
        }
        for cover in covers {
            let source = match (&private_tmp, cover == tmp_root) {
                (Some(tmp), true) => {
                    exposure.sources.push(c_path(tmp));
                    Some(exposure.sources.len() - 1)
                }
                _ => None,
            };
            exposure.covers.push((c_path(&cover), source));
        }
        exposure.points = points.iter().map(|(p, d)| (c_path(p), *d)).collect();
        exposure.clones = vec![-1; exposure.sources.len()];
        Ok(exposure)
    }

    /// Enters a new mount namespace and mounts what [`Exposure::new`]
    /// planned. In the child, before exec: system calls only.
    fn enter(&mut self) -> std::io::Result<()> {
        const OPEN_TREE_CLONE: libc::c_uint = 1;
        const AT_RECURSIVE: libc::c_uint = 0x8000;
        const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
        let err = std::io::Error::last_os_error;
        let none = std::ptr::null::<libc::c_char>();
        let tmpfs_options = c"mode=0755,size=64k";
        // SAFETY: system calls with NUL-terminated strings and a descriptor
        // table built before the fork.
        unsafe {
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return Err(err());
            }
            // Nothing mounted here reaches the node's namespace.
            if libc::mount(
                none,
                c"/".as_ptr(),
                none,
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) != 0
            {
                return Err(err());
            }
            // Clones of what is mounted again, taken before a cover hides it.
            for (source, clone) in self.sources.iter().zip(self.clones.iter_mut()) {
                let fd = libc::syscall(
                    libc::SYS_open_tree,
                    libc::AT_FDCWD,
                    source.as_ptr(),
                    OPEN_TREE_CLONE | AT_RECURSIVE | libc::O_CLOEXEC as libc::c_uint,
                );
                if fd < 0 {
                    return Err(err());
                }
                *clone = fd as libc::c_int;
            }
            let attach = |fd: libc::c_int, target: &CString| {
                libc::syscall(
                    libc::SYS_move_mount,
                    fd,
                    c"".as_ptr(),
                    libc::AT_FDCWD,
                    target.as_ptr(),
                    MOVE_MOUNT_F_EMPTY_PATH,
                )
            };
            for (cover, source) in &self.covers {
                let done = match source {
                    Some(i) => attach(self.clones[*i], cover) as libc::c_int,
                    None => libc::mount(
                        c"tmpfs".as_ptr(),
                        cover.as_ptr(),
                        c"tmpfs".as_ptr(),
                        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                        tmpfs_options.as_ptr().cast(),
                    ),
                };
                if done != 0 {
                    return Err(err());
                }
            }
            for (point, folder) in &self.points {
                if *folder {
                    if libc::mkdir(point.as_ptr(), 0o755) != 0
                        && std::io::Error::last_os_error().raw_os_error() != Some(libc::EEXIST)
                    {
                        return Err(err());
                    }
                } else {
                    let fd = libc::open(
                        point.as_ptr(),
                        libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
                        0o644,
                    );
                    if fd < 0 {
                        return Err(err());
                    }
                    libc::close(fd);
                }
            }
            for (i, target, read_only) in &self.binds {
                if attach(self.clones[*i], target) != 0 {
                    return Err(err());
                }
                if *read_only
                    && libc::mount(
                        none,
                        target.as_ptr(),
                        none,
                        libc::MS_BIND
                            | libc::MS_REMOUNT
                            | libc::MS_RDONLY
                            | libc::MS_NOSUID
                            | libc::MS_NODEV,
                        std::ptr::null(),
                    ) != 0
                {
                    return Err(err());
                }
            }
            for clone in self.clones.iter_mut() {
                libc::close(*clone);
                *clone = -1;
            }
            // The empty covers are read-only once their mount points exist.
            for (cover, source) in &self.covers {
                if source.is_none()
                    && libc::mount(
                        none,
                        cover.as_ptr(),
                        none,
                        libc::MS_REMOUNT
                            | libc::MS_RDONLY
                            | libc::MS_NOSUID
                            | libc::MS_NODEV
                            | libc::MS_NOEXEC,
                        tmpfs_options.as_ptr().cast(),
                    ) != 0
                {
                    return Err(err());
                }
            }
        }
        Ok(())
    }
}

/// The system calls a confined process is refused (`EPERM`), as a compiled
/// seccomp filter: UNIX and socket-diagnostics sockets, owners, extended
/// attributes, and the set-user-ID and set-group-ID bits.
pub fn seccomp_filter() -> Result<seccompiler::BpfProgram, SandboxError> {
    use seccompiler::{
        SeccompAction, SeccompCmpArgLen as Len, SeccompCmpOp as Op, SeccompCondition as Cond,
        SeccompFilter, SeccompRule, TargetArch,
    };
    let bad = |e: seccompiler::BackendError| SandboxError::Seccomp(e.to_string());
    let when = |conditions: Vec<Cond>| SeccompRule::new(conditions).map_err(bad);
    let arg = |index: u8, op: Op, value: u64| Cond::new(index, Len::Dword, op, value).map_err(bad);
    let set_id_bits = |index: u8| -> Result<Vec<SeccompRule>, SandboxError> {
        Ok(vec![
            when(vec![arg(index, Op::MaskedEq(0o4000), 0o4000)?])?,
            when(vec![arg(index, Op::MaskedEq(0o2000), 0o2000)?])?,
        ])
    };
    const NETLINK_SOCK_DIAG: u64 = 4;
    let mut rules: std::collections::BTreeMap<i64, Vec<SeccompRule>> = [
        libc::SYS_chown,
        libc::SYS_fchown,
        libc::SYS_lchown,
        libc::SYS_fchownat,
        libc::SYS_setxattr,
        libc::SYS_lsetxattr,
        libc::SYS_fsetxattr,
        libc::SYS_removexattr,
        libc::SYS_lremovexattr,
        libc::SYS_fremovexattr,
        // setxattrat and removexattrat (Linux 6.13).
        463,
        466,
    ]
    .into_iter()
    .map(|call| (call, Vec::new()))
    .collect();
    rules.insert(
        libc::SYS_socket,
        vec![
            when(vec![arg(0, Op::Eq, libc::AF_UNIX as u64)?])?,
            when(vec![
                arg(0, Op::Eq, libc::AF_NETLINK as u64)?,
                arg(2, Op::Eq, NETLINK_SOCK_DIAG)?,
            ])?,
        ],
    );
    rules.insert(libc::SYS_chmod, set_id_bits(1)?);
    rules.insert(libc::SYS_fchmod, set_id_bits(1)?);
    rules.insert(libc::SYS_fchmodat, set_id_bits(2)?);
    // fchmodat2 (Linux 6.6).
    rules.insert(452, set_id_bits(2)?);
    let arch = TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|e| SandboxError::Seccomp(e.to_string()))?;
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .map_err(bad)?;
    filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| SandboxError::Seccomp(e.to_string()))
}

/// A confinement ready to apply to one command.
#[derive(Debug)]
pub struct Confinement {
    /// `None` when the app runs unconfined (the operator's opt-out).
    ruleset: Option<RulesetCreated>,
    identity: Identity,
    exposure: Option<Exposure>,
    seccomp: Option<seccompiler::BpfProgram>,
    open_files: Option<u64>,
}

impl Confinement {
    /// No confinement but dying with this process: the operator's opt-out,
    /// where the kernel offers no sandbox.
    pub fn unconfined() -> Self {
        Confinement {
            ruleset: None,
            identity: Identity::Inherited,
            exposure: None,
            seccomp: None,
            open_files: None,
        }
    }

    /// Builds the Landlock ruleset, seccomp filter and mount namespace of
    /// `policy` for a process running as `identity` (before the fork: this
    /// allocates and opens files).
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
        let exposure = match identity {
            Identity::Uid(_) => Some(Exposure::new(policy)?),
            Identity::Inherited => None,
        };
        Ok(Confinement {
            ruleset: Some(ruleset),
            identity,
            exposure,
            seccomp: Some(seccomp_filter()?),
            open_files: policy.open_files,
        })
    }

    /// Makes `command` start confined: just before it executes it enters
    /// its mount namespace, takes its identity, asks to die with this
    /// process, caps its open files, and restricts itself with the seccomp
    /// filter and the Landlock ruleset.
    pub fn apply(mut self, command: &mut Command) {
        let uid = match self.identity {
            Identity::Uid(uid) => Some(uid),
            Identity::Inherited => None,
        };
        let mut ruleset = self.ruleset.take();
        let confined = ruleset.is_some();
        let mut exposure = self.exposure.take();
        let seccomp = self.seccomp.take();
        let open_files = self.open_files;
        // SAFETY: between fork and exec the closure only makes system calls
        // (unshare, mount, mkdir, setrlimit, setgroups, setgid, setuid,
        // prctl, seccomp, landlock_restrict_self, close) on values built
        // before the fork: no allocation and no lock.
        unsafe {
            command.pre_exec(move || {
                let err = std::io::Error::last_os_error;
                if let Some(exposure) = exposure.as_mut() {
                    exposure.enter()?;
                }
                if let Some(files) = open_files {
                    let limit = libc::rlimit {
                        rlim_cur: files,
                        rlim_max: files,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                        return Err(err());
                    }
                }
                if let Some(uid) = uid {
                    if libc::setgroups(0, std::ptr::null()) != 0
                        || libc::setgid(uid) != 0
                        || libc::setuid(uid) != 0
                    {
                        return Err(err());
                    }
                }
                // After the identity change, which clears it.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(err());
                }
                if !confined {
                    return Ok(());
                }
                if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                    return Err(err());
                }
                if let Some(program) = &seccomp {
                    install_seccomp(program)?;
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

/// Installs a compiled seccomp filter on this thread (no new privileges
/// already set). System calls only.
fn install_seccomp(program: &seccompiler::BpfProgram) -> std::io::Result<()> {
    let length = u16::try_from(program.len())
        .map_err(|_| std::io::Error::other("the seccomp filter is too long"))?;
    let prog = libc::sock_fprog {
        len: length,
        filter: program.as_ptr().cast_mut().cast(),
    };
    // SAFETY: the filter program outlives the call, which copies it.
    let done = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &prog as *const libc::sock_fprog,
        )
    };
    if done != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Whether this process entered a mount namespace of its own at start.
static OWN_MOUNTS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

/// Gives this process a mount namespace of its own, where what it mounts
/// (the app's size-capped home and temporary folder) is seen by it and the
/// app alone and goes when the last of them ends, however they end. To be
/// called at start, while the process has one thread: the namespace is the
/// calling thread's, and the threads it starts later inherit it. Only root
/// can; returns whether it did.
pub fn enter_own_mount_namespace() -> bool {
    *OWN_MOUNTS.get_or_init(|| {
        if !running_as_root() {
            return false;
        }
        // SAFETY: unshare and mount on this process, with static strings.
        unsafe {
            libc::unshare(libc::CLONE_NEWNS) == 0
                && libc::mount(
                    std::ptr::null(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ) == 0
        }
    })
}

/// Mounts a tmpfs of at most `size_mb` MB on the folder `path`, private to
/// `owner` (mode 0700), in this process's own mount namespace; refuses
/// when the process has none (the mount would outlive it).
pub fn mount_private_tmpfs(path: &Path, size_mb: u64, owner: Option<u32>) -> Result<(), String> {
    if !OWN_MOUNTS.get().copied().unwrap_or(false) {
        return Err("the node has no mount namespace of its own (it does not run as root)".into());
    }
    let (uid, gid) = match owner {
        Some(uid) => (uid, uid),
        // SAFETY: geteuid and getegid cannot fail.
        None => unsafe { (libc::geteuid(), libc::getegid()) },
    };
    let options = format!("size={size_mb}m,mode=0700,uid={uid},gid={gid}");
    let (target, options) = (c_path(path), CString::new(options).unwrap_or_default());
    // SAFETY: mount with NUL-terminated strings owned here.
    let done = unsafe {
        libc::mount(
            c"tmpfs".as_ptr(),
            target.as_ptr(),
            c"tmpfs".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV,
            options.as_ptr().cast(),
        )
    };
    if done != 0 {
        return Err(format!(
            "cannot mount a {size_mb} MB tmpfs on {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        ));
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
                Identity::Uid(uid) => format!("uid {uid}, private /tmp"),
            };
            format!("landlock ABI {abi}, seccomp, {who}, no new privileges")
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

    fn offered(abi: i32, root: bool) -> Offered {
        Offered {
            landlock_abi: abi,
            root,
        }
    }

    #[test]
    fn without_landlock_the_app_is_refused_unless_the_operator_opted_out() {
        match decide(Mode::Required, offered(0, true), 7) {
            Decision::Refuse(why) => assert!(why.contains("--sandbox best-effort"), "{why}"),
            other => panic!("{other:?}"),
        }
        match decide(Mode::BestEffort, offered(0, true), 7) {
            Decision::Unconfined(why) => assert!(why.starts_with("UNSANDBOXED"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn root_nodes_give_apps_their_own_uid_and_never_uid_0() {
        assert_eq!(
            decide(Mode::Required, offered(7, true), 42),
            Decision::Confine {
                abi: 7,
                identity: Identity::Uid(42)
            }
        );
        for mode in [Mode::Required, Mode::BestEffort] {
            for abi in [0, 7] {
                if let Decision::Confine { identity, .. } = decide(mode, offered(abi, true), 42) {
                    assert_eq!(identity, Identity::Uid(42));
                }
            }
        }
    }

    #[test]
    fn a_node_that_is_not_root_refuses_unless_the_operator_opted_out() {
        match decide(Mode::Required, offered(7, false), 42) {
            Decision::Refuse(why) => {
                assert!(why.contains("root") && why.contains("best-effort"), "{why}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            decide(Mode::BestEffort, offered(3, false), 42),
            Decision::Confine {
                abi: 3,
                identity: Identity::Inherited
            }
        );
    }

    #[test]
    fn installers_have_uids_of_their_own_outside_the_apps_range() {
        let a = installer_uid(Path::new("/cache/requirements/aa/site"));
        let b = installer_uid(Path::new("/cache/requirements/bb/site"));
        assert_ne!(a, b);
        for uid in [a, b] {
            assert!((INSTALLER_UID_BASE..INSTALLER_UID_BASE + INSTALLER_UID_SPAN).contains(&uid));
            assert!(!(APP_UID_BASE..APP_UID_BASE + APP_UID_SPAN).contains(&uid));
        }
    }

    #[test]
    fn a_closed_folder_is_covered_and_only_the_policy_is_shown_in_it() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let closed = dir.path().join("closed");
        let runtime = closed.join("runtime/bin");
        let secret = closed.join("secret");
        std::fs::create_dir_all(&runtime).unwrap();
        std::fs::create_dir_all(&secret).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o700)).unwrap();
        let policy = Policy {
            read: vec![runtime.clone(), Path::new("/usr").to_path_buf()],
            ..Policy::default()
        };
        let exposure = Exposure::new(&policy).unwrap();
        let closed = std::fs::canonicalize(&closed).unwrap();
        let covers: Vec<_> = exposure.covers.iter().map(|c| c.0.clone()).collect();
        assert_eq!(covers, vec![c_path(&closed)]);
        let targets: Vec<_> = exposure.binds.iter().map(|b| b.1.clone()).collect();
        let runtime = std::fs::canonicalize(&runtime).unwrap();
        assert_eq!(
            targets,
            vec![c_path(&runtime)],
            "/usr is open to all; the secret is not shown"
        );
        assert!(exposure.binds[0].2, "shown read-only");
        let points: Vec<_> = exposure.points.iter().map(|p| p.0.clone()).collect();
        assert_eq!(
            points,
            vec![c_path(&closed.join("runtime")), c_path(&runtime)]
        );
    }

    #[test]
    fn a_private_tmp_covers_tmp_and_shows_what_the_policy_keeps_under_it() {
        let work = tempfile::Builder::new().tempdir_in("/tmp").unwrap();
        let tmp = work.path().join("tmp");
        let code = work.path().join("app");
        std::fs::create_dir_all(&tmp).unwrap();
        std::fs::create_dir_all(&code).unwrap();
        let policy = Policy {
            read: vec![code.clone()],
            write: vec![tmp.clone()],
            private_tmp: Some(tmp.clone()),
            ..Policy::default()
        };
        let exposure = Exposure::new(&policy).unwrap();
        assert_eq!(exposure.covers.len(), 1);
        assert_eq!(exposure.covers[0].0, c_path(Path::new("/tmp")));
        assert!(
            exposure.covers[0].1.is_some(),
            "/tmp is the app's own folder"
        );
        let targets: Vec<_> = exposure.binds.iter().map(|b| b.1.clone()).collect();
        assert!(targets.contains(&c_path(&std::fs::canonicalize(&code).unwrap())));
    }

    #[test]
    fn the_seccomp_filter_compiles_for_this_machine() {
        assert!(!seccomp_filter().unwrap().is_empty());
    }

    #[test]
    fn app_uids_are_unprivileged_and_stable() {
        let a = app_uid("0b9c6a2e-1f4d-4e8a-9c1b-2d3e4f5a6b7c");
        assert_eq!(a, app_uid("0b9c6a2e-1f4d-4e8a-9c1b-2d3e4f5a6b7c"));
        assert_ne!(a, app_uid("0b9c6a2e-1f4d-4e8a-9c1b-2d3e4f5a6b7d"));
        assert!((APP_UID_BASE..APP_UID_BASE + APP_UID_SPAN).contains(&a));
    }
}
