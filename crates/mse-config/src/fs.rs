//! The file-system view the validator reads through, so that validation stays
//! pure and tests can describe files in memory.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

/// What a path points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A regular file (after following symbolic links).
    File,
    /// A directory (after following symbolic links).
    Dir,
    /// Anything else: socket, device, fifo.
    Other,
}

/// Why a file could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReadError {
    /// Nothing at that path.
    #[error("no such file")]
    NotFound,
    /// The file exists but is a directory or a special file.
    #[error("not a regular file")]
    NotAFile,
    /// The file is larger than the caller accepts.
    #[error("larger than {limit} bytes")]
    TooLarge {
        /// The limit that was exceeded.
        limit: u64,
    },
    /// Any other operating-system error, as text.
    #[error("{0}")]
    Io(String),
}

/// Read-only access to the files a configuration refers to.
pub trait FileSystem {
    /// What `path` is, or `None` when nothing is there.
    fn kind(&self, path: &Path) -> Option<FileKind>;
    /// The content of the regular file at `path`, refusing files over `limit` bytes.
    fn read(&self, path: &Path, limit: u64) -> Result<Vec<u8>, ReadError>;
}

/// The machine's real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealFs;

impl FileSystem for RealFs {
    fn kind(&self, path: &Path) -> Option<FileKind> {
        let meta = std::fs::metadata(path).ok()?;
        Some(if meta.is_file() {
            FileKind::File
        } else if meta.is_dir() {
            FileKind::Dir
        } else {
            FileKind::Other
        })
    }

    fn read(&self, path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
        match self.kind(path) {
            None => return Err(ReadError::NotFound),
            Some(FileKind::File) => {}
            Some(_) => return Err(ReadError::NotAFile),
        }
        let file = std::fs::File::open(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ReadError::NotFound,
            _ => ReadError::Io(e.to_string()),
        })?;
        let mut content = Vec::new();
        file.take(limit.saturating_add(1))
            .read_to_end(&mut content)
            .map_err(|e| ReadError::Io(e.to_string()))?;
        if content.len() as u64 > limit {
            return Err(ReadError::TooLarge { limit });
        }
        Ok(content)
    }
}

/// An in-memory file tree, for tests and fuzzing.
#[derive(Debug, Default, Clone)]
pub struct MemoryFs {
    files: BTreeMap<PathBuf, Vec<u8>>,
    dirs: std::collections::BTreeSet<PathBuf>,
}

impl MemoryFs {
    /// An empty tree (the root directory exists).
    pub fn new() -> Self {
        let mut fs = MemoryFs::default();
        fs.dirs.insert(PathBuf::from("/"));
        fs
    }

    /// Adds a file, creating its parent directories.
    pub fn file(mut self, path: impl AsRef<Path>, content: impl Into<Vec<u8>>) -> Self {
        let path = normalize(path.as_ref());
        if let Some(parent) = path.parent() {
            self.add_dirs(parent);
        }
        self.files.insert(path, content.into());
        self
    }

    /// Adds a directory and its parents.
    pub fn dir(mut self, path: impl AsRef<Path>) -> Self {
        self.add_dirs(&normalize(path.as_ref()));
        self
    }

    fn add_dirs(&mut self, path: &Path) {
        for ancestor in path.ancestors() {
            if !ancestor.as_os_str().is_empty() {
                self.dirs.insert(ancestor.to_path_buf());
            }
        }
    }
}

impl FileSystem for MemoryFs {
    fn kind(&self, path: &Path) -> Option<FileKind> {
        let path = normalize(path);
        if self.files.contains_key(&path) {
            Some(FileKind::File)
        } else if self.dirs.contains(&path) {
            Some(FileKind::Dir)
        } else {
            None
        }
    }

    fn read(&self, path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
        let path = normalize(path);
        match self.files.get(&path) {
            Some(content) if content.len() as u64 > limit => Err(ReadError::TooLarge { limit }),
            Some(content) => Ok(content.clone()),
            None if self.dirs.contains(&path) => Err(ReadError::NotAFile),
            None => Err(ReadError::NotFound),
        }
    }
}

/// Joins `path` to `base` unless it is absolute, then removes `.` and `..`
/// lexically, so that what is shown to the user is a clean absolute path.
pub fn resolve(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        normalize(path)
    } else {
        normalize(&base.join(path))
    }
}

/// Removes `.` and `..` components without touching the file system.
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_is_relative_to_the_base_and_lexically_clean() {
        let base = Path::new("/home/me/app");
        assert_eq!(
            resolve(base, Path::new("../code/./x")),
            PathBuf::from("/home/me/code/x")
        );
        assert_eq!(resolve(base, Path::new("/abs/y")), PathBuf::from("/abs/y"));
    }

    #[test]
    fn memory_fs_knows_files_and_their_parent_directories() {
        let fs = MemoryFs::new().file("/a/b/c.py", "x");
        assert_eq!(fs.kind(Path::new("/a/b")), Some(FileKind::Dir));
        assert_eq!(fs.kind(Path::new("/a/b/c.py")), Some(FileKind::File));
        assert_eq!(
            fs.read(Path::new("/a/b/c.py"), 0),
            Err(ReadError::TooLarge { limit: 0 })
        );
        assert_eq!(fs.read(Path::new("/a"), 10), Err(ReadError::NotAFile));
        assert_eq!(fs.read(Path::new("/z"), 10), Err(ReadError::NotFound));
    }
}
