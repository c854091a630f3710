//! The output directory as an open descriptor: every file p2pe opens in it is
//! resolved by the kernel *beneath* that descriptor, so no symlink planted in
//! the directory (before or while we run) leads a read or write outside it.
//!
//! - Data files, and the parent of every directory created (then
//!   `mkdirat`): `openat2(2)` with `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS`
//!   (Linux ≥ 5.6): a path whose resolution leaves the directory fails with
//!   `EXDEV`. The kernel also refuses *absolute* symlinks that point back
//!   inside; those are re-resolved once by canonicalizing, and the canonical
//!   path is opened beneath the descriptor again (still kernel-checked).
//! - The resume record: a single name directly in the directory, written as a
//!   temp file that is unlinked first and created with
//!   `O_CREAT | O_EXCL | O_NOFOLLOW` (a planted symlink or file at the temp
//!   name is removed, never followed), then `renameat` over the record (rename
//!   replaces a symlink at the destination, it does not follow it). The record
//!   is read with `O_NOFOLLOW | O_NONBLOCK` and must be a regular file.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};

use super::error::StoreError;

/// Mode of files p2pe creates (before the umask).
const FILE_MODE: u32 = 0o644;
/// Mode of directories p2pe creates (before the umask).
const DIR_MODE: u32 = 0o755;

/// An open output directory.
#[derive(Debug)]
pub(crate) struct Dir {
    fd: OwnedFd,
    /// The canonical path of the directory (for messages and canonicalizing).
    path: PathBuf,
}

impl Dir {
    /// Open the canonical directory `path`.
    ///
    /// # Errors
    /// [`StoreError::Io`] when it cannot be opened as a directory.
    pub(crate) fn open(path: &Path) -> Result<Self, StoreError> {
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| StoreError::io(path, "open dir", e.into()))?;
        Ok(Self {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// Open the file at `rel` (relative, validated components) beneath the
    /// directory, read-only or read-write (`writable` also creates it).
    ///
    /// # Errors
    /// [`StoreError::PathEscapes`] when its resolution leaves the directory;
    /// otherwise the raw `io::Error` of the open (the caller classifies it).
    pub(crate) fn open_file(&self, rel: &Path, writable: bool) -> Result<File, OpenError> {
        let flags = if writable {
            OFlags::RDWR | OFlags::CREATE | OFlags::CLOEXEC
        } else {
            OFlags::RDONLY | OFlags::CLOEXEC
        };
        self.open_beneath(rel, flags)
    }

    /// Create the directory `rel` (its parent exists) beneath the directory:
    /// the parent is opened beneath the descriptor, then `mkdirat` in it.
    ///
    /// # Errors
    /// [`StoreError::PathEscapes`] when the parent's resolution leaves the
    /// directory; otherwise the raw `io::Error` (e.g. `EEXIST`).
    pub(crate) fn create_dir(&self, rel: &Path) -> Result<(), OpenError> {
        let Some(name) = rel.file_name() else {
            return Err(self.escapes(rel));
        };
        let parent = rel.parent().filter(|p| !p.as_os_str().is_empty());
        let parent_fd = match parent {
            Some(p) => {
                Some(self.open_beneath(p, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC)?)
            }
            None => None,
        };
        let at = parent_fd.as_ref().map_or(self.fd.as_fd(), |f| f.as_fd());
        rustix::fs::mkdirat(at, name, Mode::from(DIR_MODE)).map_err(|e| OpenError::Io(e.into()))
    }

    /// `openat2` beneath the descriptor, with one retry through the
    /// canonical path for an absolute symlink that stays inside.
    fn open_beneath(&self, rel: &Path, flags: OFlags) -> Result<File, OpenError> {
        match self.openat2(rel, flags) {
            Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
                // An absolute symlink (refused by RESOLVE_BENEATH even when it
                // points inside): canonicalize and retry with its real path.
                let real = self.canonical_inside(rel)?;
                self.openat2(&real, flags).map_err(|e| {
                    if e.raw_os_error() == Some(libc::EXDEV) {
                        self.escapes(rel)
                    } else {
                        OpenError::Io(e)
                    }
                })
            }
            other => other.map_err(OpenError::Io),
        }
    }

    fn openat2(&self, rel: &Path, flags: OFlags) -> io::Result<File> {
        let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
        // openat2 refuses a mode without O_CREAT (EINVAL), unlike openat.
        let mode = if flags.contains(OFlags::CREATE) {
            Mode::from(FILE_MODE)
        } else {
            Mode::empty()
        };
        rustix::fs::openat2(&self.fd, rel, flags, mode, resolve)
            .map(File::from)
            .map_err(io::Error::from)
    }

    /// `rel` re-expressed relative to the directory through its canonical
    /// path (the file itself may not exist yet: its parent is canonicalized).
    fn canonical_inside(&self, rel: &Path) -> Result<PathBuf, OpenError> {
        let full = self.path.join(rel);
        let real = match std::fs::canonicalize(&full) {
            Ok(real) => real,
            Err(_) => {
                let (Some(parent), Some(name)) = (full.parent(), full.file_name()) else {
                    return Err(self.escapes(rel));
                };
                std::fs::canonicalize(parent)
                    .map_err(|_| self.escapes(rel))?
                    .join(name)
            }
        };
        match real.strip_prefix(&self.path) {
            Ok(inside) if !inside.as_os_str().is_empty() => Ok(inside.to_path_buf()),
            _ => Err(self.escapes(rel)),
        }
    }

    fn escapes(&self, rel: &Path) -> OpenError {
        OpenError::Store(StoreError::PathEscapes {
            path: self.path.join(rel),
            root: self.path.clone(),
        })
    }

    /// Read the regular file `name` directly in the directory, not following
    /// a symlink; `Ok(None)` when absent. A symlink or non-regular file there
    /// is an error of kind `InvalidData`.
    pub(crate) fn read_plain(&self, name: &str) -> io::Result<Option<Vec<u8>>> {
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let fd = match rustix::fs::openat(&self.fd, name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => return Ok(None),
            Err(rustix::io::Errno::LOOP) => return Err(not_plain(name)),
            Err(e) => return Err(e.into()),
        };
        let mut file = File::from(fd);
        if !file.metadata()?.is_file() {
            return Err(not_plain(name));
        }
        let mut bytes = Vec::new();
        io::Read::read_to_end(&mut file, &mut bytes)?;
        Ok(Some(bytes))
    }

    /// Create `name` directly in the directory as a new, empty regular file:
    /// whatever was at that name (a stale temp file, a planted symlink) is
    /// unlinked first, and the create never follows a symlink.
    pub(crate) fn create_new(&self, name: &str) -> io::Result<File> {
        match rustix::fs::unlinkat(&self.fd, name, AtFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => {}
            Err(e) => return Err(e.into()),
        }
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        rustix::fs::openat(&self.fd, name, flags, Mode::from(FILE_MODE))
            .map(File::from)
            .map_err(io::Error::from)
    }

    /// Rename `from` over `to`, both directly in the directory.
    pub(crate) fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        rustix::fs::renameat(&self.fd, from, &self.fd, to).map_err(io::Error::from)
    }

