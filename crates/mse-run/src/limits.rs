//! Limits of an app: memory, CPU and processes through a cgroup of its own
//! (v2, or v1's `memory`, `cpu` and `pids` controllers) that its server
//! joins before it execs, so the app and every process it starts are
//! counted from their first instruction; open files by `RLIMIT_NOFILE`; the
//! bytes of its home and temporary folder by a size-capped tmpfs on each
//! (its pages count against the app's memory too). Where the kernel offers
//! no writable cgroup, the limits cannot hold and the status says why.

use std::io::Write as _;
use std::os::fd::{AsRawFd as _, RawFd};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The CPU period the quota of `cores` is given over, in microseconds.
pub const CPU_PERIOD_US: u64 = 100_000;
/// How long removing a cgroup waits for its last processes to exit.
const REMOVE_WAIT: Duration = Duration::from_secs(5);
/// The folder, below each controller's cgroup, that holds the apps' ones.
pub const FOLDER: &str = "mse";

/// What the operator asked for one app.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// The most memory, in MB.
    pub memory_mb: Option<u64>,
    /// The most CPU time, in cores.
    pub cores: Option<u32>,
    /// The most processes and threads at once.
    pub pids: Option<u64>,
    /// The most files one process holds open.
    pub open_files: Option<u64>,
    /// The most bytes its home, and its temporary folder, each hold, in MB.
    pub disk_mb: Option<u64>,
}

/// Processes and threads per MB of memory (a thread needs at least a few
/// hundred kB of stack and heap): 256 for 512 MB.
const PIDS_PER_MB: u64 = 2;
/// Bounds of the process limit, whatever the memory.
const PIDS_BOUNDS: (u64, u64) = (64, 4096);
/// Open files per process.
pub const OPEN_FILES: u64 = 4096;

impl Limits {
    /// The limits of a resource of `memory_mb` and `cores`: the processes
    /// and disk follow from the memory (disk: half of it for the home, and
    /// for the temporary folder; tmpfs pages count as memory); open files
    /// are always capped.
    pub fn for_resource(memory_mb: Option<u64>, cores: Option<u32>) -> Limits {
        Limits {
            memory_mb,
            cores,
            pids: memory_mb.map(|mb| (mb / PIDS_PER_MB).clamp(PIDS_BOUNDS.0, PIDS_BOUNDS.1)),
            open_files: Some(OPEN_FILES),
            disk_mb: memory_mb.map(|mb| (mb / 2).max(1)),
        }
    }

    /// True when nothing is limited.
    pub fn is_empty(&self) -> bool {
        self.memory_mb.is_none() && self.cores.is_none() && self.pids.is_none()
    }

    /// `memory 512 MB, 1 core, 256 processes, 4096 open files, disk 256 MB`.
    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(mb) = self.memory_mb {
            parts.push(format!("memory {mb} MB"));
        }
        if let Some(cores) = self.cores {
            parts.push(format!("{cores} core{}", if cores == 1 { "" } else { "s" }));
        }
        if let Some(pids) = self.pids {
            parts.push(format!("{pids} processes"));
        }
        if let Some(files) = self.open_files {
            parts.push(format!("{files} open files"));
        }
        if let Some(mb) = self.disk_mb {
            parts.push(format!("disk {mb} MB for home, {mb} MB for tmp"));
        }
        parts.join(", ")
    }
}

/// The cgroup layout this kernel offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hierarchy {
    /// The unified hierarchy, mounted here.
    V2(PathBuf),
    /// Version 1: the folders of this process's `memory`, `cpu` and `pids`
    /// cgroups.
    V1 {
        /// This process's memory cgroup.
        memory: Option<PathBuf>,
        /// This process's cpu cgroup.
        cpu: Option<PathBuf>,
        /// This process's pids cgroup.
        pids: Option<PathBuf>,
    },
}

