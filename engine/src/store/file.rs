//! One torrent file on disk: opened, preallocated and memory-mapped.

use std::fs::{self, File};
use std::os::unix::fs::MetadataExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU32;
use std::sync::Mutex;

use memmap2::{MmapOptions, MmapRaw};

use super::dir::{Dir, OpenError};
use super::error::StoreError;

/// What identifies a file's content version, to notice changes made behind
/// our back: size, modification time, inode change time, and the inode.
///
/// The mtime alone is not enough: `utimensat(2)` (`touch -d`, `cp -p`, an
/// rsync) can put it back after the bytes changed. The ctime cannot be set
/// from user space and moves with every write and every `utimensat`. The
/// stamp is taken with `fstat` on our descriptor, so the inode (with its
/// device) only guards against a descriptor that no longer names the file we
/// verified; a file replaced by rename leaves our mapping on the old inode,
/// whose bytes are the verified ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    pub(crate) len_bytes: u64,
    pub(crate) mtime_ns: i128,
    pub(crate) ctime_ns: i128,
    pub(crate) dev: u64,
    pub(crate) ino: u64,
}

impl Stamp {
    fn of(meta: &fs::Metadata) -> Self {
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        Self {
            len_bytes: meta.len(),
            mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
            ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

/// A mapped torrent file.
///
/// `map` is `None` for zero-length files. The mapping is `MmapRaw` rather than
/// `MmapMut` because writes come through `&self` from several threads (one
/// writer per piece); `MmapRaw` hands out raw pointers from `&self`, and the
/// aliasing discipline is kept by [`super::Storage`].
#[derive(Debug)]
pub(crate) struct MappedFile {
    pub(crate) path: PathBuf,
    pub(crate) file: File,
    pub(crate) map: Option<MmapRaw>,
    pub(crate) len_bytes: u64,
    /// Stamp at the time the file was last known good; everything but the
    /// size is only compared once `pending` is 0 (our own writes move the
    /// mtime and ctime).
    pub(crate) stamp: Mutex<Stamp>,
    /// Pieces touching this file that are not yet verified.
    pub(crate) pending: AtomicU32,
    /// The file held no data before this open (new or empty): its pieces are
    /// missing without reading them, which spares a fresh multi-GB download
    /// from faulting in every zero page at open.
    pub(crate) fresh: bool,
    /// A BEP 47 padding file: `file` is an anonymous memory file of zeros
    /// (`memfd`), never written; nothing exists at `path`.
    pub(crate) padding: bool,
}

impl MappedFile {
    /// Open (and in `writable` mode create and preallocate) the file at `path`
    /// (below `dir`, opened beneath its descriptor) of `len_bytes`, then map it.
    ///
    /// # Errors
    /// [`StoreError::PathEscapes`] (its resolution leaves `dir`),
    /// [`StoreError::FileMissing`] (read-only open of a missing file),
    /// [`StoreError::FileSizeMismatch`] (existing file of another size: we
    /// never truncate), [`StoreError::DiskFull`] (ENOSPC while preallocating),
    /// [`StoreError::PermissionDenied`], [`StoreError::ReadOnlyFilesystem`],
    /// [`StoreError::Io`].
    pub(crate) fn open(
        dir: &Dir,
        path: PathBuf,
        len_bytes: u64,
        writable: bool,
    ) -> Result<Self, StoreError> {
        let rel = path.strip_prefix(dir.path()).unwrap_or(&path);
        let file = dir.open_file(rel, writable).map_err(|e| match e {
            OpenError::Store(e) => e,
            OpenError::Io(e) if e.kind() == std::io::ErrorKind::NotFound && !writable => {
                StoreError::FileMissing { path: path.clone() }
            }
            OpenError::Io(e) => StoreError::io(&path, "open", e),
        })?;
        let meta = file
            .metadata()
            .map_err(|e| StoreError::io(&path, "stat", e))?;
        if !meta.is_file() {
            return Err(StoreError::io(
                &path,
                "open",
                std::io::Error::other("not a regular file"),
            ));
        }
        let actual = meta.len();
        if actual > len_bytes || (!writable && actual != len_bytes) {
            return Err(StoreError::FileSizeMismatch {
                path,
                expected_bytes: len_bytes,
                actual_bytes: actual,
            });
        }
        if writable && len_bytes > 0 {
            preallocate(&file, &path, len_bytes, actual)?;
        }
        Self::mapped(path, file, len_bytes, writable, actual == 0, false)
    }

    /// A BEP 47 padding file of `len_bytes` zeros: an anonymous memory file
    /// (`memfd_create`, sparse: no page is allocated unless written, and it
    /// never is), mapped like a real one so hashing and serving read its
    /// zeros. Nothing is created at `path` (named in errors only).
    ///
    /// # Errors
    /// [`StoreError::Io`] when the memory file cannot be made or mapped.
    pub(crate) fn padding(
        path: PathBuf,
        len_bytes: u64,
        writable: bool,
    ) -> Result<Self, StoreError> {
        let file = memfd(&path, len_bytes)?;
        // Its content (zeros) is known without looking: fresh.
        Self::mapped(path, file, len_bytes, writable, true, true)
    }

    /// Maps the open `file` (none for an empty file) and stamps it.
    ///
    /// # Errors
    /// [`StoreError::Io`] when mapping or `fstat` fails.
    fn mapped(
        path: PathBuf,
        file: File,
        len_bytes: u64,
        writable: bool,
        fresh: bool,
        padding: bool,
    ) -> Result<Self, StoreError> {
        let map = if len_bytes == 0 {
            None
        } else {
            Some(map_file(&file, &path, len_bytes, writable)?)
        };
        let meta = file
            .metadata()
            .map_err(|e| StoreError::io(&path, "stat", e))?;
        Ok(Self {
            path,
            file,
            map,
            len_bytes,
            stamp: Mutex::new(Stamp::of(&meta)),
            pending: AtomicU32::new(0),
            fresh,
            padding,
        })
    }

    /// Current stamp from `fstat` on the open descriptor.
    ///
    /// # Errors
    /// [`StoreError::Io`] when `fstat` fails.
    pub(crate) fn current_stamp(&self) -> Result<Stamp, StoreError> {
        self.file
            .metadata()
            .map(|m| Stamp::of(&m))
            .map_err(|e| StoreError::io(&self.path, "stat", e))
    }
}

/// An anonymous memory file of `len_bytes` zeros (sparse), close-on-exec.
fn memfd(path: &Path, len_bytes: u64) -> Result<File, StoreError> {
    let err = |e| StoreError::io(path, "memfd_create", e);
    // SAFETY: the name is a NUL-terminated literal; the flags are valid.
    let fd = unsafe { libc::memfd_create(c"p2pe-padding".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(err(std::io::Error::last_os_error()));
    }
    // SAFETY: `fd` was just returned by memfd_create and is owned by nobody else.
    let file = unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    file.set_len(len_bytes).map_err(err)?;
    Ok(file)
}

/// Reserve all `len_bytes` with `posix_fallocate`, so ENOSPC surfaces now, as
/// a clear error, and not later as SIGBUS on a write into a sparse mapping.
fn preallocate(file: &File, path: &Path, len_bytes: u64, actual: u64) -> Result<(), StoreError> {
    let len = libc::off_t::try_from(len_bytes).map_err(|_| StoreError::FileSizeMismatch {
        path: path.to_path_buf(),
        expected_bytes: len_bytes,
        actual_bytes: actual,
    })?;
    // SAFETY: plain syscall on a descriptor we own; no memory is passed.
    // posix_fallocate returns the error number instead of setting errno.
    let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) };
    match rc {
        0 => Ok(()),
        libc::ENOSPC | libc::EFBIG => Err(StoreError::DiskFull {
            path: path.to_path_buf(),
            needed_bytes: len_bytes - actual,
        }),
        errno => Err(StoreError::io(
            path,
            "preallocate",
            std::io::Error::from_raw_os_error(errno),
        )),
    }
}

fn map_file(
    file: &File,
    path: &Path,
    len_bytes: u64,
    writable: bool,
) -> Result<MmapRaw, StoreError> {
    let len = usize::try_from(len_bytes).map_err(|_| {
        StoreError::io(
            path,
            "mmap",
            std::io::Error::other("file larger than the address space"),
        )
    })?;
    let mut opts = MmapOptions::new();
    opts.len(len);
    let map = if writable {
        opts.map_raw(file)
    } else {
        opts.map_raw_read_only(file)
    };
    map.map_err(|e| StoreError::io(path, "mmap", e))
}
