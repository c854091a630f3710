//! `p2pe sim`: run the seeded swarm simulator and compare with the D_cs / D_p2p bounds.

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::Context;
use p2pe::sim::units::{
    format_bytes, format_rate_bits, parse_duration_ns, parse_rate_bytes_per_s, parse_size_bytes,
};
use p2pe::sim::{
    ChurnSpec, Discovery, DiscoveryConfig, GroupCompletion, Progress, RackSpec, Report, SimConfig,
    SlowPeers, Strategy,
};

fn size(s: &str) -> Result<u64, String> {
    parse_size_bytes(s).map_err(|e| e.to_string())
}
fn rate(s: &str) -> Result<u64, String> {
    parse_rate_bytes_per_s(s).map_err(|e| e.to_string())
}
/// `--far-refill-delay`: `auto` (`None`) or a duration (`0`: immediate).
#[derive(Clone, Copy, Debug)]
struct FarRefillDelay(Option<Duration>);

fn far_refill_delay(s: &str) -> Result<FarRefillDelay, String> {
    if s == "auto" {
        return Ok(FarRefillDelay(None));
    }
    duration(s).map(|d| FarRefillDelay(Some(d)))
}
fn duration(s: &str) -> Result<Duration, String> {
    parse_duration_ns(s)
        .map(Duration::from_nanos)
        .map_err(|e| e.to_string())
}

/// Arguments of `p2pe sim`.
///
/// Sizes: `5GB` (10⁹), `5GiB` (2³⁰), `4MiB`, plain bytes. Rates: `40Gbit`, `400Mbit/s`,
/// `5GB/s`, `100MiB/s`, plain bytes per second. Durations: `200us`, `1ms`, `2s`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Reports per-peer completion (min / median / p99 / max), the total time, the origin's upload in \
copies of the file, and the references D_cs = max(N·F/u_s, F/d_min) and \
D_p2p = max(F/u_s, F/d_min, N·F/(u_s+Σu_i)) with the ratio total/D_p2p. d_min and Σu_i use \
every peer's actual links.

Uneven peers: --slow-peers K --slow-uplink RATE [--slow-downlink RATE] puts K of the N peers \
on other links; their completion (min / median / max) is reported apart from the others'. \
E.g. a quarter of 14 peers at 20 Mbit/s, the rest at 100, origin at 400: \
p2pe sim --peers 14 --size 64MiB --uplink 100Mbit --seeder-uplink 400Mbit --slow-peers 4 \
--slow-uplink 20Mbit

Churn spec (--churn, comma-separated, p2p only):
  leave=F        a fraction F of the peers leave at uniformly random times in the window
  join=F         F·N extra peers join at uniformly random times in the window
  freeze=F       a fraction F of the peers freeze (send and read nothing, stay connected,
                 no FIN) at uniformly random times in the window; they need not complete
  origin-leave   the origin leaves once the peers together hold every piece
  window=DUR     the churn window [0, DUR] (default: D_p2p)
  e.g. --churn leave=0.1,join=0.1,origin-leave   or   --churn freeze=0.125

Racks (p2p only; docs/topology.md): --racks R puts peer p in rack (p-1) mod R, each rack \
behind one uplink and one downlink to the core of --rack-uplink RATE, or of its members' \
uplinks / --oversubscription X; the origin sits outside every rack. Rack-aware (default): \
peers connect to --connections peers of their rack and --cross-rack-connections K of other \
racks, and their cores import each piece into a rack about once. --rack-oblivious ignores \
the labels; --compare-oblivious runs both and prints the oblivious figures beside. The \
report adds D_topo (the bound for the topology), total/D_topo and the bytes sent between \
racks in copies of F (at least R-1 when the origin sends one copy). E.g. \
p2pe sim --peers 100 --size 500MB --uplink 40Gbit --racks 4 --oversubscription 4 \
--compare-oblivious

