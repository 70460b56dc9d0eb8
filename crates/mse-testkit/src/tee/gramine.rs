//! Gramine's `/dev/attestation` inside an SGX enclave, emulated as a FUSE
//! file system: `attestation_type` reads `dcap`; writing 64 bytes to
//! `user_report_data` sets the REPORTDATA of the next quote; reading
//! `quote` gives an SGX (v3) quote of this enclave — its MRENCLAVE,
//! MRSIGNER and attributes — signed by the emulated Intel platform. Only
//! these three of Gramine's files are served. As in an enclave, whatever
//! runs in it may use them: the quote always carries the enclave's own
//! measurement, whoever chose the REPORTDATA.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEntry, ReplyOpen, ReplyWrite, Request,
    WriteFlags,
};

use super::configfs::{attr, mount, mount_at, mounted_for_test, reply_range, Served, TTL};
use super::intel::{sgx_report_body, EmulatedIntel, SGX_ATTRIBUTES};

const ROOT: u64 = 1;
const ATTESTATION_TYPE: u64 = 2;
const USER_REPORT_DATA: u64 = 3;
const QUOTE: u64 = 4;

const FILES: [(u64, &str, u16); 3] = [
    (ATTESTATION_TYPE, "attestation_type", 0o444),
    (USER_REPORT_DATA, "user_report_data", 0o666),
    (QUOTE, "quote", 0o444),
];

/// The enclave whose quotes the device gives.
pub struct Enclave {
    /// The platform that signs them.
    pub intel: Arc<EmulatedIntel>,
    /// MRENCLAVE: on a real node, the measurement Gramine's signing gives
    /// the app's manifest.
    pub mr_enclave: [u8; 32],
    /// MRSIGNER: the operator's enclave-signing key.
    pub mr_signer: [u8; 32],
}

struct DeviceFs {
    enclave: Enclave,
    report_data: Mutex<[u8; 64]>,
    /// The quote of the current REPORTDATA, once made: a reader reading in
    /// chunks reads one quote.
    produced: Mutex<Option<([u8; 64], Vec<u8>)>>,
    served: Arc<Mutex<Vec<Served>>>,
}

/// A mounted emulated `/dev/attestation`; unmounted when dropped.
pub struct EmulatedAttestation {
    root: PathBuf,
    served: Arc<Mutex<Vec<Served>>>,
    _session: fuser::BackgroundSession,
    _dir: tempfile::TempDir,
}

impl EmulatedAttestation {
    /// Mounts the device of `enclave` in a new temporary folder (needs
    /// root or a permitted FUSE mount).
    pub fn mount(enclave: Enclave) -> std::io::Result<EmulatedAttestation> {
        let served = Arc::new(Mutex::new(Vec::new()));
        let fs = DeviceFs {
            enclave,
            report_data: Mutex::new([0; 64]),
            produced: Mutex::new(None),
            served: served.clone(),
        };
        let (root, session, dir) = mount(fs, "attestation", "gramine-attestation-emulated")?;
        Ok(EmulatedAttestation {
            root,
            served,
            _session: session,
            _dir: dir,
        })
    }

    /// Mounts the device of `enclave` on the existing folder `root`, as
    /// the emulated Gramine loader does inside its own mount namespace;
    /// unmounted when the session is dropped.
    pub fn mount_on(enclave: Enclave, root: &Path) -> std::io::Result<fuser::BackgroundSession> {
        let fs = DeviceFs {
            enclave,
            report_data: Mutex::new([0; 64]),
            produced: Mutex::new(None),
            served: Arc::new(Mutex::new(Vec::new())),
        };
        mount_at(fs, root, "gramine-attestation-emulated")
    }

    /// [`EmulatedAttestation::mount`] for `test`, or `None` (said on the
    /// standard error) where FUSE cannot be mounted; under `CI` a failed
    /// mount fails the test.
    pub fn for_test(test: &str, enclave: Enclave) -> Option<EmulatedAttestation> {
        mounted_for_test(
            test,
            "/dev/attestation",
            EmulatedAttestation::mount(enclave),
        )
    }

    /// The folder to give a Gramine provider (as `/dev/attestation`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every quote given so far: who asked, for what REPORTDATA.
    pub fn served(&self) -> Vec<Served> {
        self.served.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl DeviceFs {
    fn attr_of(ino: u64) -> Option<FileAttr> {
        if ino == ROOT {
            return Some(attr(ino, FileType::Directory, 0o755, 0));
        }
        FILES
            .iter()
            .find(|(i, ..)| *i == ino)
            .map(|(i, _, mode)| attr(*i, FileType::RegularFile, *mode, 0))
    }

    fn contents(&self, req: &Request, ino: u64) -> Result<Vec<u8>, Errno> {
        match ino {
            ATTESTATION_TYPE => Ok(b"dcap".to_vec()),
            USER_REPORT_DATA => Ok(self
                .report_data
                .lock()
                .map(|d| d.to_vec())
                .map_err(|_| Errno::EIO)?),
            QUOTE => {
                let data = *self.report_data.lock().map_err(|_| Errno::EIO)?;
                let mut produced = self.produced.lock().map_err(|_| Errno::EIO)?;
                if let Some((made_for, quote)) = produced.as_ref() {
                    if *made_for == data {
                        return Ok(quote.clone());
                    }
                }
                let body = sgx_report_body(
                    &self.enclave.mr_enclave,
                    &self.enclave.mr_signer,
                    &SGX_ATTRIBUTES,
                    &data,
                );
                let quote = self
                    .enclave
                    .intel
                    .sgx_quote(&body)
                    .map_err(|_| Errno::EIO)?;
                if let Ok(mut served) = self.served.lock() {
                    served.push(Served {
                        uid: req.uid(),
                        pid: req.pid(),
                        report_data: data,
                    });
                }
                *produced = Some((data, quote.clone()));
                Ok(quote)
            }
            _ => Err(Errno::ENOENT),
        }
    }
}

impl Filesystem for DeviceFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let found = (u64::from(parent) == ROOT)
            .then(|| FILES.iter().find(|(_, n, _)| OsStr::new(n) == name))
            .flatten()
            .and_then(|(ino, ..)| Self::attr_of(*ino));
        match found {
            Some(attr) => reply.entry(&TTL, &attr, Generation(0)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match Self::attr_of(ino.into()) {
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
        // Opening with O_TRUNC truncates nothing: the device keeps 64 bytes.
        match Self::attr_of(ino.into()) {
            Some(attr) => reply.attr(&TTL, &attr),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn open(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
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
        match self.contents(req, ino.into()) {
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
        if u64::from(ino) != USER_REPORT_DATA {
            return reply.error(Errno::EACCES);
        }
        let Ok(bytes) = <[u8; 64]>::try_from(data) else {
            return reply.error(Errno::EINVAL);
        };
        if offset != 0 {
            return reply.error(Errno::EINVAL);
        }
        match self.report_data.lock() {
            Ok(mut current) => {
                *current = bytes;
                reply.written(64);
            }
            Err(_) => reply.error(Errno::EIO),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        if u64::from(ino) != ROOT {
            return reply.error(Errno::ENOTDIR);
        }
        let mut names = vec![
            (ROOT, FileType::Directory, "."),
            (ROOT, FileType::Directory, ".."),
        ];
        names.extend(
            FILES
                .iter()
                .map(|(i, n, _)| (*i, FileType::RegularFile, *n)),
        );
        for (i, (ino, kind, name)) in names.into_iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(ino), (i + 1) as u64, kind, name) {
                break;
            }
        }
        reply.ok();
    }
}