/// The cgroup layout of this machine (`/sys/fs/cgroup`), or why there is none.
pub fn detect() -> Result<Hierarchy, String> {
    let root = Path::new("/sys/fs/cgroup");
    if root.join("cgroup.controllers").is_file() {
        return Ok(Hierarchy::V2(root.to_path_buf()));
    }
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let v1_dir = |controller: &str| -> Option<PathBuf> {
        let mount = [controller.to_string(), format!("{controller},cpuacct")]
            .into_iter()
            .map(|name| root.join(name))
            .find(|p| p.join("cgroup.procs").is_file())?;
        // This process's own cgroup of that controller, where it is visible
        // (its limits then bound the app's too); else the controller's root.
        let path = own.lines().find_map(|line| {
            let mut fields = line.splitn(3, ':');
            let (_, names, path) = (fields.next()?, fields.next()?, fields.next()?);
            names.split(',').any(|n| n == controller).then_some(path)
        });
        let nested = path.map(|p| mount.join(p.trim_start_matches('/')));
        Some(nested.filter(|p| p.is_dir()).unwrap_or(mount))
    };
    let (memory, cpu, pids) = (v1_dir("memory"), v1_dir("cpu"), v1_dir("pids"));
    if memory.is_none() && cpu.is_none() && pids.is_none() {
        return Err("no cgroup file system at /sys/fs/cgroup".into());
    }
    Ok(Hierarchy::V1 { memory, cpu, pids })
}

/// An app's cgroup: made with its limits, joined by the app server before
/// it execs, removed (with anything left in it) when the app ends.
#[derive(Debug)]
pub struct Cgroup {
    /// Its folders, one per controller (one in v2).
    dirs: Vec<PathBuf>,
    /// What was applied, e.g. `memory 512 MB, 1 core (cgroup v1)`.
    pub description: String,
}

/// What the node applies, as the status says it.
#[derive(Debug)]
pub enum Applied {
    /// No limit was asked for.
    NotAsked,
    /// The limits hold through this cgroup.
    Limited(Cgroup),
    /// Limits were asked for, but the kernel offered no way: why.
    Unlimited(String),
}

impl Applied {
    /// The `limits` of the status event: `memory 512 MB, 1 core (cgroup v1)`
    /// or `UNLIMITED: why`.
    pub fn describe(&self) -> String {
        match self {
            Applied::NotAsked => {
                "UNLIMITED: the launch description names no memory or cores".into()
            }
            Applied::Limited(cgroup) => cgroup.description.clone(),
            Applied::Unlimited(why) => format!("UNLIMITED: {why}"),
        }
    }

    /// The cgroup, when there is one.
    pub fn cgroup(&self) -> Option<&Cgroup> {
        match self {
            Applied::Limited(cgroup) => Some(cgroup),
            _ => None,
        }
    }
}

/// Makes the cgroup of app `name` (a uuid) with `limits` in `hierarchy`;
/// [`Applied::Unlimited`] says why when it cannot.
pub fn apply(limits: Limits, name: &str, hierarchy: Result<Hierarchy, String>) -> Applied {
    if limits.is_empty() {
        return Applied::NotAsked;
    }
    let hierarchy = match hierarchy {
        Ok(h) => h,
        Err(why) => return Applied::Unlimited(why),
    };
    match Cgroup::create(limits, name, &hierarchy) {
        Ok(cgroup) => Applied::Limited(cgroup),
        Err(why) => Applied::Unlimited(why),
    }
}

fn write(dir: &Path, file: &str, value: &str) -> Result<(), String> {
    let path = dir.join(file);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .map_err(|e| format!("cannot write {value} to {}: {e}", path.display()))
}

fn make_dir(dir: &Path) -> Result<(), String> {
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(format!("cannot create the cgroup {}: {e}", dir.display())),
    }
}

