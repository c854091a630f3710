//! Thin system-call helpers: eventfd, pipes, raw descriptors.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use socket2::Socket;

/// Target pipe capacity for the splice strategy, before clamping to
/// `/proc/sys/fs/pipe-max-size` (1 MiB is the kernel's default maximum; a
/// larger pipe means fewer splice round trips per byte).
pub(crate) const PIPE_TARGET_BYTES: u32 = 1024 * 1024;

/// A non-blocking, close-on-exec eventfd, as a `File` for `write`.
pub(crate) fn eventfd() -> io::Result<File> {
    // SAFETY: eventfd(2) takes no pointers; the result is checked below.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor we exclusively own.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// Adds 1 to an eventfd's counter, waking a read posted on it.
pub(crate) fn eventfd_signal(efd: &File) -> io::Result<()> {
    match (&*efd).write(&1u64.to_ne_bytes()) {
        Ok(_) => Ok(()),
        // The counter is saturated: the reader is already due to wake.
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
        Err(e) => Err(e),
    }
}

/// One pipe of the splice pool.
#[derive(Debug)]
pub(crate) struct Pipe {
    pub(crate) read: OwnedFd,
    pub(crate) write: OwnedFd,
    /// Capacity in pipe buffers (one per page of capacity): a write takes
    /// at least one, a splice one per page or folio it spans.
    pub(crate) slots: u32,
    /// The page size in bytes.
    pub(crate) page_bytes: u32,
}

/// `/proc/sys/fs/pipe-max-size`, or the 1 MiB kernel default if unreadable.
fn pipe_max_bytes() -> u32 {
    std::fs::read_to_string("/proc/sys/fs/pipe-max-size")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(PIPE_TARGET_BYTES)
}

/// A close-on-exec pipe grown to `PIPE_TARGET_BYTES` clamped to the system
/// maximum.
pub(crate) fn pipe() -> io::Result<Pipe> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` is a valid, writable array of two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both are fresh descriptors we own.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let want = PIPE_TARGET_BYTES.min(pipe_max_bytes());
    // SAFETY: F_SETPIPE_SZ takes an integer argument, no pointers.
    let got = unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, want as libc::c_int) };
    let size_bytes = if got > 0 {
        got as u32
    } else {
        // Keep the default 64 KiB pipe if growing is refused (e.g. per-user
        // pipe quota exhausted).
        64 * 1024
    };
    // SAFETY: sysconf takes no pointers.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let page_bytes = u32::try_from(page).unwrap_or(4096).max(1);
    Ok(Pipe {
        read,
        write,
        slots: (size_bytes / page_bytes).max(1),
        page_bytes,
    })
}

/// Takes ownership of a descriptor returned by an accept completion.
///
/// # Safety
/// `fd` must be a fresh, valid socket descriptor owned by nobody else.
pub(crate) unsafe fn socket_from_raw(fd: RawFd) -> Socket {
    // SAFETY: guaranteed by the caller.
    unsafe { Socket::from_raw_fd(fd) }
}