Discovery (p2p, no racks): --discovery connected (default) starts every peer connected to \
the origin and --connections random others. --discovery tracker runs the node's discovery: \
each peer is given the origin, announces to a tracker that answers with up to --numwant \
random peers, dials through the core's dial policy (at most --max-peers connections, \
back-off, retirement after failed dials), re-announces early when short of peers (the \
node's policy), exchanges PEX every --pex-interval and redials after churn; a dial to a \
frozen peer holds its slot for the node's 10 s handshake timeout, and a full peer gives \
the slot of its oldest idle connection to a new dial (the node's slot policy). The report \
adds dials, connections made, failed, timed-out and refused dials, reclaimed slots and \
the addresses learned from the tracker and from PEX. E.g. \
p2pe sim --peers 300 --size 500MB --uplink 40Gbit --discovery tracker

Set P2PE_SIM_DEBUG=1 to print the state of peers that did not complete.

Example (the seeds' scenario): p2pe sim --peers 1000 --size 5GB --uplink 40Gbit")]
pub(crate) struct Args {
    /// Downloading peers N (the origin is extra).
    #[arg(long)]
    peers: u32,
    /// File size F.
    #[arg(long, value_parser = size)]
    size: u64,
    /// Uplink of every peer, u_i.
    #[arg(long, value_parser = rate)]
    uplink: u64,
    /// Uplink of the origin (and replica servers), u_s [default: --uplink].
    #[arg(long, value_parser = rate)]
    seeder_uplink: Option<u64>,
    /// Downlink of every peer [default: --uplink].
    #[arg(long, value_parser = rate)]
    downlink: Option<u64>,
    /// How many of the N peers are on other links (--slow-uplink, --slow-downlink).
    #[arg(long, default_value_t = 0, requires = "slow_uplink")]
    slow_peers: u32,
    /// Uplink of each of the --slow-peers.
    #[arg(long, value_parser = rate)]
    slow_uplink: Option<u64>,
    /// Downlink of each of the --slow-peers [default: --slow-uplink].
    #[arg(long, value_parser = rate)]
    slow_downlink: Option<u64>,
    /// Piece length [default: a power of two giving at most ~2,000 pieces, 256 KiB..16 MiB].
    #[arg(long, value_parser = size)]
    piece_length: Option<u64>,
    /// Largest request (block) [default: the piece length; BEP 3 clients use 16KiB].
    #[arg(long, value_parser = size)]
    block_length: Option<u64>,
    /// One-way latency of every connection.
    #[arg(long, value_parser = duration, default_value = "200us")]
    latency: Duration,
    /// Connections each peer opens to random other peers (p2p; the origin connects to all).
    #[arg(long, default_value_t = 25)]
    connections: u32,
    /// client-server, replicas:K or p2p.
    #[arg(long, default_value = "p2p")]
    strategy: Strategy,
    /// Peers leaving and joining; see below.
    #[arg(long, value_parser = |s: &str| ChurnSpec::parse(s).map_err(|e| e.to_string()))]
    churn: Option<ChurnSpec>,
    /// How peers find each other (p2p): connected (at start) or tracker; see below.
    #[arg(long, default_value = "connected")]
    discovery: Discovery,
    /// Most connections per peer with --discovery tracker (the node's max_peers).
    #[arg(long, default_value_t = DiscoveryConfig::default().max_peers)]
    max_peers: u32,
    /// Most peers per tracker answer with --discovery tracker.
    #[arg(long, default_value_t = DiscoveryConfig::default().numwant)]
    numwant: u32,
    /// Regular announce interval with --discovery tracker.
    #[arg(long, value_parser = duration, default_value = "30s")]
    announce_interval: Duration,
    /// PEX interval between peers with --discovery tracker (the node's datacenter one).
    #[arg(long, value_parser = duration, default_value = "2s")]
    pex_interval: Duration,
    /// Peers that send corrupt data (p2p).
    #[arg(long, default_value_t = 0)]
    liars: u32,
    /// RNG seed: the same seed gives the same result.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Link sharing model (p2p): water-fill (≈ max-min fair, like TCP) or equal (each link
    /// split equally; a transfer gets the smaller share).
    #[arg(long, default_value = "water-fill")]
    sharing: p2pe::sim::Sharing,
    /// How a node's uplink divides itself between its block transfers (p2p, water-fill):
    /// fair (max-min, like TCP flows written at once) or fifo (in the order the core
    /// handed the blocks out, work-conserving: a later block gets what the earlier ones'
    /// receivers cannot take).
    #[arg(long, default_value = "fair")]
    uplink_order: p2pe::sim::UplinkOrder,
    /// Anti-snubbing timeout of the core [default: the datacenter profile's].
    #[arg(long, value_parser = duration)]
    snub_timeout: Option<Duration>,
    /// Unequal sharing (p2p, water-fill): each block transfer gets a weight drawn from
    /// 1 ± J (0..=1), a stand-in for TCP flows sharing a bottleneck unevenly. 0: fair.
    #[arg(long, default_value_t = 0.0)]
    sharing_jitter: f64,
    /// Requests kept in flight per unchoked peer [default: the core's datacenter profile, one piece].
    #[arg(long, value_parser = size)]
    pipeline: Option<u64>,
    /// Blocks a node hands to its uplink ahead of sending [default: the core's datacenter profile, 16 pieces].
    #[arg(long, value_parser = size)]
    upload_window: Option<u64>,
    /// Socket send buffer per connection (p2p): a block counts as sent for the upload
    /// window once it fits, and control messages queue behind it, as on a TCP socket
    /// (the p2pe node). 0: a block counts as sent at its last byte.
    #[arg(long, value_parser = size, default_value = "0")]
    send_buffer: u64,
    /// Relay part length (p2p): pieces travel between peers as parts of this size, each
    /// verified on arrival and forwarded at once (cut-through; the core's
    /// `relay_part_bytes`). A power of two, at least 16KiB, below the piece length and at
    /// least 1/64 of it. 0: pieces relay whole.
    #[arg(long, value_parser = size, default_value = "0")]
    relay_part: u64,
    /// Longest wait of a far-end link refill (p2p, water-fill, fair uplinks): a block
    /// transfer's start or end refills its own two links at once and the links at their
    /// far ends at most this much later, all stale links in one pass. auto: a block's
    /// time on a peer's uplink / 8; 0: every refill at once (the exact model, O(degree²)
    /// per transfer; slow at 1,000+ peers).
    #[arg(long, value_parser = far_refill_delay, default_value = "auto")]
    far_refill_delay: FarRefillDelay,
    /// Stop after this much simulated time (peers not done are reported incomplete).
    #[arg(long, value_parser = duration, default_value = "3600s")]
    max_time: Duration,
    /// Racks R (p2p): peers behind shared top-of-rack links; see below.
    #[arg(long)]
    racks: Option<u32>,
    /// Each rack's uplink (and downlink) to the core [default: members' uplinks /
    /// --oversubscription].
    #[arg(long, value_parser = rate, requires = "racks", conflicts_with = "oversubscription")]
    rack_uplink: Option<u64>,
    /// Rack oversubscription X (4 for 4:1): rack uplink = Σ members' uplinks / X.
    #[arg(long, requires = "racks", default_value_t = 1.0)]
    oversubscription: f64,
    /// Ignore rack labels (random connections, rack-oblivious cores), for comparison.
    #[arg(long, requires = "racks")]
    rack_oblivious: bool,
    /// Connections each peer opens to peers of other racks (rack-aware).
    #[arg(long, requires = "racks", default_value_t = 8)]
    cross_rack_connections: u32,
    /// Also run rack-oblivious and print its figures beside.
    #[arg(long, requires = "racks", conflicts_with = "rack_oblivious")]
    compare_oblivious: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// Runs `p2pe sim`.
pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let config = config_from(&args)?;
    config.validate()?;
    let report = if std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(u64::from(config.peers));
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{elapsed_precise} [{bar:30}] {pos}/{len} peers done {msg}",
            )
            .context("progress template")?,
        );
        let mut tick = |p: Progress| {
            bar.set_length(u64::from(p.expected_peers));
            bar.set_position(u64::from(p.completed_peers));
            bar.set_message(format!(
                "sim time {:.3} s, {} events",
                p.now.as_secs_f64(),
                p.events
            ));
        };
        let report = p2pe::sim::run_with_progress(&config, &mut tick);
        bar.finish_and_clear();
        report?
    } else {
        p2pe::sim::run(&config)?
    };
    let oblivious = match (&config.racks, args.compare_oblivious) {
        (Some(spec), true) => {
            let mut c = config.clone();
            c.racks = Some(RackSpec {
                oblivious: true,
                ..*spec
            });
            Some(p2pe::sim::run(&c)?)
        }
        _ => None,
    };
    if args.json {
        match &oblivious {
            Some(o) => println!(
                "{}",
                serde_json::json!({ "rack_aware": &report, "rack_oblivious": o })
            ),
            None => println!("{}", serde_json::to_string(&report)?),
        }
    } else {
        print_text(&config, &report);
        if let Some(o) = &oblivious {
            println!(
                "rack-oblivious: total {:.4} s   ratio/D_topo {:.3}   cross-rack {:.3} F   \
                 origin {:.3} copies",
                o.total_s, o.ratio_topo, o.cross_rack_copies, o.origin_upload_copies
            );
        }
    }
    if report.incomplete_peers > 0 {
        anyhow::bail!("{} peers did not complete", report.incomplete_peers);
    }
    Ok(())
}

