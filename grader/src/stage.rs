//! Staging: the learner's `src/` copied into a private directory the build reads instead.
//!
//! Only regular files are taken, never followed through a link, within caps on their number, size
//! and depth; a symlink, FIFO or device makes the unit a compile error naming it. The tree is read
//! once, hashed (SHA-256 of names and contents), and rewritten only when that hash changes, so
//! cargo's mtime-based freshness follows content: an old file moved back into place still gets a
//! new staged copy and a rebuild.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;
use sha2::{Digest, Sha256};

/// Most files a learner's `src/` may hold.
pub const MAX_FILES: usize = 256;
/// Most bytes, all files together.
pub const MAX_BYTES: u64 = 8 << 20;
/// Deepest directory nesting below `src/`.
pub const MAX_DEPTH: usize = 8;

/// A source tree read into memory: relative paths and contents, sorted by path.
#[derive(Debug)]
pub struct Sources {
    pub files: Vec<(PathBuf, Vec<u8>)>,
    pub hash: String,
}

/// Why a tree cannot be staged: the learner's doing, shown as a compile error.
#[derive(Debug, thiserror::Error)]
pub enum Rejected {
    #[error("{0} is a symbolic link; the grader builds regular files only, replace it with a copy")]
    Symlink(String),
    #[error("{0} is a {1}, not a regular file; remove it from src/")]
    Special(String, &'static str),
    #[error("{0} is missing; restore it (`git checkout -- {0}` or `{reset}`)", reset = crate::invoked::command("reset"))]
    Missing(String),
    #[error(
        "src/ holds more than {MAX_FILES} files or {MAX_BYTES} bytes; remove what the kata does not need"
    )]
    TooLarge,
    #[error("{0} is nested deeper than {MAX_DEPTH} directories")]
    TooDeep(String),
    #[error("failed to read {0}: {1}")]
    Unreadable(String, std::io::Error),
}

/// Reads a unit's sources: the `src/` directory holding `lib_rs`, or `lib_rs` alone when it is
/// not a crate's `src/lib.rs` (a decoy). `shown` is how paths are named in messages.
pub fn read(lib_rs: &Path, shown: &Path) -> Result<Sources, Rejected> {
    let mut files = Vec::new();
    let mut budget = MAX_BYTES;
    let is_src = lib_rs.file_name().is_some_and(|n| n == "lib.rs")
        && lib_rs.parent().and_then(Path::file_name).is_some_and(|n| n == "src");
    if is_src {
        let src = lib_rs.parent().expect("src/lib.rs has a parent");
        let shown_src = shown.parent().unwrap_or(shown);
        walk(src, shown_src, Path::new(""), 0, &mut files, &mut budget)?;
        if !files.iter().any(|(p, _)| p == Path::new("lib.rs")) {
            return Err(Rejected::Missing(shown.display().to_string()));
        }
    } else {
        let bytes = read_regular(lib_rs, shown, &mut budget)?;
        files.push((PathBuf::from("lib.rs"), bytes));
    }
    files.sort();
    let mut hasher = Sha256::new();
    for (path, bytes) in &files {
        let name = path.to_string_lossy();
        hasher.update((name.len() as u64).to_le_bytes());
        hasher.update(name.as_bytes());
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    }
    Ok(Sources { files, hash: hex(&hasher.finalize()) })
}

fn walk(
    dir: &Path,
    shown: &Path,
    rel: &Path,
    depth: usize,
    out: &mut Vec<(PathBuf, Vec<u8>)>,
    budget: &mut u64,
) -> Result<(), Rejected> {
    // `join("")` would add a trailing slash.
    let here = if rel.as_os_str().is_empty() { shown.to_path_buf() } else { shown.join(rel) };
    let meta = std::fs::symlink_metadata(dir);
    match meta {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Rejected::Missing(here.join("lib.rs").display().to_string()));
        }
        Err(e) => return Err(Rejected::Unreadable(here.display().to_string(), e)),
        Ok(m) if m.file_type().is_symlink() => {
            return Err(Rejected::Symlink(here.display().to_string()));
        }
        Ok(m) if !m.is_dir() => return Err(Rejected::Special(here.display().to_string(), "file")),
        Ok(_) => {}
    }
    if depth > MAX_DEPTH {
        return Err(Rejected::TooDeep(here.display().to_string()));
    }
    let entries =
        std::fs::read_dir(dir).map_err(|e| Rejected::Unreadable(here.display().to_string(), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Rejected::Unreadable(here.display().to_string(), e))?;
        let name = rel.join(entry.file_name());
        let path = entry.path();
        let file_type =
            entry.file_type().map_err(|e| Rejected::Unreadable(here.display().to_string(), e))?;
        let shown_path = shown.join(&name);
        if file_type.is_dir() {
            walk(&path, shown, &name, depth + 1, out, budget)?;
        } else {
            if out.len() >= MAX_FILES {
                return Err(Rejected::TooLarge);
            }
            out.push((name, read_regular(&path, &shown_path, budget)?));
        }
    }
    Ok(())
}

