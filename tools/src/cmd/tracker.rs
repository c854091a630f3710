//! `p2pe tracker`: run the embedded BitTorrent tracker (HTTP and UDP announce and
//! scrape on one port number) until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use p2pe::discovery::tracker_server::io::{ServerConfig, TrackerServer};
use p2pe::discovery::tracker_server::TrackerConfig;

use super::node_common::print_listening;

/// Arguments of `p2pe tracker`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Clients announce to http://ADDR/announce or udp://ADDR/announce (BEP 3, BEP 15); scrape at \
http://ADDR/scrape. Peers silent for 2 x interval are dropped. Peers are handed out same rack \
first, then same zone (extra announce parameters p2pe_rack= and p2pe_zone=), then seeders and \
near-complete peers, then at random.

Example: p2pe tracker --listen 0.0.0.0:6969 --interval 60")]
pub(crate) struct Args {
    /// Address to bind, for both TCP (HTTP) and UDP; port 0 picks a free port.
    #[arg(long, default_value = "0.0.0.0:6969")]
    pub listen: SocketAddr,
    /// Announce interval told to clients, in seconds (min interval is half).
    #[arg(long, default_value_t = 60)]
    pub interval: u64,
    /// Peers handed out when a client does not say (`numwant`).
    #[arg(long, default_value_t = 50)]
    pub numwant: u32,
    /// UDP receive threads (SO_REUSEPORT sockets); default: one per core.
    #[arg(long)]
    pub udp_threads: Option<usize>,
    /// HTTP worker threads (io_uring runtime workers; keep-alive connections,
    /// at most 16,384 open, closed after 30 s without a request).
    #[arg(long, default_value_t = 2)]
    pub http_threads: usize,
    /// Serve Prometheus metrics at http://ADDR/metrics (text format 0.0.4;
    /// see docs/metrics.md). Port 0 picks a free port (logged on stderr).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
    /// Keep stdout pure JSON: the listen address as `{"event":"listening","addr":…}`
    /// (the human line goes to stderr).
    #[arg(long)]
    pub json: bool,
}

/// Runs the tracker until a termination signal.
pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(args.interval > 0, "--interval must be at least 1 second");
    let mut tracker = TrackerConfig::with_interval(Duration::from_secs(args.interval));
    tracker.default_numwant = args.numwant.min(tracker.max_numwant);
    // Every keep-alive connection is a descriptor: lift a low soft limit.
    let need = p2pe::discovery::tracker_server::io::MAX_CONNS as u64 + 256;
    match p2pe::rt::raise_nofile_limit() {
        Ok(n) if n < need => tracing::warn!(
            "open-file limit {n} is below the {need} descriptors the HTTP endpoint may hold; \
             raise the hard limit (ulimit -Hn, LimitNOFILE=) for more connections"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!("could not raise the open-file limit: {e}"),
    }
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let server = TrackerServer::bind(ServerConfig {
        listen: args.listen,
        tracker,
        udp_threads: args.udp_threads.unwrap_or(cores).max(1),
        http_threads: args.http_threads.max(1),
    })
    .with_context(|| format!("binding {}", args.listen))?;
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .context("installing the signal handler")?;
    let metrics = args
        .metrics
        .map(|addr| {
            let source = crate::metrics::tracker::TrackerMetrics::new(server.watch());
            crate::metrics::MetricsServer::start(addr, source)
        })
        .transpose()?;
    print_listening(server.local_addr(), args.json)?;
    // Blocks until SIGINT, SIGTERM or SIGHUP.
    let _ = signals.forever().next();
    tracing::info!(
        "p2pe tracker: shutting down ({} peers)",
        server.peer_count()
    );
    if let Some(m) = metrics {
        m.stop();
    }
    server.shutdown();
    Ok(())
}
