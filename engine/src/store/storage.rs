//! [`Storage`]: opening an output directory and the resume record.

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::arrival::Arrivals;
use super::dir::Dir;
use super::error::StoreError;
use super::file::MappedFile;
use super::layout::StorageLayout;
use super::path::resolve_inside;
use super::resume::{self, RecordKey, RecordRejected};
use crate::base::InfoHash;
use crate::base::{AtomicBitfield, PieceIndex};

/// How [`Storage::open`] treats the output directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Download: create the directory and missing files, preallocate them,
    /// map them read-write. Existing data is checked and kept.
    Create,
    /// Seed existing data: every file must exist at its exact size; files are
    /// opened and mapped read-only, nothing is created or written: an existing
    /// resume record is read, but [`Storage::flush_resume`] writes one only
    /// once enabled by [`Storage::set_write_resume`] (issue 11: a seed treats
    /// its directory as read-only).
    Seed,
}

/// When the serve path looks for files changed behind our back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServeCheck {
    /// `fstat` every file a block touches on every read (one syscall per file
    /// per block; see perf/store.md for its cost). The default.
    EveryRead,
    /// Only when the runtime calls [`Storage::check_files`] (e.g. once a second).
    Periodic,
}

/// What happened to the resume record at open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordStatus {
    /// No record in the directory.
    Absent,
    /// The record was used; it listed this many pieces.
    Used {
        /// Entries in the record.
        entries: u32,
    },
    /// A record was found and ignored as a whole.
    Rejected(RecordRejected),
}

/// Outcome of checking existing data at [`Storage::open`]. Every piece is
/// counted in exactly one of the four counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResumeReport {
    /// Pieces in the resume record whose bytes still match: the record's xxh3
    /// for a SHA-1 torrent (no SHA-1 needed), the piece's BLAKE3 itself for a
    /// BLAKE3 torrent (see `store::resume`).
    pub fast_verified: u32,
    /// Pieces verified by their piece hash, SHA-1 or BLAKE3 (see
    /// [`crate::base::PieceHashes`]): not in the record, or the record disagreed.
    pub hash_verified: u32,
    /// Pieces with no data yet (all zero bytes, not the piece's content).
    pub missing: u32,
    /// Pieces with data that does not match its piece hash (in flight when the
    /// last process stopped, or corrupted); treated like missing.
    pub failed: u32,
    /// The resume record's fate.
    pub record: RecordStatus,
}

impl ResumeReport {
    /// Pieces verified at open.
    pub fn verified(&self) -> u32 {
        self.fast_verified + self.hash_verified
    }
}

/// How the pieces verified since [`Storage::open`] were hashed (see
/// `store::arrival`): pieces counted at open are not included.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VerifyCounts {
    /// Verified from the digest computed as their bytes were written in
    /// order (no read-back).
    pub on_arrival: u64,
    /// Verified by reading the piece back from storage (written out of
    /// order, or more pieces in flight than the arrival bound).
    pub read_back: u64,
}

/// Piece storage for one torrent below one output directory; see the module docs
/// ([`crate::store`]) for the invariants. `Sync`: share it with `Arc`.
#[derive(Debug)]
pub struct Storage {
    pub(crate) root: PathBuf,
    /// `root`, open: every file below it is opened beneath this descriptor.
    pub(crate) dir: Dir,
    pub(crate) layout: StorageLayout,
    pub(crate) info_hash: InfoHash,
    pub(crate) mode: OpenMode,
    pub(crate) serve_check: ServeCheck,
    /// The only mappings of the torrent's files in the process; shared with
    /// the runtime's send regions (`Storage::servable_regions`), which keep a
    /// file mapped while they are queued.
    pub(crate) files: Vec<Arc<MappedFile>>,
    /// Piece hash (SHA-1 or BLAKE3) matched; only these are served.
    pub(crate) verified: AtomicBitfield,
    /// A thread is writing or verifying the piece.
    pub(crate) claims: AtomicBitfield,
    /// Dropped after a change on disk; never written again in this instance.
    pub(crate) lost: AtomicBitfield,
    /// Verified, but a file under it changed: re-verify before serving.
    pub(crate) recheck: AtomicBitfield,
    /// Verified since the last msync.
    pub(crate) dirty: AtomicBitfield,
    /// xxh3-64 of each verified piece (meaningless for the others), computed
    /// in the same pass as its piece hash: on arrival or in the read-back.
    pub(crate) xxh3: Vec<AtomicU64>,
    /// Hash-on-arrival states of pieces being written (`store::arrival`).
    pub(crate) arrivals: Arrivals,
    /// Serializes [`Storage::flush_resume`].
    pub(crate) flush_lock: Mutex<()>,
    /// [`Storage::flush_resume`] writes the record (default: in
    /// [`OpenMode::Create`] only).
    pub(crate) write_resume: AtomicBool,
}

