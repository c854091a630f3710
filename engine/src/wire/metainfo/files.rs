//! The file table: path validation and each file's offset in the payload (BEP 3).

use super::MetainfoError;
use crate::base::FileSpec;

/// How the payload is laid out, as given to [`super::Info::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// One file named by the torrent's `name` (BEP 3 `length`).
    SingleFile {
        /// The file's length in bytes.
        len_bytes: u64,
    },
    /// A directory named by the torrent's `name` (BEP 3 `files`), in payload order.
    MultiFile(Vec<FileSpec>),
}

/// One file of the validated file table: its [`FileSpec`] with the path below the
/// download directory, and its offset in the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    spec: FileSpec,
    offset_bytes: u64,
}

impl FileEntry {
    /// The file as the store takes it ([`crate::store::StorageLayout::new`]): path
    /// relative to the download directory, `[name]` for a single-file torrent,
    /// `[name, dir.., file]` for multi-file.
    pub fn spec(&self) -> &FileSpec {
        &self.spec
    }

    /// Path relative to the download directory: `[name]` for a single-file
    /// torrent, `[name, dir.., file]` for multi-file. Every component is safe
    /// (see the module docs of [`super`]).
    pub fn path_components(&self) -> &[String] {
        &self.spec.path_components
    }

    /// The path joined with `/`, for display.
    pub fn path(&self) -> String {
        self.spec.path_components.join("/")
    }

    /// Offset of the file's first byte in the concatenated payload, in bytes.
    pub fn offset_bytes(&self) -> u64 {
        self.offset_bytes
    }

    /// The file's length in bytes (may be 0).
    pub fn len_bytes(&self) -> u64 {
        self.spec.len_bytes
    }

    /// Whether this is a BEP 47 padding file: all zeros, part of the piece
    /// data but not to be written to disk. Padding paths are exempt from the
    /// uniqueness check (libtorrent names them `.pad/<len>`, so they repeat).
    pub fn is_padding(&self) -> bool {
        self.spec.padding
    }
}

/// Checks one path component (or the torrent `name`).
///
/// # Errors
/// [`MetainfoError::BadPathComponent`] if it is empty, `.` or `..`, or holds
/// `/`, `\` or NUL; [`MetainfoError::NotUtf8`] if it is not UTF-8.
pub(super) fn check_component(component: &[u8]) -> Result<&str, MetainfoError> {
    let text = std::str::from_utf8(component).map_err(|_| MetainfoError::NotUtf8("path"))?;
    let reason = if text.is_empty() {
        Some("empty")
    } else if text == "." || text == ".." {
        Some("`.` and `..` are refused (path traversal)")
    } else if text.contains(['/', '\\']) {
        Some("holds a path separator")
    } else if text.contains('\0') {
        Some("holds NUL")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(MetainfoError::BadPathComponent {
            component: text.to_owned(),
            reason,
        }),
        None => Ok(text),
    }
}

/// Builds the file table of `layout` below `name`, and the total length.
///
/// # Errors
/// [`MetainfoError::Empty`], [`MetainfoError::EmptyPath`],
/// [`MetainfoError::BadPathComponent`], [`MetainfoError::NotUtf8`],
/// [`MetainfoError::TotalLenOverflow`], [`MetainfoError::DuplicatePath`],
/// [`MetainfoError::PathConflict`].
pub(super) fn file_table(
    name: &str,
    layout: Layout,
) -> Result<(Vec<FileEntry>, u64), MetainfoError> {
    let specs = match layout {
        Layout::SingleFile { len_bytes } => {
            let entry = FileEntry {
                spec: FileSpec {
                    path_components: vec![name.to_owned()],
                    len_bytes,
                    padding: false,
                },
                offset_bytes: 0,
            };
            if len_bytes == 0 {
                return Err(MetainfoError::Empty);
            }
            return Ok((vec![entry], len_bytes));
        }
        Layout::MultiFile(specs) => specs,
    };
    let mut files = Vec::with_capacity(specs.len());
    let mut offset_bytes = 0_u64;
    for spec in specs {
        if spec.path_components.is_empty() {
            return Err(MetainfoError::EmptyPath);
        }
        let mut path_components = Vec::with_capacity(spec.path_components.len() + 1);
        path_components.push(name.to_owned());
        for component in spec.path_components {
            check_component(component.as_bytes())?;
            path_components.push(component);
        }
        files.push(FileEntry {
            spec: FileSpec {
                path_components,
                len_bytes: spec.len_bytes,
                padding: spec.padding,
            },
            offset_bytes,
        });
        offset_bytes = offset_bytes
            .checked_add(spec.len_bytes)
            .ok_or(MetainfoError::TotalLenOverflow)?;
    }
    if offset_bytes == 0 {
        return Err(MetainfoError::Empty);
    }
    check_unique(&files)?;
    Ok((files, offset_bytes))
}

