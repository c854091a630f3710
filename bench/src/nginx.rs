//! Debian's `nginx` as an HTTP origin (a BEP 19 web seed) for the swarm
//! bench and the web seed tests: where the binary is, and a self-contained
//! configuration (no daemon, one process, pid, logs and temp paths in one
//! directory, `root` at the data, `Range` requests answered as nginx does by
//! default).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The nginx binary (`/usr/sbin/nginx`, `/usr/bin/nginx`), if installed.
pub fn binary() -> Option<PathBuf> {
    ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// TLS for [`config`]: the server certificate and its key (PEM files).
#[derive(Debug, Clone, Copy)]
pub struct Tls<'a> {
    /// Certificate (chain) file.
    pub cert: &'a Path,
    /// Private key file.
    pub key: &'a Path,
}

/// nginx's configuration serving `root` on `listen` (HTTPS with `tls`), its
/// pid, error log, temp paths and access log in `prefix`. The access log
/// ([`access_log`]) has one line per request: `$status $body_bytes_sent
/// "$request"` (see [`body_bytes`]). `sendfile` on, keep-alive for up to
/// 100,000 requests per connection.
pub fn config(prefix: &Path, listen: SocketAddr, root: &Path, tls: Option<Tls<'_>>) -> String {
    let d = prefix.display();
    let (ssl, tls_lines) = match tls {
        Some(t) => (
            " ssl",
            format!(
                "ssl_certificate {};\n    ssl_certificate_key {};",
                t.cert.display(),
                t.key.display()
            ),
        ),
        None => ("", String::new()),
    };
    format!(
        r#"daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 1024; }}
http {{
  log_format bytes '$status $body_bytes_sent "$request"';
  access_log {d}/access.log bytes;
  sendfile on;
  keepalive_requests 100000;
  client_body_temp_path {d}/client_body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  default_type application/octet-stream;
  server {{
    listen {listen}{ssl};
    {tls_lines}
    root {root};
  }}
}}
"#,
        root = root.display()
    )
}

/// The access log of a [`config`] with prefix `prefix`.
pub fn access_log(prefix: &Path) -> PathBuf {
    prefix.join("access.log")
}

/// The payload bytes of one access log line (`$body_bytes_sent`, the
/// second field), `None` for a malformed line.
pub fn body_bytes(line: &str) -> Option<u64> {
    line.split(' ').nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_listens_serves_root_and_logs_bytes() {
        let c = config(
            Path::new("/p"),
            "127.0.0.1:8080".parse().unwrap(),
            Path::new("/data"),
            None,
        );
        assert!(c.contains("listen 127.0.0.1:8080;"), "{c}");
        assert!(c.contains("root /data;"), "{c}");
        assert!(c.contains("access_log /p/access.log bytes;"), "{c}");
        let tls = Tls {
            cert: Path::new("/c.pem"),
            key: Path::new("/k.pem"),
        };
        let c = config(
            Path::new("/p"),
            "127.0.0.1:8443".parse().unwrap(),
            Path::new("/data"),
            Some(tls),
        );
        assert!(c.contains("listen 127.0.0.1:8443 ssl;"), "{c}");
        assert!(c.contains("ssl_certificate /c.pem;"), "{c}");
        assert_eq!(body_bytes("206 65536 \"GET /x HTTP/1.1\""), Some(65536));
        assert_eq!(body_bytes("garbage"), None);
    }
}