fn config_from(args: &Args) -> anyhow::Result<SimConfig> {
    let mut config = SimConfig::new(args.peers, args.size, args.uplink);
    if let Some(len) = args.piece_length {
        config.piece_len_bytes = u32::try_from(len).context("--piece-length too large")?;
    }
    config.block_len_bytes = match args.block_length {
        Some(len) => u32::try_from(len).context("--block-length too large")?,
        None => config.piece_len_bytes,
    };
    config.seeder_uplink_bytes_per_s = args.seeder_uplink.unwrap_or(args.uplink);
    config.downlink_bytes_per_s = args.downlink.unwrap_or(args.uplink);
    if let Some(up) = args.slow_uplink {
        if args.slow_peers == 0 {
            anyhow::bail!("--slow-uplink needs --slow-peers K (K >= 1)");
        }
        config.slow_peers = SlowPeers {
            count: args.slow_peers,
            uplink_bytes_per_s: up,
            downlink_bytes_per_s: args.slow_downlink.unwrap_or(up),
        };
    } else if args.slow_downlink.is_some() {
        anyhow::bail!("--slow-downlink needs --slow-uplink");
    }
    config.latency = args.latency;
    config.connections = args.connections;
    config.strategy = args.strategy;
    config.churn = args.churn.clone().unwrap_or_default();
    config.discovery = args.discovery;
    config.discovery_config = DiscoveryConfig {
        max_peers: args.max_peers,
        numwant: args.numwant,
        announce_interval: args.announce_interval,
        pex_interval: args.pex_interval,
        ..DiscoveryConfig::default()
    };
    config.liars = args.liars;
    config.seed = args.seed;
    config.max_time = args.max_time;
    config.sharing = args.sharing;
    config.uplink_order = args.uplink_order;
    config.sharing_jitter = args.sharing_jitter;
    config.far_refill_delay = args.far_refill_delay.0;
    config.snub_timeout = args.snub_timeout;
    config.debug_stuck = std::env::var_os("P2PE_SIM_DEBUG").is_some();
    config.pipeline_bytes = args.pipeline;
    config.upload_in_flight_bytes = args.upload_window;
    config.send_buffer_bytes = args.send_buffer;
    if args.relay_part != 0 {
        let r = u32::try_from(args.relay_part).context("--relay-part too large")?;
        let mut c = p2pe::core::TorrentConfig::new(config.size_bytes, config.piece_len_bytes);
        c.relay_part_bytes = r;
        if c.relay_part_len().is_none() {
            anyhow::bail!(
                "--relay-part {r}: must be a power of two, at least 16384 bytes, below the piece \
                 length ({}) and at least 1/64 of it",
                config.piece_len_bytes
            );
        }
        config.relay_part_bytes = r;
    }
    config.racks = args.racks.map(|racks| RackSpec {
        racks,
        uplink_bytes_per_s: args.rack_uplink,
        oversubscription: args.oversubscription,
        oblivious: args.rack_oblivious,
        cross_connections: args.cross_rack_connections,
    });
    Ok(config)
}