/// Reads a regular file without following a link or blocking on a FIFO, within `budget`.
fn read_regular(path: &Path, shown: &Path, budget: &mut u64) -> Result<Vec<u8>, Rejected> {
    let shown = || shown.display().to_string();
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
        .open(path);
    let file: File = match file {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(nix::libc::ELOOP) => {
            return Err(Rejected::Symlink(shown()));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // A dangling link is still a link.
            return Err(match std::fs::symlink_metadata(path) {
                Ok(m) if m.file_type().is_symlink() => Rejected::Symlink(shown()),
                _ => Rejected::Missing(shown()),
            });
        }
        Err(e) => return Err(Rejected::Unreadable(shown(), e)),
    };
    let file_type = file.metadata().map_err(|e| Rejected::Unreadable(shown(), e))?.file_type();
    if !file_type.is_file() {
        let kind = if file_type.is_fifo() {
            "FIFO"
        } else if file_type.is_char_device() || file_type.is_block_device() {
            "device"
        } else if file_type.is_socket() {
            "socket"
        } else {
            "directory"
        };
        return Err(Rejected::Special(shown(), kind));
    }
    let mut bytes = Vec::new();
    file.take(*budget + 1).read_to_end(&mut bytes).map_err(|e| Rejected::Unreadable(shown(), e))?;
    if bytes.len() as u64 > *budget {
        return Err(Rejected::TooLarge);
    }
    *budget -= bytes.len() as u64;
    Ok(bytes)
}

/// Writes `sources` into `dir` unless the copy there already has their hash; returns whether it
/// wrote. Each changed file is replaced by a rename and files no longer in `sources` are removed,
/// so two graders staging the same tree at once both leave a whole copy; the hash file is written
/// last, so an interrupted copy is redone next time.
pub fn write(sources: &Sources, dir: &Path) -> anyhow::Result<bool> {
    let stamp = dir.join(STAMP);
    if std::fs::read_to_string(&stamp).is_ok_and(|h| h == sources.hash) {
        return Ok(false);
    }
    let mut old = Vec::new();
    list(dir, dir, &mut old);
    for stale in old.iter().filter(|p| !sources.files.iter().any(|(f, _)| f == *p)) {
        let _ = std::fs::remove_file(dir.join(stale));
    }
    for (rel, bytes) in &sources.files {
        let path = dir.join(rel);
        if std::fs::read(&path).is_ok_and(|old| old == *bytes) {
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("failed to create {}", parent.display()))?;
        }
        crate::state::write_atomic(&path, bytes)?;
    }
    crate::state::write_atomic(&stamp, sources.hash.as_bytes())?;
    Ok(true)
}

const STAMP: &str = ".grader-hash";

/// Files below `dir` (relative to `base`), not following links, without the stamp.
fn list(base: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => list(base, &path, out),
            Ok(_) if entry.file_name() != STAMP => {
                out.push(path.strip_prefix(base).unwrap_or(&path).to_path_buf());
            }
            _ => {}
        }
    }
}

/// SHA-256 of a file's bytes, or `None` when it cannot be read.
pub fn hash_file(path: &Path) -> Option<String> {
    let mut file = File::open(path).ok()?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).ok()?;
    Some(hex(&hasher.finalize()))
}

/// SHA-256 of bytes, in hex.
pub fn hash_bytes(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_links_and_specials_and_hashes_content_only() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("lib.rs"), "pub fn f() {}").unwrap();
        let shown = Path::new("exercises/01_x/src/lib.rs");
        let first = read(&src.join("lib.rs"), shown).unwrap();

        // Same content, older mtime: same hash.
        let old = std::time::SystemTime::UNIX_EPOCH;
        File::options().write(true).open(src.join("lib.rs")).unwrap().set_modified(old).unwrap();
        assert_eq!(read(&src.join("lib.rs"), shown).unwrap().hash, first.hash);
        std::fs::write(src.join("lib.rs"), "pub fn g() {}").unwrap();
        assert_ne!(read(&src.join("lib.rs"), shown).unwrap().hash, first.hash);

        std::os::unix::fs::symlink(".", src.join("loop")).unwrap();
        let err = read(&src.join("lib.rs"), shown).unwrap_err().to_string();
        assert!(err.contains("exercises/01_x/src/loop is a symbolic link"), "{err}");
        std::fs::remove_file(src.join("loop")).unwrap();

        nix::unistd::mkfifo(&src.join("pipe"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let err = read(&src.join("lib.rs"), shown).unwrap_err().to_string();
        assert!(err.contains("src/pipe is a FIFO"), "{err}");
        std::fs::remove_file(src.join("pipe")).unwrap();

        std::fs::remove_file(src.join("lib.rs")).unwrap();
        let err = read(&src.join("lib.rs"), shown).unwrap_err().to_string();
        assert!(err.contains("exercises/01_x/src/lib.rs is missing"), "{err}");
    }

    #[test]
    fn rewrites_the_staged_copy_only_when_content_changes() {
        let dir = tempfile::tempdir().unwrap();
        let staged = dir.path().join("staged");
        let sources = |text: &str| Sources {
            files: vec![(PathBuf::from("lib.rs"), text.as_bytes().to_vec())],
            hash: hash_bytes(text.as_bytes()),
        };
        assert!(write(&sources("a"), &staged).unwrap());
        assert!(!write(&sources("a"), &staged).unwrap());
        std::fs::write(staged.join("extra.rs"), "").unwrap();
        assert!(write(&sources("b"), &staged).unwrap());
        assert_eq!(std::fs::read_to_string(staged.join("lib.rs")).unwrap(), "b");
        assert!(!staged.join("extra.rs").exists(), "a file no longer in src/ stays staged");
    }
}