impl Storage {
    /// Open `dir` for the torrent `layout` with info-hash `info_hash` (BEP 3),
    /// check what is already there, and report it.
    ///
    /// Existing data is verified: pieces listed in a valid resume record by
    /// xxh3, the rest by the layout's piece hash, SHA-1 or BLAKE3 (all-zero
    /// pieces are counted missing without hashing). Runs on up to `available_parallelism` (≤ 8) threads.
    ///
    /// # Errors
    /// [`StoreError::PathEscapes`], [`StoreError::DiskFull`],
    /// [`StoreError::PermissionDenied`], [`StoreError::ReadOnlyFilesystem`],
    /// [`StoreError::FileMissing`] and [`StoreError::FileSizeMismatch`] (seed
    /// mode), [`StoreError::InvalidLayout`] when two torrent paths resolve to the
    /// same file, [`StoreError::Io`]. A bad resume record is not an error.
    pub fn open(
        dir: &Path,
        layout: StorageLayout,
        info_hash: InfoHash,
        mode: OpenMode,
    ) -> Result<(Self, ResumeReport), StoreError> {
        let writable = mode == OpenMode::Create;
        if writable {
            fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, "create dir", e))?;
        }
        let root = fs::canonicalize(dir).map_err(|e| StoreError::io(dir, "open dir", e))?;
        let root_dir = Dir::open(&root)?;
        let files = open_files(&root_dir, &layout, writable)?;
        let n = layout.piece_count();
        let storage = Self {
            root,
            dir: root_dir,
            info_hash,
            mode,
            serve_check: ServeCheck::EveryRead,
            files,
            verified: AtomicBitfield::new(n),
            claims: AtomicBitfield::new(n),
            lost: AtomicBitfield::new(n),
            recheck: AtomicBitfield::new(n),
            dirty: AtomicBitfield::new(n),
            xxh3: (0..n).map(|_| AtomicU64::new(0)).collect(),
            arrivals: Arrivals::new(n, layout.piece_hashes().kind()),
            flush_lock: Mutex::new(()),
            write_resume: AtomicBool::new(writable),
            layout,
        };
        let (record_hashes, record) = storage.load_record()?;
        let report = storage.initial_check(&record_hashes, record)?;
        storage.init_pending();
        Ok((storage, report))
    }

    /// Choose when the serve path checks files for outside changes
    /// (default [`ServeCheck::EveryRead`]).
    pub fn set_serve_check(&mut self, serve_check: ServeCheck) {
        self.serve_check = serve_check;
    }

    /// The layout this storage was opened with.
    pub fn layout(&self) -> &StorageLayout {
        &self.layout
    }

    /// The canonical output directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Number of pieces.
    pub fn piece_count(&self) -> u32 {
        self.layout.piece_count()
    }

    /// How the pieces verified since open were hashed: on arrival or read back.
    pub fn verify_counts(&self) -> VerifyCounts {
        VerifyCounts {
            on_arrival: self.arrivals.on_arrival.load(Ordering::Relaxed),
            read_back: self.arrivals.read_back.load(Ordering::Relaxed),
        }
    }

    /// Whether piece `piece` is verified (servable). `false` out of range.
    pub fn is_verified(&self, piece: PieceIndex) -> bool {
        self.verified.get(piece)
    }

    /// Whether piece `piece` was dropped after a change on disk.
    pub fn is_lost(&self, piece: PieceIndex) -> bool {
        self.lost.get(piece)
    }

    /// One flag per piece: verified (BEP 3 bitfield order).
    pub fn verified(&self) -> Vec<bool> {
        self.verified.to_vec()
    }

    /// Number of verified pieces.
    pub fn verified_count(&self) -> u32 {
        self.verified.count_ones()
    }

    /// Whether every piece is verified.
    pub fn is_complete(&self) -> bool {
        self.verified_count() == self.piece_count()
    }

    /// Whether [`Storage::flush_resume`] writes the resume record into the
    /// directory. On by default in [`OpenMode::Create`], off in
    /// [`OpenMode::Seed`] (where the directory is treated as read-only).
    pub fn set_write_resume(&self, on: bool) {
        self.write_resume.store(on, Ordering::Release);
    }

    /// Make every verified piece durable (msync of the pieces verified since
    /// the last flush), then atomically replace the resume record with the
    /// verified pieces and their xxh3. Only pieces whose data was flushed are
    /// listed, so a crash after this call loses nothing it lists. Does
    /// nothing while record writes are off ([`Storage::set_write_resume`]).
    ///
    /// # Errors
    /// [`StoreError::Io`] from msync (the pieces stay dirty for the next try);
    /// [`StoreError::DiskFull`], [`StoreError::PermissionDenied`],
    /// [`StoreError::ReadOnlyFilesystem`], [`StoreError::Io`] writing the record.
    pub fn flush_resume(&self) -> Result<(), StoreError> {
        self.write_record(true)
    }

    /// The flush at exit without waiting for writeback (issue 12 item 3): starts
    /// the writeback of every verified piece not yet durable (`msync(MS_ASYNC)`),
    /// and replaces the resume record with the pieces that *are* durable (flushed
    /// by an earlier [`Storage::flush_resume`]). The rest are in the page cache,
    /// intact for any reader and for a restart; only after a crash of the machine
    /// before the kernel's writeback would they be hashed again (they are not
    /// listed, so never trusted unchecked). Does nothing while record writes are
    /// off.
    ///
    /// # Errors
    /// As [`Storage::flush_resume`], writing the record.
    pub fn flush_resume_nowait(&self) -> Result<(), StoreError> {
        self.write_record(false)
    }

    /// Writes the record; `wait`: msync dirty verified pieces first and list them,
    /// else start their writeback and leave them out.
    fn write_record(&self, wait: bool) -> Result<(), StoreError> {
        if !self.write_resume.load(Ordering::Acquire) {
            return Ok(());
        }
        let _guard = self
            .flush_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let snapshot = self.verified.to_vec();
        let mut entries = Vec::new();
        for (piece, verified) in (0u32..).map(PieceIndex).zip(snapshot) {
            if !verified {
                continue;
            }
            if !wait {
                if self.dirty.get(piece) {
                    // Best effort: the piece is left out of the record either way.
                    let _ = self.writeback_piece(piece);
                    continue;
                }
            } else if self.dirty.clear(piece) {
                if let Err(e) = self.msync_piece(piece) {
                    self.dirty.try_set(piece);
                    return Err(e);
                }
            }
            let xxh3 = self
                .xxh3
                .get(piece.0 as usize)
                .map(|h| h.load(Ordering::Acquire));
            entries.push((piece, xxh3.unwrap_or(0)));
        }
        resume::write_atomic(
            &self.dir,
            &self.info_hash,
            &resume::encode(&self.record_key(), &entries),
        )
    }

    /// Starts the writeback of `piece`'s bytes without waiting (`msync(MS_ASYNC)`).
    fn writeback_piece(&self, piece: PieceIndex) -> Result<(), StoreError> {
        if self.mode == OpenMode::Seed {
            return Ok(());
        }
        for seg in self.layout.piece_segments(piece)? {
            let Some(f) = self.files.get(seg.file_index) else {
                continue;
            };
            if let Some(map) = &f.map {
                map.flush_async_range(seg.file_offset_bytes as usize, seg.len_bytes as usize)
                    .map_err(|e| StoreError::io(&f.path, "msync", e))?;
            }
        }
        Ok(())
    }

    fn msync_piece(&self, piece: PieceIndex) -> Result<(), StoreError> {
        if self.mode == OpenMode::Seed {
            return Ok(()); // read-only mappings are never dirty
        }
        for seg in self.layout.piece_segments(piece)? {
            let Some(f) = self.files.get(seg.file_index) else {
                continue;
            };
            if let Some(map) = &f.map {
                // Fits usize: inside a mapping whose length is a usize.
                map.flush_range(seg.file_offset_bytes as usize, seg.len_bytes as usize)
                    .map_err(|e| StoreError::io(&f.path, "msync", e))?;
            }
        }
        Ok(())
    }

    pub(crate) fn record_key(&self) -> RecordKey {
        RecordKey {
            info_hash: self.info_hash,
            piece_len_bytes: self.layout.piece_len_bytes(),
            total_len_bytes: self.layout.total_len_bytes(),
            piece_count: self.layout.piece_count(),
        }
    }

    /// Read and decode the record: per-piece xxh3 from it, and its status.
    fn load_record(&self) -> Result<(Vec<Option<u64>>, RecordStatus), StoreError> {
        let mut hashes = vec![None; self.piece_count() as usize];
        let bytes = match resume::read(&self.dir, &self.info_hash)? {
            None => return Ok((hashes, RecordStatus::Absent)),
            Some(Err(why)) => return Ok((hashes, RecordStatus::Rejected(why))),
            Some(Ok(bytes)) => bytes,
        };
        match resume::decode(&bytes, &self.record_key()) {
            Ok(entries) => {
                for (piece, h) in &entries {
                    if let Some(slot) = hashes.get_mut(piece.0 as usize) {
                        *slot = Some(*h);
                    }
                }
                // Fits: at most one entry per piece was accepted by decode's length check.
                let entries = u32::try_from(entries.len()).unwrap_or(u32::MAX);
                Ok((hashes, RecordStatus::Used { entries }))
            }
            Err(why) => Ok((hashes, RecordStatus::Rejected(why))),
        }
    }

    /// Count, per file, the pieces touching it that are not verified.
    fn init_pending(&self) {
        for (i, f) in self.files.iter().enumerate() {
            let pending = self
                .layout
                .pieces_of_file(i)
                .filter(|&p| !self.verified.get(p))
                .count();
            f.pending.store(
                u32::try_from(pending).unwrap_or(u32::MAX),
                Ordering::Release,
            );
        }
    }
}

