//! [`Region`]: bytes of a mapped file that the runtime sends without a
//! user-space copy.

use std::any::Any;
use std::fmt;
use std::os::fd::RawFd;
use std::sync::Arc;

/// `len_bytes` bytes of a file, queued with [`super::Ctx::send_region`] and
/// sent without a user-space copy: `Send` and `SendZc` hand the kernel a
/// pointer into a shared memory mapping of the file, `Splice` the file's
/// descriptor and offset (the same bytes, through the same page cache).
///
/// A region can only be made with the `unsafe` [`Region::from_raw_parts`].
/// Every engine module but `rt` and `store` forbids `unsafe` (`lib.rs`), and
/// the other crates deny it, so in the engine the only maker of regions is
/// [`crate::store::Storage::servable_regions`], which makes them of verified
/// pieces alone: "served ⇒ verified" holds by construction, not by a check
/// each caller must remember.
///
/// The runtime never makes a Rust reference to the bytes: it passes the
/// pointer (or descriptor) to the kernel, which reads them while the region is
/// queued (and, for `SendZc`, until the kernel's notification; the runtime
/// keeps the region until then).
#[derive(Clone)]
pub struct Region {
    /// Keeps the mapping and the descriptor alive (only held, never read).
    _owner: Arc<dyn Any + Send + Sync>,
    /// First byte in the mapping.
    ptr: *const u8,
    /// Descriptor of the mapped file, for `Splice`.
    pub(super) fd: RawFd,
    /// Offset of the first byte in the file, for `Splice`.
    pub(super) file_offset_bytes: u64,
    pub(super) len_bytes: u64,
}

// SAFETY: a `Region` only reads memory (through the kernel) that `owner`, which
// is `Send + Sync`, keeps mapped; no thread gets mutable access through it,
// and the maker promised (`from_raw_parts`) that nothing in the process
// writes those bytes while the region lives.
unsafe impl Send for Region {}
// SAFETY: as for `Send`: `&Region` exposes no access to the bytes at all.
unsafe impl Sync for Region {}

impl Region {
    /// A region of `len_bytes` bytes at `ptr`, which are bytes
    /// `file_offset_bytes..file_offset_bytes + len_bytes` of the file open as
    /// `fd`.
    ///
    /// # Safety
    /// - `ptr..ptr + len_bytes` lies inside a shared (`MAP_SHARED`) memory
    ///   mapping of the file open as `fd`, at file offset `file_offset_bytes`,
    ///   so the kernel reads the same bytes through either;
    /// - that mapping and that descriptor stay valid while `owner` lives (the
    ///   region holds it);
    /// - no thread of this process writes those bytes while the region or a
    ///   clone of it lives: what leaves is what was decided to be sent (for
    ///   the store: a verified piece, never written again).
    pub unsafe fn from_raw_parts(
        owner: Arc<dyn Any + Send + Sync>,
        ptr: *const u8,
        fd: RawFd,
        file_offset_bytes: u64,
        len_bytes: u64,
    ) -> Self {
        Region {
            _owner: owner,
            ptr,
            fd,
            file_offset_bytes,
            len_bytes,
        }
    }

    /// Length of the region in bytes.
    pub fn len_bytes(&self) -> u64 {
        self.len_bytes
    }

    /// Whether the region is empty.
    pub fn is_empty(&self) -> bool {
        self.len_bytes == 0
    }

    /// Address of byte `pos` of the region (`pos` at most
    /// [`Self::len_bytes`]), for an iovec handed to the kernel. Never
    /// dereferenced in user space.
    pub(super) fn addr(&self, pos: u64) -> *const u8 {
        debug_assert!(pos <= self.len_bytes);
        // Within the mapping for `pos <= len_bytes` (the maker's contract).
        // `wrapping_add` needs no `unsafe`: the address is only handed to the
        // kernel, never dereferenced here.
        self.ptr
            .wrapping_add(usize::try_from(pos).unwrap_or(usize::MAX))
    }
}

#[cfg(test)]
impl Region {
    /// The region's bytes as the gathered sends see them (through the
    /// mapping), for tests of its makers.
    pub(crate) fn mapped_bytes(&self) -> Vec<u8> {
        let len = usize::try_from(self.len_bytes).unwrap_or(usize::MAX);
        // SAFETY: the maker promised (`from_raw_parts`) that `ptr..ptr + len`
        // lies in a live mapping kept by `_owner` and is not written while the
        // region lives; the view is copied out at once.
        unsafe { std::slice::from_raw_parts(self.ptr, len) }.to_vec()
    }

    /// The region's bytes as `Splice` sees them (read from the descriptor at
    /// the file offset), for tests of its makers.
    pub(crate) fn file_bytes(&self) -> std::io::Result<Vec<u8>> {
        let mut buf = vec![0u8; usize::try_from(self.len_bytes).unwrap_or(usize::MAX)];
        // SAFETY: the maker promised the descriptor stays open while `_owner`
        // lives, which the region holds across this borrow.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(self.fd) };
        let n = rustix::io::pread(fd, &mut buf, self.file_offset_bytes)?;
        buf.truncate(n);
        Ok(buf)
    }
}

impl fmt::Debug for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Region")
            .field("fd", &self.fd)
            .field("file_offset_bytes", &self.file_offset_bytes)
            .field("len_bytes", &self.len_bytes)
            .finish_non_exhaustive()
    }
}
