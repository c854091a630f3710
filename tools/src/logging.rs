//! Diagnostics through `tracing`: one subscriber for the whole CLI, writing to
//! stderr only (stdout carries results, and with `--json` only JSON).
//!
//! - `--log-format text` (default): one line per event, as the CLI printed it
//!   before `tracing`: an INFO event is its bare message (tests and scripts wait
//!   for lines such as `first peer connected`), other levels are prefixed
//!   `warning: `, `error: `, `debug: ` or `trace: `; an event's fields other than
//!   the message follow as `key=value`.
//! - `--log-format json`: one JSON object per line for log shippers
//!   (`timestamp`, `level`, `target`, `fields.message`, other fields).
//! - Levels: p2pe's own events from INFO up by default (other crates: WARN);
//!   `-v` adds DEBUG, `-vv` TRACE; `RUST_LOG` (`tracing_subscriber` env-filter
//!   syntax, e.g. `RUST_LOG=p2pe=debug`), when set, replaces both.

use std::fmt;
use std::io::IsTerminal;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// `--log-format`: how diagnostics on stderr look.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum LogFormat {
    /// Human text, one line per event.
    #[default]
    Text,
    /// One JSON object per line (for log shippers).
    Json,
}

/// The filter directives for `verbose` repetitions of `-v` (no `RUST_LOG`).
pub(crate) fn default_directives(verbose: u8) -> &'static str {
    match verbose {
        0 => "warn,p2pe=info",
        1 => "warn,p2pe=debug",
        _ => "info,p2pe=trace",
    }
}

/// Installs the process's subscriber (call once, first thing in `main`).
/// `RUST_LOG`, when set and valid, wins over `verbose`.
pub(crate) fn init(format: LogFormat, verbose: u8) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .and_then(|v| EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| EnvFilter::new(default_directives(verbose)));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    // A second init (only in tests) keeps the first subscriber.
    let _ = match format {
        LogFormat::Text => builder.event_format(Human).try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
    };
}

/// The text format: see the module docs.
pub(crate) struct Human;

impl<S, N> FormatEvent<S, N> for Human
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        if let Some(prefix) = level_prefix(*event.metadata().level()) {
            writer.write_str(prefix)?;
        }
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// The text format's prefix of an event of `level` (none for INFO).
fn level_prefix(level: Level) -> Option<&'static str> {
    match level {
        Level::ERROR => Some("error: "),
        Level::WARN => Some("warning: "),
        Level::INFO => None,
        Level::DEBUG => Some("debug: "),
        Level::TRACE => Some("trace: "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    /// A writer into a shared buffer, for capturing a subscriber's output.
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn capture(json: bool, f: impl FnOnce()) -> String {
        let buf = Buf::default();
        let out = buf.clone();
        let builder = tracing_subscriber::fmt()
            .with_env_filter(EnvFilter::new(default_directives(0)))
            .with_ansi(false)
            .with_writer(move || out.clone());
        if json {
            tracing::subscriber::with_default(builder.json().finish(), f);
        } else {
            tracing::subscriber::with_default(builder.event_format(Human).finish(), f);
        }
        let bytes = buf.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn text_keeps_info_lines_bare_and_prefixes_the_other_levels() {
        let out = capture(false, || {
            tracing::info!("first peer connected");
            tracing::warn!(pieces = 3, "only some pieces verified");
            tracing::error!("disk full");
            tracing::debug!("hidden at the default level");
        });
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines,
            [
                "first peer connected",
                "warning: only some pieces verified pieces=3",
                "error: disk full",
            ]
        );
    }

    #[test]
    fn json_is_one_object_per_event() {
        let out = capture(true, || {
            tracing::info!(addr = "127.0.0.1:1", "listening");
        });
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["fields"]["message"], "listening");
        assert_eq!(v["fields"]["addr"], "127.0.0.1:1");
    }

    #[test]
    fn verbosity_raises_p2pe_levels_only() {
        assert_eq!(default_directives(0), "warn,p2pe=info");
        assert!(default_directives(1).contains("p2pe=debug"));
        assert!(default_directives(5).contains("p2pe=trace"));
    }
}