impl Cgroup {
    fn create(limits: Limits, name: &str, hierarchy: &Hierarchy) -> Result<Self, String> {
        let mut cgroup = Cgroup {
            dirs: Vec::new(),
            description: String::new(),
        };
        // On any failure, what was made so far goes (the drop).
        let version = match hierarchy {
            Hierarchy::V2(root) => {
                let parent = root.join(FOLDER);
                make_dir(&parent)?;
                let mut controllers = Vec::new();
                if limits.memory_mb.is_some() {
                    controllers.push("+memory");
                }
                if limits.cores.is_some() {
                    controllers.push("+cpu");
                }
                if limits.pids.is_some() {
                    controllers.push("+pids");
                }
                write(&parent, "cgroup.subtree_control", &controllers.join(" "))?;
                let dir = parent.join(name);
                make_dir(&dir)?;
                cgroup.dirs.push(dir.clone());
                if let Some(mb) = limits.memory_mb {
                    write(&dir, "memory.max", &(mb * 1024 * 1024).to_string())?;
                    if dir.join("memory.swap.max").exists() {
                        write(&dir, "memory.swap.max", "0")?;
                    }
                }
                if let Some(cores) = limits.cores {
                    let quota = u64::from(cores) * CPU_PERIOD_US;
                    write(&dir, "cpu.max", &format!("{quota} {CPU_PERIOD_US}"))?;
                }
                if let Some(pids) = limits.pids {
                    write(&dir, "pids.max", &pids.to_string())?;
                }
                "cgroup v2"
            }
            Hierarchy::V1 { memory, cpu, pids } => {
                let mut made = |base: &Option<PathBuf>, controller: &str| {
                    let base = base.as_ref().ok_or_else(|| {
                        format!("no `{controller}` cgroup controller in /sys/fs/cgroup")
                    })?;
                    let parent = base.join(FOLDER);
                    make_dir(&parent)?;
                    let dir = parent.join(name);
                    make_dir(&dir)?;
                    cgroup.dirs.push(dir.clone());
                    Ok::<PathBuf, String>(dir)
                };
                if let Some(mb) = limits.memory_mb {
                    let dir = made(memory, "memory")?;
                    let bytes = (mb * 1024 * 1024).to_string();
                    write(&dir, "memory.limit_in_bytes", &bytes)?;
                    // With swap, the limit holds for memory and swap together.
                    if dir.join("memory.memsw.limit_in_bytes").exists() {
                        write(&dir, "memory.memsw.limit_in_bytes", &bytes)?;
                    }
                }
                if let Some(cores) = limits.cores {
                    let dir = made(cpu, "cpu")?;
                    let quota = u64::from(cores) * CPU_PERIOD_US;
                    write(&dir, "cpu.cfs_period_us", &CPU_PERIOD_US.to_string())?;
                    write(&dir, "cpu.cfs_quota_us", &quota.to_string())?;
                }
                if let Some(max) = limits.pids {
                    let dir = made(pids, "pids")?;
                    write(&dir, "pids.max", &max.to_string())?;
                }
                "cgroup v1"
            }
        };
        cgroup.description = format!("{} ({version})", limits.describe());
        Ok(cgroup)
    }

