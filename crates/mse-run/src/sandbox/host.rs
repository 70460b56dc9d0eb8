//! What the node's own process offers its app and does for it outside any
//! confinement: the kernel's Landlock ABI, root, a mount namespace of its
//! own for the app's size-capped folders, being undumpable, and the owner
//! of the app's files.

use std::ffi::CString;
use std::path::Path;

use super::exposure::c_path;

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
