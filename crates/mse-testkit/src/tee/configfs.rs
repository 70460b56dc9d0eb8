//! configfs-tsm, emulated as a FUSE file system with the kernel's semantics
//! (Documentation/ABI/testing/configfs-tsm-report): `mkdir report/NAME`
//! makes an entry holding `inblob`, `outblob`, `provider` and `generation`
//! (and, for `sev_guest`, `auxblob`, `privlevel` and `privlevel_floor`);
//! each write to `inblob` or `privlevel` moves `generation` by one; reading
//! `outblob` or `auxblob` produces the report for the current input;
//! `rmdir` removes the entry. Writes of more than 64 bytes to `inblob` fail
//! with `EINVAL`, as in the kernel.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    MountOption, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry,
    ReplyOpen, ReplyWrite, Request, WriteFlags,
};

/// The most `inblob` holds, as in the kernel (`TSM_INBLOB_MAX`).
pub const INBLOB_MAX: usize = 64;

/// The confidential-computing firmware behind the interface.
pub trait TsmDevice: Send + Sync + 'static {
    /// What `provider` reads: `tdx_guest` or `sev_guest`.
    fn provider(&self) -> &'static str;
    /// The report (`outblob`) and certificates (`auxblob`, empty when the
    /// device has none) for REPORTDATA `inblob` at `privlevel`.
    fn report(&self, inblob: &[u8; 64], privlevel: u32) -> Result<(Vec<u8>, Vec<u8>), String>;
}

/// A request the device answered: who asked, for what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    /// The uid of the process that read `outblob` or `auxblob`.
    pub uid: u32,
    /// The pid of that process.
    pub pid: u32,
    /// The REPORTDATA the report carries.
    pub report_data: [u8; 64],
}

/// A mounted emulated configfs-tsm; unmounted when dropped.
pub struct EmulatedTsm {
    root: PathBuf,
    served: Arc<Mutex<Vec<Served>>>,
    _session: fuser::BackgroundSession,
    _dir: tempfile::TempDir,
}

impl EmulatedTsm {
    /// Mounts configfs-tsm for `device` in a new temporary folder (needs
    /// root or a permitted FUSE mount). Any user may reach it, with the
    /// kernel's permission bits: entries and their files belong to root.
    pub fn mount(device: impl TsmDevice) -> std::io::Result<EmulatedTsm> {
        let served = Arc::new(Mutex::new(Vec::new()));
        let fs = TsmFs {
            device: Box::new(device),
            state: Mutex::new(State::default()),
            served: served.clone(),
        };
        let (root, session, dir) = mount(fs, "tsm", "configfs-tsm-emulated")?;
        Ok(EmulatedTsm {
            root,
            served,
            _session: session,
            _dir: dir,
        })
    }

    /// [`EmulatedTsm::mount`] for `test`, or `None` (said on the standard
    /// error) where this machine cannot mount FUSE file systems; under `CI`
    /// a failed mount fails the test.
    pub fn for_test(test: &str, device: impl TsmDevice) -> Option<EmulatedTsm> {
        mounted_for_test(test, "configfs-tsm", EmulatedTsm::mount(device))
    }