    /// The cgroup's folders.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// Makes `command`'s process join this cgroup in the child, before it
    /// execs (and before any later `pre_exec` drops privileges): its first
    /// instruction is already limited. The spawn fails if it cannot join.
    pub fn enter(&self, command: &mut std::process::Command) -> std::io::Result<()> {
        let files = self
            .dirs
            .iter()
            .map(|dir| {
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(dir.join("cgroup.procs"))
            })
            .collect::<std::io::Result<Vec<std::fs::File>>>()?;
        let fds: Vec<RawFd> = files.iter().map(|f| f.as_raw_fd()).collect();
        // SAFETY: the closure only calls write(2), async-signal-safe, on
        // descriptors the parent keeps open (the files move into it and live
        // as long as the command); "0" names the writing process itself.
        unsafe {
            command.pre_exec(move || {
                let _keep = &files;
                for fd in &fds {
                    if libc::write(*fd, b"0".as_ptr().cast(), 1) != 1 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        Ok(())
    }

    /// Kills what is left in the cgroup and removes it, waiting (bounded)
    /// for the last processes to exit.
    pub fn remove(&mut self) {
        let deadline = Instant::now() + REMOVE_WAIT;
        for dir in std::mem::take(&mut self.dirs).iter().rev() {
            loop {
                let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
                for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                    // SAFETY: only processes of the app's own cgroup.
                    unsafe {
                        libc::kill(pid, libc::SIGKILL);
                    }
                }
                match std::fs::remove_dir(dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                    Err(e) if Instant::now() >= deadline => {
                        eprintln!("cannot remove the cgroup {}: {e}", dir.display());
                        break;
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        }
    }
}

/// The name of the cgroup of app `uuid`'s node whose folder is `work_dir`:
/// the uuid (hashed unless it is plain letters, digits and `-`) and a hash
/// of the folder, so that two nodes of one app on one kernel (a host that
/// fenced itself and the host the app moved to, in network namespaces of
/// one machine) never share, nor remove, each other's cgroup.
pub fn cgroup_name(uuid: &str, work_dir: &Path) -> String {
    use sha2::{Digest as _, Sha256};
    let app = if !uuid.is_empty() && uuid.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        uuid.to_string()
    } else {
        hex::encode(&Sha256::digest(uuid.as_bytes())[..16])
    };
    let folder = Sha256::digest(work_dir.as_os_str().as_encoded_bytes());
    format!("{app}-{}", hex::encode(&folder[..6]))
}

/// Removes what a node that could not clean up (killed with SIGKILL) left
/// of app `name`'s cgroup, killing anything still in it. For the process
/// that started the node: the node's cgroups are below this process's own.
pub fn remove_leftover(name: &str) {
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        return;
    }
    let dirs = match detect() {
        Ok(Hierarchy::V2(root)) => vec![root.join(FOLDER).join(name)],
        Ok(Hierarchy::V1 { memory, cpu, pids }) => [memory, cpu, pids]
            .into_iter()
            .flatten()
            .map(|base| base.join(FOLDER).join(name))
            .collect(),
        Err(_) => return,
    };
    let mut cgroup = Cgroup {
        dirs: dirs.into_iter().filter(|d| d.is_dir()).collect(),
        description: String::new(),
    };
    cgroup.remove();
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        self.remove();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processes_and_disk_follow_the_memory_within_bounds() {
        let small = Limits::for_resource(Some(16), None);
        assert_eq!((small.pids, small.disk_mb), (Some(64), Some(8)));
        let large = Limits::for_resource(Some(65_536), Some(8));
        assert_eq!((large.pids, large.disk_mb), (Some(4096), Some(32_768)));
        assert!(Limits::for_resource(None, None).is_empty());
    }

    #[test]
    fn limits_are_described_as_applied_or_why_not() {
        let none = apply(Limits::default(), "x", Err("unused".into()));
        assert_eq!(
            none.describe(),
            "UNLIMITED: the launch description names no memory or cores"
        );
        let limits = Limits::for_resource(Some(512), Some(1));
        let refused = apply(limits, "x", Err("no cgroup file system".into()));
        assert_eq!(refused.describe(), "UNLIMITED: no cgroup file system");
        assert_eq!(
            limits.describe(),
            "memory 512 MB, 1 core, 256 processes, 4096 open files, disk 256 MB for home, \
             256 MB for tmp"
        );
        let two = Limits::for_resource(None, Some(2));
        assert_eq!(two.describe(), "2 cores, 4096 open files");
    }

    #[test]
    fn a_missing_controller_leaves_the_app_unlimited_and_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let hierarchy = Hierarchy::V1 {
            memory: Some(dir.path().to_path_buf()),
            cpu: None,
            pids: None,
        };
        let limits = Limits::for_resource(Some(64), Some(1));
        // The memory folder is a plain one: its limit file cannot be written.
        let applied = apply(limits, "app", Ok(hierarchy));
        assert!(
            applied.describe().starts_with("UNLIMITED: "),
            "{}",
            applied.describe()
        );
        assert!(!dir.path().join(FOLDER).join("app").exists());
    }
}
