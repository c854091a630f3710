//! One file of a torrent's payload, as the metainfo lists it and the store lays it out.

/// One file of a torrent (BEP 3 `info.files` entry; BEP 47 padding files).
///
/// The same value describes the file to the metainfo codec and to the store; only the root
/// of `path_components` differs by use:
/// - in [`crate::wire::metainfo::Layout::MultiFile`] it is below the torrent's top
///   directory (BEP 3 `path`, without the torrent's `name`);
/// - in [`crate::store::StorageLayout::new`] it is below the output directory: `[name]`
///   for a single-file torrent, `[name, dir.., file]` for a multi-file one (as
///   [`crate::wire::metainfo::FileEntry::spec`] gives it).
///
/// Both check every component (no empty, `.`, `..`, separators or NUL) before use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSpec {
    /// Path, one component per element (see the type docs for its root).
    pub path_components: Vec<String>,
    /// The file's length in bytes (0 is legal).
    pub len_bytes: u64,
    /// A BEP 47 padding file (`attr` holds `p`): zeros that align the next file to a piece
    /// boundary; part of the pieces but never written to disk nor required there. Exempt
    /// from the path uniqueness checks (libtorrent names them `.pad/<len>`, so they repeat).
    pub padding: bool,
}
