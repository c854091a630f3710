//! Path safety: torrent paths are untrusted input and must stay inside the
//! output directory.
//!
//! Checked twice: on the components themselves ([`validate_components`]: no
//! empty, `.`, `..`, absolute or separator-carrying component, no NUL), and on
//! the file system ([`resolve_inside`]): every existing prefix of the path is
//! canonicalized and must still lie under the canonical output directory, so a
//! symlink (to a directory or to the file) that leads outside is refused.
//! The open itself then happens beneath the directory's descriptor
//! (`store::dir`, `openat2` with `RESOLVE_BENEATH`), which closes the gap of a
//! symlink swapped in between this check and the open.
//! Missing parent directories are created the same way (`mkdirat` in a parent
//! opened beneath the descriptor). Symlinks that stay inside are allowed.

use std::fs;
use std::path::{Component, Path, PathBuf};

use super::dir::{Dir, OpenError};
use super::error::StoreError;
use crate::base::InfoHash;

/// Prefix of every resume record's name, and the whole name of the record
/// of versions before one record per torrent (still read, never written).
pub(crate) const RECORD_PREFIX: &str = ".p2pe.resume";

/// Name of the resume record of the torrent `info_hash` in its output
/// directory: `.p2pe.resume.<40 lowercase hex digits>`, one per torrent, so
/// torrents downloaded into one directory keep their own records.
pub(crate) fn record_name(info_hash: &InfoHash) -> String {
    format!("{RECORD_PREFIX}.{}", hex::encode(info_hash.0))
}

/// Name of that record while it is being written (renamed over it).
pub(crate) fn record_tmp_name(info_hash: &InfoHash) -> String {
    format!("{}.tmp", record_name(info_hash))
}

/// Check the components of one torrent file path.
///
/// # Errors
/// [`StoreError::InvalidPath`] for an empty list, an empty, `.`, `..` or
/// absolute component, a component containing `/`, `\` or NUL, or a path equal
/// to the resume record's names.
pub(crate) fn validate_components(components: &[String]) -> Result<(), StoreError> {
    let invalid = |reason| StoreError::InvalidPath {
        path: components.join("/"),
        reason,
    };
    if components.is_empty() {
        return Err(invalid("no path components"));
    }
    for c in components {
        if c.is_empty() {
            return Err(invalid("empty component"));
        }
        if c == "." || c == ".." {
            return Err(invalid("`.` or `..` component"));
        }
        if c.contains(['/', '\\', '\0']) {
            return Err(invalid("separator or NUL inside a component"));
        }
        // Belt and braces: whatever the platform thinks a component is, it must
        // be exactly one normal component.
        let mut parsed = Path::new(c).components();
        if !matches!(
            (parsed.next(), parsed.next()),
            (Some(Component::Normal(_)), None)
        ) {
            return Err(invalid("not a plain file name"));
        }
    }
    if let [only] = components {
        if only.starts_with(RECORD_PREFIX) {
            return Err(invalid("collides with the resume record"));
        }
    }
    Ok(())
}

/// Join validated `components` under `dir` (canonical) and check that every
/// existing prefix resolves inside it.
///
/// `create_dirs`: create missing parent directories (one at a time, each
/// beneath the directory's descriptor and checked before the next).
///
/// # Errors
/// [`StoreError::PathEscapes`] when a symlink leads outside `dir`;
/// I/O errors from `canonicalize` / `mkdirat`.
pub(crate) fn resolve_inside(
    dir: &Dir,
    components: &[String],
    create_dirs: bool,
) -> Result<PathBuf, StoreError> {
    let root = dir.path();
    let mut path = root.to_path_buf();
    let mut rel = PathBuf::new();
    let last = components.len().saturating_sub(1);
    for (i, c) in components.iter().enumerate() {
        path.push(c);
        rel.push(c);
        let is_dir = i < last;
        match fs::symlink_metadata(&path) {
            Ok(_) => check_inside(root, &path)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if is_dir && create_dirs {
                    dir.create_dir(&rel).map_err(|e| match e {
                        OpenError::Store(e) => e,
                        OpenError::Io(e) => StoreError::io(&path, "create dir", e),
                    })?;
                    check_inside(root, &path)?;
                }
                // A missing file (or missing dir in seed mode) is reported by
                // the caller when it opens the file.
            }
            Err(e) => return Err(StoreError::io(&path, "stat", e)),
        }
    }
    Ok(path)
}

/// `path` exists; its canonical form must start with `root`.
fn check_inside(root: &Path, path: &Path) -> Result<(), StoreError> {
    match fs::canonicalize(path) {
        Ok(real) if real.starts_with(root) => Ok(()),
        Ok(_) => Err(StoreError::PathEscapes {
            path: path.to_path_buf(),
            root: root.to_path_buf(),
        }),
        // A dangling symlink: refuse, we would create its target wherever it points.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(StoreError::PathEscapes {
            path: path.to_path_buf(),
            root: root.to_path_buf(),
        }),
        Err(e) => Err(StoreError::io(path, "canonicalize", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn comps(parts: &[&str]) -> Vec<String> {
        parts.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn rejects_bad_components() {
        for bad in [
            &[][..],
            &[""],
            &["."],
            &[".."],
            &["a", "..", "b"],
            &["/etc"],
            &["a/b"],
            &["a\\b"],
            &["a\0b"],
            &[RECORD_PREFIX],
            &[&record_name(&InfoHash([1; 20]))],
            &[&record_tmp_name(&InfoHash([1; 20]))],
        ] {
            assert!(
                matches!(
                    validate_components(&comps(bad)),
                    Err(StoreError::InvalidPath { .. })
                ),
                "{bad:?} accepted"
            );
        }
        validate_components(&comps(&["dir", "..file", "x.y"])).unwrap();
        validate_components(&comps(&["d", RECORD_PREFIX])).unwrap();
    }

    #[test]
    fn refuses_symlink_leading_outside() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let root_c = fs::canonicalize(root.path()).unwrap();
        let dir = Dir::open(&root_c).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("link")).unwrap();
        let err = resolve_inside(&dir, &comps(&["link", "f"]), true).unwrap_err();
        assert!(matches!(err, StoreError::PathEscapes { .. }), "{err}");
        // A symlinked file pointing outside, too.
        std::os::unix::fs::symlink(outside.path().join("x"), root.path().join("fl")).unwrap();
        let err = resolve_inside(&dir, &comps(&["fl"]), true).unwrap_err();
        assert!(matches!(err, StoreError::PathEscapes { .. }), "{err}");
        // A symlink that stays inside is fine.
        fs::create_dir(root.path().join("real")).unwrap();
        std::os::unix::fs::symlink(root_c.join("real"), root.path().join("in")).unwrap();
        let p = resolve_inside(&dir, &comps(&["in", "sub", "f"]), true).unwrap();
        assert!(fs::canonicalize(p.parent().unwrap())
            .unwrap()
            .starts_with(&root_c));
        assert!(!outside.path().join("f").exists());
    }
}
