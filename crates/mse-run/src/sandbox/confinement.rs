//! One command's confinement: its Landlock ruleset, seccomp filter, mount
//! namespace, identity and limit of open files, built before the fork and
//! entered just before the command executes.

use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::Command;

use landlock::{
    Access, AccessFs, AccessNet, CompatLevel, Compatible, NetPort, PathBeneath, PathFd, Ruleset,
    RulesetAttr, RulesetCreated, RulesetCreatedAttr, RulesetStatus, Scope, ABI,
};

use super::seccomp::{install_seccomp, seccomp_filter};
use super::{Exposure, Identity, Policy, SandboxError};

/// The Landlock ABI this sandbox is written and tested against.
const TARGET_ABI: ABI = ABI::V7;

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
