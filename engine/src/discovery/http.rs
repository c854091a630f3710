//! HTTP(S) shared by p2pe's clients: the TLS settings (trackers, web seeds,
//! `.torrent` URLs) and a bounded one-shot GET for a `.torrent` by URL.

use std::io::Read;
use std::time::Duration;

/// The TLS settings of every HTTP client p2pe runs (HTTP(S) trackers, web
/// seeds, `.torrent` URLs): rustls, with the certificates the platform
/// trusts (`rustls-platform-verifier`: on Linux the system store under
/// `/etc/ssl`, or the bundle named by `SSL_CERT_FILE` / `SSL_CERT_DIR`, as
/// curl and OpenSSL read them). An `https://` server whose certificate does
/// not chain to one of them fails with a TLS error, never silently.
pub fn tls_config() -> ureq::tls::TlsConfig {
    ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::PlatformVerifier)
        .build()
}

/// Why [`get_bounded`] failed.
#[derive(Debug, thiserror::Error)]
pub enum GetError {
    /// Not an `http://` or `https://` URL.
    #[error("not an http:// or https:// URL")]
    Scheme,
    /// Connect, TLS, timeout or I/O failure (the source names which).
    #[error("{0}")]
    Http(#[from] ureq::Error),
    /// The server answered with a status other than 200 (after redirects).
    #[error("HTTP status {0}")]
    Status(u16),
    /// The body is longer than the bound.
    #[error("the body is larger than {0} bytes")]
    TooLarge(u64),
    /// Reading the body failed.
    #[error("reading the body: {0}")]
    Body(#[from] std::io::Error),
}

/// `GET url` (`http://` or `https://`, at most 4 redirects followed) and
/// returns the body, at most `max_bytes` long, all within `timeout` (connect
/// to last byte).
///
/// # Errors
/// See [`GetError`]: a body longer than `max_bytes` is an error, not cut.
pub fn get_bounded(url: &str, max_bytes: u64, timeout: Duration) -> Result<Vec<u8>, GetError> {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) {
        return Err(GetError::Scheme);
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .max_redirects(4)
        .user_agent(concat!("p2pe/", env!("CARGO_PKG_VERSION")))
        .tls_config(tls_config())
        .build()
        .into();
    let resp = agent.get(url).call()?;
    let status = resp.status().as_u16();
    if status != 200 {
        return Err(GetError::Status(status));
    }
    let mut bytes = Vec::new();
    resp.into_body()
        .into_reader()
        .take(max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max_bytes {
        return Err(GetError::TooLarge(max_bytes));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::TcpListener;

    /// Serves one HTTP answer `head` + `body` on loopback; returns the URL.
    fn serve_once(head: &'static str, body: Vec<u8>) -> String {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            if let Ok((mut s, _)) = l.accept() {
                let mut req = [0u8; 1024];
                let _ = s.read(&mut req);
                let _ = s.write_all(head.as_bytes());
                let _ = s.write_all(&body);
            }
        });
        format!("http://{addr}/x.torrent")
    }

    #[test]
    fn returns_the_body_and_refuses_bodies_over_the_bound() {
        let ok = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\n";
        let url = serve_once(ok, b"hello".to_vec());
        let got = get_bounded(&url, 5, Duration::from_secs(5)).unwrap();
        assert_eq!(got, b"hello");
        let url = serve_once(ok, b"hello".to_vec());
        let err = get_bounded(&url, 4, Duration::from_secs(5)).unwrap_err();
        assert!(matches!(err, GetError::TooLarge(4)), "{err}");
    }

    #[test]
    fn a_status_other_than_200_and_other_schemes_are_errors() {
        let nf = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        let url = serve_once(nf, Vec::new());
        let err = get_bounded(&url, 100, Duration::from_secs(5)).unwrap_err();
        assert!(matches!(err, GetError::Status(404)), "{err}");
        let err = get_bounded("ftp://x/y", 100, Duration::from_secs(5)).unwrap_err();
        assert!(matches!(err, GetError::Scheme), "{err}");
    }
}