    /// The root to give a provider: the folder holding `report/`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every request answered so far.
    pub fn served(&self) -> Vec<Served> {
        self.served.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// Mounts `fs` at `NAME` in a new temporary folder (needs root or a
/// permitted FUSE mount): any user may reach it, with the kernel's
/// permission bits. Returns the mount point, the session (unmounted when
/// dropped) and the folder.
pub(super) fn mount(
    fs: impl Filesystem + 'static,
    name: &str,
    fs_name: &str,
) -> std::io::Result<(PathBuf, fuser::BackgroundSession, tempfile::TempDir)> {
    let dir = tempfile::Builder::new()
        .prefix(&format!("mse-{name}-"))
        .tempdir()?;
    // Others must be able to walk to the mount point, as to /sys or /dev.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )?;
    let root = dir.path().join(name);
    std::fs::create_dir(&root)?;
    let session = mount_at(fs, &root, fs_name)?;
    Ok((root, session, dir))
}

/// Mounts `fs` on the existing folder `root`; any user may reach it, with
/// the kernel's permission bits.
pub(super) fn mount_at(
    fs: impl Filesystem + 'static,
    root: &Path,
    fs_name: &str,
) -> std::io::Result<fuser::BackgroundSession> {
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        MountOption::FSName(fs_name.into()),
        MountOption::DefaultPermissions,
    ];
    config.acl = fuser::SessionACL::All;
    fuser::spawn_mount(fs, root, &config)
}

/// A mounted device for `test`, or `None` (said on the standard error)
/// where this machine cannot mount FUSE file systems; under `CI` a failed
/// mount fails the test.
pub(super) fn mounted_for_test<T>(
    test: &str,
    what: &str,
    mounted: std::io::Result<T>,
) -> Option<T> {
    match mounted {
        Ok(device) => Some(device),
        Err(e) => {
            crate::require(
                test,
                Err(format!("cannot mount an emulated {what} (FUSE): {e}")),
            );
            None
        }
    }
}

/// Answers a read of `size` bytes at `offset` of `bytes`.
pub(super) fn reply_range(reply: ReplyData, bytes: &[u8], offset: u64, size: u32) {
    let start = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(bytes.len());
    let end = start.saturating_add(size as usize).min(bytes.len());
    reply.data(&bytes[start..end]);
}

const ROOT: u64 = 1;
const REPORT: u64 = 2;
/// Inodes of an entry are `FIRST_ENTRY + 16 * index + file`.
const FIRST_ENTRY: u64 = 16;
/// Attributes are never cached: every look asks the file system.
pub(super) const TTL: Duration = Duration::ZERO;

/// The files of an entry, by their inode offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum File {
    InBlob = 1,
    OutBlob = 2,
    AuxBlob = 3,
    Provider = 4,
    Generation = 5,
    PrivLevel = 6,
    PrivLevelFloor = 7,
}

impl File {
    const ALL: [File; 7] = [
        File::InBlob,
        File::OutBlob,
        File::AuxBlob,
        File::Provider,
        File::Generation,
        File::PrivLevel,
        File::PrivLevelFloor,
    ];

    fn name(self) -> &'static str {
        match self {
            File::InBlob => "inblob",
            File::OutBlob => "outblob",
            File::AuxBlob => "auxblob",
            File::Provider => "provider",
            File::Generation => "generation",
            File::PrivLevel => "privlevel",
            File::PrivLevelFloor => "privlevel_floor",
        }
    }

    fn mode(self) -> u16 {
        match self {
            File::InBlob | File::PrivLevel => 0o200,
            _ => 0o400,
        }
    }

    /// Whether the kernel shows this file for `provider`.
    fn shown(self, provider: &str) -> bool {
        match self {
            File::AuxBlob | File::PrivLevel | File::PrivLevelFloor => provider == "sev_guest",
            _ => true,
        }
    }

    fn from_offset(offset: u64) -> Option<File> {
        File::ALL.into_iter().find(|f| *f as u64 == offset)
    }
}

#[derive(Debug, Default)]
struct Entry {
    inblob: Vec<u8>,
    privlevel: u32,
    generation: u64,
    /// The report for `generation`, once read.
    produced: Option<(u64, Vec<u8>, Vec<u8>)>,
}

#[derive(Debug, Default)]
struct State {
    /// Entries by index; their names in `names`.
    entries: BTreeMap<u64, Entry>,
    names: BTreeMap<String, u64>,
    next: u64,
}

struct TsmFs {
    device: Box<dyn TsmDevice>,
    state: Mutex<State>,
    served: Arc<Mutex<Vec<Served>>>,
}