fn print_text(config: &SimConfig, r: &Report) {
    println!(
        "{} peers, {} ({} pieces of {} KiB), {}, seed {}",
        r.peers,
        format_bytes(r.size_bytes as f64),
        config.piece_count(),
        r.piece_length_bytes / 1024,
        r.strategy,
        r.seed
    );
    println!(
        "links: peer up {}, down {}; origin up {}; latency {} us",
        format_rate_bits(config.uplink_bytes_per_s as f64),
        format_rate_bits(config.downlink_bytes_per_s as f64),
        format_rate_bits(config.seeder_uplink_bytes_per_s as f64),
        config.latency.as_micros()
    );
    let slow = config.slow_peers;
    if r.slow_peers > 0 {
        println!(
            "slow peers: {} with up {}, down {}",
            r.slow_peers,
            format_rate_bits(slow.uplink_bytes_per_s as f64),
            format_rate_bits(slow.downlink_bytes_per_s as f64),
        );
    }
    println!(
        "completion (s): min {:.4}  median {:.4}  p99 {:.4}  max {:.4}  ({} done, {} incomplete)",
        r.min_s, r.median_s, r.p99_s, r.max_s, r.completed_peers, r.incomplete_peers
    );
    let group = |name: &str, g: &GroupCompletion| {
        println!(
            "  {name}: min {:.4}  median {:.4}  max {:.4}  ({} done, {} incomplete)",
            g.min_s, g.median_s, g.max_s, g.completed, g.incomplete
        );
    };
    if let Some(g) = &r.regular {
        group("regular", g);
    }
    if let Some(g) = &r.slow {
        group("slow   ", g);
    }
    println!(
        "total {:.4} s   D_p2p {:.4} s   ratio {:.3}   D_cs {:.4} s",
        r.total_s, r.d_p2p_s, r.ratio, r.d_cs_s
    );
    println!(
        "origin upload {:.3} copies of the file; all uploads {:.3}x N·F",
        r.origin_upload_copies, r.upload_overhead
    );
    if let Some(spec) = &config.racks {
        println!(
            "topology: {} racks, rack uplink {} ({}), origin outside the racks; {}",
            spec.racks,
            format_rate_bits(config.rack_link_bytes_per_s(0) as f64),
            match spec.uplink_bytes_per_s {
                Some(_) => "given".to_string(),
                None => format!("{}:1", spec.oversubscription),
            },
            if spec.oblivious {
                "rack-oblivious".to_string()
            } else {
                format!(
                    "rack-aware, {} cross-rack connections per peer",
                    spec.cross_connections
                )
            }
        );
        println!(
            "D_topo {:.4} s   ratio/D_topo {:.3}   cross-rack {:.3} F (R-1 = {})",
            r.d_topo_s,
            r.ratio_topo,
            r.cross_rack_copies,
            spec.racks.saturating_sub(1)
        );
    }
    if r.liars > 0 || r.hash_failures > 0 || r.bans > 0 || r.protocol_errors > 0 {
        println!(
            "liars {}  hash failures {}  bans {}  protocol errors {}",
            r.liars, r.hash_failures, r.bans, r.protocol_errors
        );
    }
    if r.peers_left > 0 || r.peers_joined > 0 || r.peers_frozen > 0 || r.origin_left_s.is_some() {
        let origin = r
            .origin_left_s
            .map_or("stayed".to_string(), |t| format!("left at {t:.4} s"));
        println!(
            "churn: {} left, {} joined, {} frozen, origin {origin}",
            r.peers_left, r.peers_joined, r.peers_frozen
        );
    }
    if config.discovery == Discovery::Tracker {
        let d = &config.discovery_config;
        println!(
            "discovery: tracker (max {} peers, numwant {}); {} dials: {} connections made, \
             {} failed (peer gone; {} of them timed out on a frozen peer), {} refused (peer \
             full; {} more let in on an idle connection's slot); peak {} connections per peer; \
             addresses learned from the tracker {}, from PEX {}; {} announces",
            d.max_peers,
            d.numwant,
            r.dials,
            r.connections_made,
            r.failed_dials,
            r.timed_out_dials,
            r.refused_dials,
            r.reclaimed_slots,
            r.peak_peer_connections,
            r.tracker_learned,
            r.pex_learned,
            r.announces
        );
    }
    if !r.upload_timeline.is_empty() {
        let pct = |v: &[f64]| {
            v.iter()
                .map(|x| format!("{:.0}", x * 100.0))
                .collect::<Vec<_>>()
                .join(" ")
        };
        println!(
            "uplink use per {:.4} s (% of u_s+Σu_i): {}",
            r.timeline_bin_s,
            pct(&r.upload_timeline)
        );
        println!(
            "origin uplink use (% of u_s):   {}",
            pct(&r.origin_timeline)
        );
    }
    println!("{} events in {:.2} s wall", r.events, r.wall_s);
}
