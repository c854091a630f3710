//! Walking the input: a single file, or a directory tree in sorted order.
//!
//! Symlinks are followed (a model folder is often a tree of links into a
//! cache); a symlink loop, a broken link, a special file (FIFO, socket,
//! device) or a non-UTF-8 name is an error, never silently skipped. Empty
//! directories cannot be expressed in BEP 3 and are reported on stderr.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use p2pe::wire::metainfo::{FileSpec, Layout};

/// One input file, placed in the concatenated payload.
#[derive(Debug, Clone)]
pub(super) struct SourceFile {
    /// Where to read it.
    pub path: PathBuf,
    /// Path components below the torrent's top directory (empty for a single file).
    pub components: Vec<String>,
    /// Offset of its first byte in the payload, in bytes.
    pub offset_bytes: u64,
    /// Its length in bytes, as seen when walking.
    pub len_bytes: u64,
}

/// The walked input.
#[derive(Debug)]
pub(super) struct Source {
    /// The torrent name: the file's or directory's own name.
    pub name: String,
    /// Files in payload order.
    pub files: Vec<SourceFile>,
    /// Whether the input was a directory.
    pub multi_file: bool,
}

impl Source {
    /// Sum of the file lengths in bytes.
    pub(super) fn total_len_bytes(&self) -> u64 {
        self.files
            .last()
            .map_or(0, |f| f.offset_bytes + f.len_bytes)
    }

    /// The layout for [`p2pe::wire::metainfo::Info::new`].
    pub(super) fn layout(&self) -> Layout {
        if self.multi_file {
            Layout::MultiFile(
                self.files
                    .iter()
                    .map(|f| FileSpec {
                        path_components: f.components.clone(),
                        len_bytes: f.len_bytes,
                        padding: false,
                    })
                    .collect(),
            )
        } else {
            Layout::SingleFile {
                len_bytes: self.total_len_bytes(),
            }
        }
    }
}

fn utf8_name(name: Option<&std::ffi::OsStr>, path: &Path) -> anyhow::Result<String> {
    let name = name.with_context(|| format!("{}: has no file name", path.display()))?;
    name.to_str()
        .map(str::to_owned)
        .with_context(|| format!("{}: name is not valid UTF-8", path.display()))
}

/// Walks `root`, a file or a directory.
///
/// # Errors
/// Unreadable paths, symlink loops, broken links, special files, non-UTF-8
/// names, or a total length overflowing 64 bits.
pub(super) fn walk(root: &Path) -> anyhow::Result<Source> {
    let canonical = root
        .canonicalize()
        .with_context(|| format!("{}: cannot open", root.display()))?;
    // The name as given (a symlink keeps its own name, e.g. a file in a model
    // cache linking to a content-addressed blob); `.`, `..` or `/` take the
    // real directory's name.
    let given = match root.components().next_back() {
        Some(std::path::Component::Normal(name)) => Some(name),
        _ => canonical.file_name(),
    };
    let name = utf8_name(given, root)?;
    let meta = std::fs::metadata(&canonical)
        .with_context(|| format!("{}: cannot stat", root.display()))?;
    if meta.is_file() {
        let file = SourceFile {
            path: canonical,
            components: Vec::new(),
            offset_bytes: 0,
            len_bytes: meta.len(),
        };
        return Ok(Source {
            name,
            files: vec![file],
            multi_file: false,
        });
    }
    if !meta.is_dir() {
        bail!("{}: not a regular file or directory", root.display());
    }
    let files = walk_dir(&canonical)?;
    Ok(Source {
        name,
        files,
        multi_file: true,
    })
}

fn walk_dir(root: &Path) -> anyhow::Result<Vec<SourceFile>> {
    let walker = walkdir::WalkDir::new(root)
        .follow_links(true)
        .sort_by_file_name()
        .min_depth(1);
    let mut files = Vec::new();
    let mut dirs = Vec::new();
    let mut offset_bytes = 0_u64;
    for entry in walker {
        let entry = entry.map_err(|err| match err.loop_ancestor() {
            Some(ancestor) => anyhow::anyhow!(
                "symlink loop: {} points back to {}",
                err.path().unwrap_or(root).display(),
                ancestor.display()
            ),
            None => anyhow::Error::new(err).context(format!("walking {}", root.display())),
        })?;
        let path = entry.path();
        let components = path
            .strip_prefix(root)
            .with_context(|| format!("{}: outside {}", path.display(), root.display()))?
            .components()
            .map(|c| utf8_name(Some(c.as_os_str()), path))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let file_type = entry.file_type();
        if file_type.is_dir() {
            dirs.push(components);
        } else if file_type.is_file() {
            let len_bytes = entry
                .metadata()
                .with_context(|| format!("{}: cannot stat", path.display()))?
                .len();
            files.push(SourceFile {
                path: path.to_path_buf(),
                components,
                offset_bytes,
                len_bytes,
            });
            offset_bytes = offset_bytes
                .checked_add(len_bytes)
                .context("total size overflows 64 bits")?;
        } else {
            bail!(
                "{}: not a regular file or directory (FIFO, socket or device); refusing",
                path.display()
            );
        }
    }
    report_empty_dirs(root, &dirs, &files);
    Ok(files)
}

/// BEP 3 lists files only: say which directories will not be recreated.
fn report_empty_dirs(root: &Path, dirs: &[Vec<String>], files: &[SourceFile]) {
    let mut non_empty: BTreeSet<&[String]> = BTreeSet::new();
    for file in files {
        for end in 1..file.components.len() {
            non_empty.insert(&file.components[..end]);
        }
    }
    for dir in dirs {
        if !non_empty.contains(dir.as_slice()) {
            tracing::warn!(
                "{} holds no files; BEP 3 cannot record empty directories",
                root.join(dir.join("/")).display()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_sorted_with_offsets_and_refuses_loops() {
        let dir = tempfile::tempdir().unwrap();
        let top = dir.path().join("top");
        std::fs::create_dir_all(top.join("b/c")).unwrap();
        std::fs::create_dir_all(top.join("empty")).unwrap();
        std::fs::write(top.join("z"), b"zz").unwrap();
        std::fs::write(top.join("a"), b"a").unwrap();
        std::fs::write(top.join("b/c/d"), b"ddd").unwrap();
        let source = walk(&top).unwrap();
        let table: Vec<(String, u64)> = source
            .files
            .iter()
            .map(|f| (f.components.join("/"), f.offset_bytes))
            .collect();
        assert_eq!(
            table,
            [("a".into(), 0), ("b/c/d".into(), 1), ("z".into(), 4)]
        );
        assert_eq!((source.name.as_str(), source.total_len_bytes()), ("top", 6));

        std::os::unix::fs::symlink(&top, top.join("b/loop")).unwrap();
        let err = walk(&top).unwrap_err();
        assert!(format!("{err:#}").contains("symlink loop"), "{err:#}");

        let link = dir.path().join("named.bin");
        std::os::unix::fs::symlink(top.join("z"), &link).unwrap();
        assert_eq!(walk(&link).unwrap().name, "named.bin");
        let dot = walk(&top.join("b/..")).unwrap_err();
        assert!(format!("{dot:#}").contains("symlink loop"), "{dot:#}");
    }
}