/// The attributes of a file or folder of root's.
pub(super) fn attr(ino: u64, kind: FileType, perm: u16, size: u64) -> FileAttr {
    FileAttr {
        ino: INodeNo(ino),
        size,
        blocks: 0,
        atime: UNIX_EPOCH,
        mtime: UNIX_EPOCH,
        ctime: UNIX_EPOCH,
        crtime: UNIX_EPOCH,
        kind,
        perm,
        nlink: if kind == FileType::Directory { 2 } else { 1 },
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

fn entry_ino(index: u64) -> u64 {
    FIRST_ENTRY + 16 * index
}

/// The entry index and file of an inode (`None` file: the entry's folder).
fn split(ino: u64) -> Option<(u64, Option<File>)> {
    let rel = ino.checked_sub(FIRST_ENTRY)?;
    let (index, offset) = (rel / 16, rel % 16);
    if offset == 0 {
        Some((index, None))
    } else {
        File::from_offset(offset).map(|f| (index, Some(f)))
    }
}

impl TsmFs {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn attr_of(&self, ino: u64) -> Option<FileAttr> {
        match ino {
            ROOT | REPORT => Some(attr(ino, FileType::Directory, 0o755, 0)),
            _ => {
                let (index, file) = split(ino)?;
                let state = self.lock();
                state.entries.get(&index)?;
                Some(match file {
                    None => attr(ino, FileType::Directory, 0o755, 0),
                    Some(file) if file.shown(self.device.provider()) => {
                        // configfs attributes report a page; binary ones 0.
                        attr(ino, FileType::RegularFile, file.mode(), 4096)
                    }
                    Some(_) => return None,
                })
            }
        }
    }

    /// The contents of a readable file, producing the report if the input
    /// changed since it was last produced.
    fn contents(&self, req: &Request, index: u64, file: File) -> Result<Vec<u8>, Errno> {
        let mut state = self.lock();
        let entry = state.entries.get_mut(&index).ok_or(Errno::ENOENT)?;
        match file {
            File::Provider => Ok(format!("{}\n", self.device.provider()).into_bytes()),
            File::Generation => Ok(format!("{}\n", entry.generation).into_bytes()),
            File::PrivLevelFloor => Ok(b"0\n".to_vec()),
            File::OutBlob | File::AuxBlob => {
                let current = matches!(&entry.produced, Some((g, _, _)) if *g == entry.generation);
                if !current {
                    let mut data = [0u8; 64];
                    data[..entry.inblob.len()].copy_from_slice(&entry.inblob);
                    let (out, aux) = self
                        .device
                        .report(&data, entry.privlevel)
                        .map_err(|_| Errno::EIO)?;
                    entry.produced = Some((entry.generation, out, aux));
                    if let Ok(mut served) = self.served.lock() {
                        served.push(Served {
                            uid: req.uid(),
                            pid: req.pid(),
                            report_data: data,
                        });
                    }
                }
                let Some((_, out, aux)) = &entry.produced else {
                    return Err(Errno::EIO);
                };
                Ok(if file == File::OutBlob { out } else { aux }.clone())
            }
            File::InBlob | File::PrivLevel => Err(Errno::EACCES),
        }
    }
}

impl Filesystem for TsmFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let name = name.to_string_lossy();
        let ino = match u64::from(parent) {
            ROOT if name == "report" => Some(REPORT),
            REPORT => self.lock().names.get(name.as_ref()).map(|i| entry_ino(*i)),
            parent => match split(parent) {
                // Only an entry's folder holds files.
                Some((_, None)) => File::ALL
                    .into_iter()
                    .find(|f| f.name() == name && f.shown(self.device.provider()))
                    .map(|file| parent + file as u64),
                _ => None,
            },
        };
        match ino.and_then(|ino| self.attr_of(ino)) {
            Some(attr) => reply.entry(&TTL, &attr, Generation(0)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.attr_of(ino.into()) {
            Some(attr) => reply.attr(&TTL, &attr),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        _size: Option<u64>,
        _atime: Option<fuser::TimeOrNow>,
        _mtime: Option<fuser::TimeOrNow>,
        _ctime: Option<std::time::SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<std::time::SystemTime>,
        _chgtime: Option<std::time::SystemTime>,
        _bkuptime: Option<std::time::SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        // Opening with O_TRUNC truncates nothing in configfs.
        match self.attr_of(ino.into()) {
            Some(attr) => reply.attr(&TTL, &attr),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        if u64::from(parent) != REPORT {
            return reply.error(Errno::EPERM);
        }
        let name = name.to_string_lossy().to_string();
        let index = {
            let mut state = self.lock();
            if state.names.contains_key(&name) {
                return reply.error(Errno::EEXIST);
            }
            let index = state.next;
            state.next += 1;
            state.entries.insert(index, Entry::default());
            state.names.insert(name, index);
            index
        };
        reply.entry(
            &TTL,
            &attr(entry_ino(index), FileType::Directory, 0o755, 0),
            Generation(0),
        );
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        if u64::from(parent) != REPORT {
            return reply.error(Errno::EPERM);
        }
        let mut state = self.lock();
        match state.names.remove(name.to_string_lossy().as_ref()) {
            Some(index) => {
                state.entries.remove(&index);
                reply.ok();
            }
            None => reply.error(Errno::ENOENT),
        }
    }

    fn open(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        // Contents are made when read: no page cache, no size hint.
        reply.opened(FileHandle(0), FopenFlags::FOPEN_DIRECT_IO);
    }

    fn read(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let Some((index, Some(file))) = split(ino.into()) else {
            return reply.error(Errno::EISDIR);
        };
        match self.contents(req, index, file) {
            Ok(bytes) => reply_range(reply, &bytes, offset, size),
            Err(errno) => reply.error(errno),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let Some((index, Some(file))) = split(ino.into()) else {
            return reply.error(Errno::EISDIR);
        };
        let mut state = self.lock();
        let Some(entry) = state.entries.get_mut(&index) else {
            return reply.error(Errno::ENOENT);
        };
        match file {
            File::InBlob => {
                if offset != 0 || data.len() > INBLOB_MAX {
                    return reply.error(Errno::EINVAL);
                }
                entry.inblob = data.to_vec();
            }
            File::PrivLevel => {
                let level = std::str::from_utf8(data)
                    .ok()
                    .and_then(|t| t.trim().parse::<u32>().ok());
                match level {
                    Some(level) if level <= 3 => entry.privlevel = level,
                    _ => return reply.error(Errno::EINVAL),
                }
            }
            _ => return reply.error(Errno::EACCES),
        }
        entry.generation += 1;
        reply.written(data.len() as u32);
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let ino = u64::from(ino);
        let mut names: Vec<(u64, FileType, String)> = vec![
            (ino, FileType::Directory, ".".into()),
            (ROOT, FileType::Directory, "..".into()),
        ];
        match ino {
            ROOT => names.push((REPORT, FileType::Directory, "report".into())),
            REPORT => names.extend(
                self.lock()
                    .names
                    .iter()
                    .map(|(name, i)| (entry_ino(*i), FileType::Directory, name.clone())),
            ),
            _ => match split(ino) {
                Some((index, None)) => names.extend(
                    File::ALL
                        .into_iter()
                        .filter(|f| f.shown(self.device.provider()))
                        .map(|f| {
                            (
                                entry_ino(index) + f as u64,
                                FileType::RegularFile,
                                f.name().into(),
                            )
                        }),
                ),
                _ => return reply.error(Errno::ENOTDIR),
            },
        }
        for (i, (ino, kind, name)) in names.into_iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(ino), (i + 1) as u64, kind, name) {
                break;
            }
        }
        reply.ok();
    }
}
