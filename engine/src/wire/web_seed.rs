//! Web seeds (BEP 19, "WebSeed - HTTP/FTP Seeding (GetRight style)"): where a
//! file of a torrent lives on a plain HTTP server listed in the metainfo's
//! `url-list` ([`crate::wire::metainfo::Metainfo::web_seeds`]).
//!
//! BEP 19's layout, for a web seed URL `u` and a torrent named `name`:
//! - single-file torrent: `u` itself is the file, unless `u` ends with `/`,
//!   in which case the file is `u` + `name`;
//! - multi-file torrent: file `dir/file` of the torrent is
//!   `u` + `name` + `/` + `dir/file`; `u` should end with `/` (BEP 19), and
//!   one is added when it does not (as libtorrent does).
//!
//! Each path component is percent-encoded (RFC 3986 path segment: everything
//! but unreserved characters and sub-delimiters is escaped, so a `/`, `?` or
//! `#` inside a name cannot change the URL's structure). The URL `u` itself is
//! used as written. Pure: no I/O.

use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};

/// Bytes escaped in one path component: controls, space, and the characters
/// RFC 3986 does not allow unescaped in a path segment (`pchar`).
const PATH_SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// The URL of one file of a torrent on the web seed `base` (BEP 19).
///
/// `path_components` is the file's path below the download directory as the
/// storage lays it out: `[name]` for a single-file torrent, `[name, dir...,
/// file]` for a multi-file one (`multi_file`).
pub fn file_url(base: &str, path_components: &[String], multi_file: bool) -> String {
    let encoded = path_components
        .iter()
        .map(|c| utf8_percent_encode(c, PATH_SEGMENT).to_string())
        .collect::<Vec<_>>()
        .join("/");
    if multi_file {
        if base.ends_with('/') {
            format!("{base}{encoded}")
        } else {
            format!("{base}/{encoded}")
        }
    } else if base.ends_with('/') {
        format!("{base}{encoded}")
    } else {
        base.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(parts: &[&str]) -> Vec<String> {
        parts.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn single_file_url_as_is_or_plus_name() {
        let name = p(&["model.bin"]);
        assert_eq!(
            file_url("http://h/files/x.bin", &name, false),
            "http://h/files/x.bin"
        );
        assert_eq!(
            file_url("http://h/files/", &name, false),
            "http://h/files/model.bin"
        );
    }

    #[test]
    fn multi_file_url_is_base_name_path() {
        let f = p(&["set", "a b", "c#?.txt"]);
        assert_eq!(
            file_url("http://h/mirror/", &f, true),
            "http://h/mirror/set/a%20b/c%23%3F.txt"
        );
        // BEP 19 wants a trailing slash; one is added when missing.
        assert_eq!(
            file_url("http://h/mirror", &f, true),
            "http://h/mirror/set/a%20b/c%23%3F.txt"
        );
    }

    #[test]
    fn components_cannot_escape_their_segment() {
        let f = p(&["n", "%2e%2e", "ü"]);
        assert_eq!(
            file_url("http://h/", &f, true),
            "http://h/n/%252e%252e/%C3%BC"
        );
    }
}