/// Refuses duplicate paths and a file that is also a directory of another
/// (padding files excepted: they are never written).
///
/// In sorted order, every path that has `p` as a prefix directly follows `p`,
/// so checking neighbours is enough.
fn check_unique(files: &[FileEntry]) -> Result<(), MetainfoError> {
    let mut paths: Vec<&[String]> = files
        .iter()
        .filter(|f| !f.spec.padding)
        .map(|f| f.path_components())
        .collect();
    paths.sort_unstable();
    for pair in paths.windows(2) {
        let [a, b] = pair else { continue };
        if a == b {
            return Err(MetainfoError::DuplicatePath(a.join("/")));
        }
        if b.starts_with(a) {
            return Err(MetainfoError::PathConflict {
                file: a.join("/"),
                other: b.join("/"),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(path: &[&str], len_bytes: u64) -> FileSpec {
        FileSpec {
            path_components: path.iter().map(|s| s.to_string()).collect(),
            len_bytes,
            padding: false,
        }
    }

    #[test]
    fn offsets_are_back_to_back() {
        let layout =
            Layout::MultiFile(vec![spec(&["a"], 3), spec(&["d", "b"], 0), spec(&["c"], 5)]);
        let (files, total) = file_table("top", layout).unwrap();
        assert_eq!(total, 8);
        let offsets: Vec<u64> = files.iter().map(FileEntry::offset_bytes).collect();
        assert_eq!(offsets, [0, 3, 3]);
        assert_eq!(files[1].path(), "top/d/b");
    }

    #[test]
    fn bad_components_are_refused() {
        for bad in ["", ".", "..", "a/b", "a\\b", "a\0b"] {
            let layout = Layout::MultiFile(vec![spec(&["ok", bad], 1)]);
            assert!(
                matches!(
                    file_table("top", layout),
                    Err(MetainfoError::BadPathComponent { .. })
                ),
                "{bad:?}"
            );
        }
        assert_eq!(
            check_component(b"\xff"),
            Err(MetainfoError::NotUtf8("path"))
        );
    }

    #[test]
    fn duplicates_and_conflicts_are_refused() {
        let dup = Layout::MultiFile(vec![
            spec(&["a", "b"], 1),
            spec(&["c"], 1),
            spec(&["a", "b"], 1),
        ]);
        assert_eq!(
            file_table("t", dup),
            Err(MetainfoError::DuplicatePath("t/a/b".into()))
        );
        let conflict = Layout::MultiFile(vec![spec(&["a", "b", "c"], 1), spec(&["a", "b"], 1)]);
        assert!(matches!(
            file_table("t", conflict),
            Err(MetainfoError::PathConflict { .. })
        ));
        // A shared prefix of a component is not a conflict.
        let fine = Layout::MultiFile(vec![spec(&["a"], 1), spec(&["ab", "c"], 1)]);
        assert!(file_table("t", fine).is_ok());
    }

    #[test]
    fn empty_and_overflow_are_refused() {
        assert_eq!(
            file_table("t", Layout::MultiFile(vec![])),
            Err(MetainfoError::Empty)
        );
        assert_eq!(
            file_table("t", Layout::SingleFile { len_bytes: 0 }),
            Err(MetainfoError::Empty)
        );
        let empty_path = Layout::MultiFile(vec![spec(&[], 1)]);
        assert_eq!(file_table("t", empty_path), Err(MetainfoError::EmptyPath));
        let huge = Layout::MultiFile(vec![spec(&["a"], u64::MAX), spec(&["b"], 1)]);
        assert_eq!(file_table("t", huge), Err(MetainfoError::TotalLenOverflow));
    }
}
