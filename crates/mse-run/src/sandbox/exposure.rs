//! The mount namespace of a process with a uid of its own: planned before
//! the fork, entered in the child with system calls only.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use super::{Policy, SandboxError};

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
pub(super) fn c_path(path: &Path) -> CString {
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
    pub(super) fn enter(&mut self) -> std::io::Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