    /// fsync the directory (makes a rename durable).
    pub(crate) fn sync(&self) -> io::Result<()> {
        rustix::fs::fsync(self.fd.as_fd()).map_err(io::Error::from)
    }

    /// The canonical path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

/// Why [`Dir::open_file`] failed.
#[derive(Debug)]
pub(crate) enum OpenError {
    /// Already classified (the path escapes).
    Store(StoreError),
    /// The open itself failed.
    Io(io::Error),
}

fn not_plain(name: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{name} is not a regular file (a symlink?): refusing to follow it"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn data_files_stay_beneath_even_through_symlinks() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let root_c = std::fs::canonicalize(root.path()).unwrap();
        let dir = Dir::open(&root_c).unwrap();
        // A directory symlink leading outside: refused, nothing created there.
        symlink(outside.path(), root.path().join("out")).unwrap();
        let err = dir.open_file(Path::new("out/f"), true).unwrap_err();
        assert!(
            matches!(err, OpenError::Store(StoreError::PathEscapes { .. })),
            "{err:?}"
        );
        // A file symlink leading outside, relative this time.
        std::fs::write(outside.path().join("victim"), b"keep").unwrap();
        let rel_target = Path::new("..")
            .join(outside.path().file_name().unwrap())
            .join("victim");
        symlink(&rel_target, root.path().join("fl")).unwrap();
        assert!(dir.open_file(Path::new("fl"), true).is_err());
        assert_eq!(
            std::fs::read(outside.path().join("victim")).unwrap(),
            b"keep"
        );
        assert!(!outside.path().join("f").exists());
        // Symlinks that stay inside (absolute or relative) are fine.
        std::fs::create_dir(root.path().join("real")).unwrap();
        symlink(root_c.join("real"), root.path().join("abs")).unwrap();
        symlink("real", root.path().join("rel")).unwrap();
        dir.open_file(Path::new("abs/a"), true).unwrap();
        dir.open_file(Path::new("rel/b"), true).unwrap();
        assert!(root.path().join("real/a").exists());
        assert!(root.path().join("real/b").exists());
        // Directories too: never created through a symlink leading outside.
        let err = dir.create_dir(Path::new("out/d")).unwrap_err();
        assert!(
            matches!(err, OpenError::Store(StoreError::PathEscapes { .. })),
            "{err:?}"
        );
        assert!(!outside.path().join("d").exists());
        dir.create_dir(Path::new("abs/d")).unwrap();
        dir.create_dir(Path::new("top")).unwrap();
        assert!(root.path().join("real/d").is_dir() && root.path().join("top").is_dir());
    }

    #[test]
    fn create_new_replaces_a_planted_symlink_without_following_it() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        symlink(&victim, root.path().join("tmp")).unwrap();
        let dir = Dir::open(&std::fs::canonicalize(root.path()).unwrap()).unwrap();
        let mut f = dir.create_new("tmp").unwrap();
        io::Write::write_all(&mut f, b"new").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        assert_eq!(std::fs::read(root.path().join("tmp")).unwrap(), b"new");
        // Reading never follows a symlink either.
        symlink(&victim, root.path().join("rec")).unwrap();
        let err = dir.read_plain("rec").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert_eq!(dir.read_plain("absent").unwrap(), None);
    }
}
