//! Which files of `code.location` go into the package: everything but what
//! `.mseignore` files (gitignore syntax) and the default ignores exclude.

use std::path::{Path, PathBuf};

use ignore::gitignore::{Gitignore, GitignoreBuilder};
use ignore::WalkBuilder;

use crate::PackError;

/// Patterns every package leaves out, whatever `.mseignore` says.
pub const DEFAULT_IGNORES: &[&str] = &[
    "__pycache__",
    "*.py[cod]",
    ".git*",
    ".venv",
    ".env",
    "mse.toml",
    "secrets.json",
];

/// Name of the per-folder ignore file.
pub const IGNORE_FILE: &str = ".mseignore";

/// One entry to package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path inside the package, `/`-separated, UTF-8.
    pub relative: String,
    /// Where the content is read from.
    pub source: PathBuf,
    /// Folder or regular file (with its size).
    pub kind: EntryKind,
}

/// Kind of a packaged entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A folder (kept even when empty).
    Dir,
    /// A regular file of this many bytes.
    File(u64),
}

fn default_matcher(root: &Path) -> Result<Gitignore, PackError> {
    let mut builder = GitignoreBuilder::new(root);
    for pattern in DEFAULT_IGNORES {
        builder
            .add_line(None, pattern)
            .map_err(|e| PackError::Walk(format!("default ignore {pattern}: {e}")))?;
    }
    builder
        .build()
        .map_err(|e| PackError::Walk(format!("default ignores: {e}")))
}

/// Lists what to package under `root`, sorted by path.
pub fn walk(root: &Path) -> Result<Vec<Entry>, PackError> {
    let root = root
        .canonicalize()
        .map_err(|e| PackError::Io(root.to_path_buf(), e))?;
    if !root.is_dir() {
        return Err(PackError::Walk(format!(
            "{} is not a folder",
            root.display()
        )));
    }
    let defaults = default_matcher(&root)?;
    let filter_root = root.clone();
    let walker = WalkBuilder::new(&root)
        .standard_filters(false)
        .hidden(false)
        .parents(false)
        .follow_links(true)
        .add_custom_ignore_filename(IGNORE_FILE)
        .filter_entry(move |entry| {
            let is_dir = entry.file_type().is_some_and(|t| t.is_dir());
            let Ok(relative) = entry.path().strip_prefix(&filter_root) else {
                return true;
            };
            relative.as_os_str().is_empty()
                || !defaults
                    .matched_path_or_any_parents(relative, is_dir)
                    .is_ignore()
        })
        .build();

    let mut entries = Vec::new();
    for item in walker {
        let entry = item.map_err(|e| PackError::Walk(e.to_string()))?;
        let path = entry.path();
        let relative = path.strip_prefix(&root).map_err(|_| {
            PackError::Walk(format!("{} is outside the code folder", path.display()))
        })?;
        if relative.as_os_str().is_empty() {
            continue;
        }
        let Some(relative_str) = relative.to_str() else {
            return Err(PackError::NonUtf8Name(path.to_path_buf()));
        };
        if entry.path_is_symlink() {
            let target = path
                .canonicalize()
                .map_err(|e| PackError::Io(path.to_path_buf(), e))?;
            if !target.starts_with(&root) {
                return Err(PackError::SymlinkEscapes {
                    link: path.to_path_buf(),
                    target,
                });
            }
        }
        let meta = std::fs::metadata(path).map_err(|e| PackError::Io(path.to_path_buf(), e))?;
        let kind = if meta.is_dir() {
            EntryKind::Dir
        } else if meta.is_file() {
            EntryKind::File(meta.len())
        } else {
            return Err(PackError::SpecialFile(path.to_path_buf()));
        };
        entries.push(Entry {
            relative: relative_str.replace(std::path::MAIN_SEPARATOR, "/"),
            source: path.to_path_buf(),
            kind,
        });
    }
    entries.sort_by(|a, b| a.relative.as_bytes().cmp(b.relative.as_bytes()));
    Ok(entries)
}
