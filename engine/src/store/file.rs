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
    /// never truncate), [`StoreError::DiskFull`] (ENOSPC while preallocating, or too little
    /// room on tmpfs, see `preallocate`),
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
///
/// Except for a file this open created (`actual == 0`) on tmpfs: there
/// `posix_fallocate` allocates *and zero-fills* every page (~0.3 CPU-s/GiB,
/// more than the rest of a loopback get; `perf/node-linerate.md`), pages the
/// download then overwrites. Such a file is only extended (sparse) after
/// `fstatvfs` says the file system has room for it ([`StoreError::DiskFull`]
/// otherwise, as with `posix_fallocate`); every write into it is a `pwrite`
/// (`store::io`), which allocates its pages and reports a later ENOSPC (the
/// space taken by someone else meanwhile) as [`StoreError::DiskFull`], never
/// a SIGBUS; and its pieces are never read before they are written (the file
/// is `fresh`: `MappedFile::fresh`). An existing file keeps
/// `posix_fallocate`, which fills its holes, so a restart never faults on one.
fn preallocate(file: &File, path: &Path, len_bytes: u64, actual: u64) -> Result<(), StoreError> {
    let len = libc::off_t::try_from(len_bytes).map_err(|_| StoreError::FileSizeMismatch {
        path: path.to_path_buf(),
        expected_bytes: len_bytes,
        actual_bytes: actual,
    })?;
    let disk_full = || StoreError::DiskFull {
        path: path.to_path_buf(),
        needed_bytes: len_bytes - actual,
    };
    if actual == 0 && on_tmpfs(file) {
        if let Some(free) = free_bytes(file) {
            if free < len_bytes {
                return Err(disk_full());
            }
        }
        return file
            .set_len(len_bytes)
            .map_err(|e| StoreError::io(path, "extend", e));
    }
    // SAFETY: plain syscall on a descriptor we own; no memory is passed.
    // posix_fallocate returns the error number instead of setting errno.
    let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) };
    match rc {
        0 => Ok(()),
        libc::ENOSPC | libc::EFBIG => Err(disk_full()),
        errno => Err(StoreError::io(
            path,
            "preallocate",
            std::io::Error::from_raw_os_error(errno),
        )),
    }
}

/// Whether `file` lives on tmpfs (`fstatfs` magic `TMPFS_MAGIC`, statfs(2)).
fn on_tmpfs(file: &File) -> bool {
    let mut st = std::mem::MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: `st` is a valid, writable statfs buffer; the descriptor is ours.
    let rc = unsafe { libc::fstatfs(file.as_raw_fd(), st.as_mut_ptr()) };
    // SAFETY: fstatfs filled it (rc == 0); zeroed memory is a valid statfs anyway.
    rc == 0 && unsafe { st.assume_init() }.f_type == libc::TMPFS_MAGIC
}

/// Bytes an unprivileged writer may still allocate on `file`'s file system
/// (`fstatvfs`: `f_bavail × f_frsize`), `None` if unknown.
fn free_bytes(file: &File) -> Option<u64> {
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: as in `on_tmpfs`.
    let rc = unsafe { libc::fstatvfs(file.as_raw_fd(), st.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: filled by fstatvfs (rc == 0).
    let st = unsafe { st.assume_init() };
    Some(st.f_bavail.saturating_mul(st.f_frsize))
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