/// Resolve, open and map every file of `layout` below `root` (each opened
/// beneath the directory's descriptor, see `store::dir`).
fn open_files(
    root: &Dir,
    layout: &StorageLayout,
    writable: bool,
) -> Result<Vec<Arc<MappedFile>>, StoreError> {
    let mut files = Vec::with_capacity(layout.file_count());
    let mut seen = HashSet::new();
    for spec in layout.files() {
        if spec.padding {
            // BEP 47: never created, never required; zeros from memory.
            let label = spec
                .path_components
                .iter()
                .fold(root.path().to_path_buf(), |p, c| p.join(c));
            files.push(Arc::new(MappedFile::padding(
                label,
                spec.len_bytes,
                writable,
            )?));
            continue;
        }
        let path = resolve_inside(root, &spec.path_components, writable)?;
        let f = MappedFile::open(root, path, spec.len_bytes, writable)?;
        // Two torrent paths must not reach one file (through an inside symlink):
        // writes to distinct pieces would then alias the same bytes.
        let meta = f
            .file
            .metadata()
            .map_err(|e| StoreError::io(&f.path, "stat", e))?;
        if !seen.insert((meta.dev(), meta.ino())) {
            return Err(StoreError::InvalidLayout(format!(
                "{} is the same file on disk as another torrent path",
                f.path.display()
            )));
        }
        files.push(Arc::new(f));
    }
    Ok(files)
}
