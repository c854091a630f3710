//! One row: tracker, origin and leechers of one client on the emulated hosts.

use std::io::{Read, Write};
use std::net::{SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::from_whom::{FromWhomFigures, Matrix, Member};
use super::proc::Proc;
use super::report::{median, Row};
use super::scenario::{Scenario, FIRST_LEECHER_HOST, ORIGIN_HOST, TRACKER_HOST};
use super::{client, io_err, BenchError, PeerCtx, RunConfig, SwarmClient, TrackerCtx};
use super::{PEER_PORT, TRACKER_PORT};
use crate::netns::{self, Lan};

/// Name of the distributed file (and so of the torrent).
const DATA_NAME: &str = "swarm.bin";
/// Bound on a tracker opening its port and a seeder registering.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on a process exiting after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Files shared by every row of a run.
#[derive(Debug)]
pub(super) struct Prepared {
    data_dir: PathBuf,
    data_file: PathBuf,
    torrent: PathBuf,
    info_hash_hex: String,
}

/// Writes the data file and the torrent (with `p2pe create --tracker`).
pub(super) fn prepare(scenario: &Scenario, config: &RunConfig) -> Result<Prepared, BenchError> {
    let data_dir = config.work_dir.join("origin");
    std::fs::create_dir_all(&data_dir).map_err(io_err("create work dir"))?;
    let data_file = data_dir.join(DATA_NAME);
    super::write_data(&data_file, scenario.size_bytes, 0x5eed).map_err(io_err("write data"))?;
    let torrent = config.work_dir.join("swarm.torrent");
    let tracker = SocketAddrV4::new(netns::host_addr(TRACKER_HOST), TRACKER_PORT);
    let out = Command::new(&config.p2pe_bin)
        .arg("create")
        .arg(&data_file)
        .arg("-o")
        .arg(&torrent)
        .args(["--piece-length", &config.piece_length])
        .args([
            "--force",
            "--tracker",
            &if config.http_announce {
                format!("http://{tracker}/announce")
            } else {
                format!("udp://{tracker}")
            },
        ])
        .output()
        .map_err(io_err("run p2pe create"))?;
    if !out.status.success() {
        return Err(BenchError::Scenario(format!(
            "p2pe create failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let bytes = std::fs::read(&torrent).map_err(io_err("read torrent"))?;
    let meta = p2pe::wire::metainfo::Metainfo::from_bytes(&bytes)
        .map_err(|e| BenchError::Scenario(format!("torrent: {e}")))?;
    let info_hash_hex = meta
        .info_hash()
        .0
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(Prepared {
        data_dir,
        data_file,
        torrent,
        info_hash_hex,
    })
}

/// The run's context for one row, to name failures.
struct RowCtx<'a> {
    lan: &'a Lan,
    config: &'a RunConfig,
    client: &'a dyn SwarmClient,
    rep: u32,
    dir: PathBuf,
}

impl RowCtx<'_> {
    fn fail(&self, detail: impl Into<String>) -> BenchError {
        BenchError::Row {
            client: self.client.name().to_owned(),
            rep: self.rep,
            detail: detail.into(),
            logs: self.dir.display().to_string(),
        }
    }
    fn stopped(&self) -> bool {
        self.config.stop.load(Ordering::Relaxed)
    }
    fn check_stop(&self) -> Result<(), BenchError> {
        if self.stopped() {
            return Err(BenchError::Interrupted);
        }
        Ok(())
    }
    fn addr(&self, host: usize, port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(
            self.lan
                .hosts()
                .get(host)
                .map_or(netns::host_addr(host), |h| h.addr),
            port,
        )
    }
    fn spawn(
        &self,
        host: usize,
        argv: &[String],
        name: &str,
        stdin: Stdio,
    ) -> Result<Proc, BenchError> {
        let (program, args) = argv
            .split_first()
            .ok_or_else(|| self.fail("empty command"))?;
        let mut cmd = self.lan.command(host, program);
        cmd.args(args);
        let log = self.dir.join(format!("{}.log", name.replace(' ', "-")));
        Proc::spawn(cmd, name, &log, stdin).map_err(io_err(format!("spawn {name}")))
    }
}

/// Whether a client's JSON line reports completion (`{"event":"complete"}` or
/// a summary with `"complete": true`).
pub fn is_complete(v: &serde_json::Value) -> bool {
    v.get("event").and_then(|e| e.as_str()) == Some("complete")
        || v.get("complete").and_then(|c| c.as_bool()) == Some(true)
}

fn is_ready(v: &serde_json::Value) -> bool {
    v.get("event").and_then(|e| e.as_str()) == Some("ready")
}

/// The last `uploaded_bytes` a process reported.
fn uploaded_bytes(p: &Proc) -> Option<u64> {
    p.json
        .iter()
        .rev()
        .find_map(|(_, v)| v.get("uploaded_bytes")?.as_u64())
}

/// Runs one client once; returns its row.
pub(super) fn run_row(
    lan: &Lan,
    scenario: &Scenario,
    config: &RunConfig,
    prep: &Prepared,
    client: &dyn SwarmClient,
    rep: u32,
) -> Result<Row, BenchError> {
    let dir = config.work_dir.join(format!("{}-rep{rep}", client.name()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("tracker")).map_err(io_err("create row dir"))?;
    let ctx = RowCtx {
        lan,
        config,
        client,
        rep,
        dir,
    };
    let timeout_s = config.row_timeout.as_secs() + 60;

    let tracker_addr = ctx.addr(TRACKER_HOST, TRACKER_PORT);
    let tdir = ctx.dir.join("tracker");
    let tctx = TrackerCtx {
        listen: tracker_addr,
        dir: &tdir,
        info_hash_hex: &prep.info_hash_hex,
    };
    let argv = client
        .tracker_cmd(&tctx)
        .map_err(io_err("tracker command"))?;
    let mut tracker = ctx.spawn(TRACKER_HOST, &argv, "tracker", Stdio::null())?;
    wait_listening(&ctx, &mut tracker, tracker_addr)?;

    let seeder_ctx = PeerCtx {
        torrent: &prep.torrent,
        dir: &prep.data_dir,
        listen: ctx.addr(ORIGIN_HOST, PEER_PORT),
        timeout_s,
        others: &[],
        stay: false,
        rack: None,
    };
    let mut seeder = ctx.spawn(
        ORIGIN_HOST,
        &client.seeder_cmd(&seeder_ctx).argv,
        "seeder",
        Stdio::null(),
    )?;
    if client.seeder_announces() {
        wait_seeded(&ctx, &mut seeder, tracker_addr, &prep.info_hash_hex)?;
    } else {
        wait_listening(&ctx, &mut seeder, seeder_ctx.listen)?;
    }

    let (mut leechers, barrier) = spawn_leechers(&ctx, scenario, prep, timeout_s)?;
    let wire0 = lan
        .sent_wire_bytes(ORIGIN_HOST)
        .map_err(io_err("origin counter"))?;
    let racks0 = rack_uplink_bytes(lan)?;
    let (_t0, completion_s) = release_and_wait(&ctx, &mut leechers, barrier)?;
    let wire_bytes = lan
        .sent_wire_bytes(ORIGIN_HOST)
        .map_err(io_err("origin counter"))?
        .saturating_sub(wire0);
    let cross_rack_bytes: u64 = rack_uplink_bytes(lan)?
        .iter()
        .zip(&racks0)
        .map(|(b, b0)| b.saturating_sub(*b0))
        .sum();

    let mut cpu_s = 0.0;
    for p in &mut leechers {
        cpu_s += p
            .terminate(STOP_GRACE)
            .map_err(io_err("reap leecher"))?
            .cpu_s;
    }
    cpu_s += seeder
        .terminate(STOP_GRACE)
        .map_err(io_err("stop seeder"))?
        .cpu_s;
    let _ = tracker.terminate(STOP_GRACE);

    let mut verified = true;
    for i in 0..leechers.len() {
        let copy = ctx
            .dir
            .join(format!("peer{}", FIRST_LEECHER_HOST + i))
            .join(DATA_NAME);
        let same = super::same_bytes(&prep.data_file, &copy).unwrap_or(false);
        if !same {
            verified = false;
            eprintln!(
                "swarm bench: {} differs from the origin's data",
                copy.display()
            );
        } else {
            let _ = std::fs::remove_file(&copy);
        }
    }
    if !verified {
        return Err(ctx.fail("a copy does not match the origin's data"));
    }
    let from_whom = from_whom(&ctx, scenario, &leechers);
    let f = scenario.size_bytes as f64;
    let bounds = scenario.bounds();
    let max_s = completion_s.last().copied().unwrap_or(0.0);
    Ok(Row {
        client: client.name().to_owned(),
        tracker: config.tracker_name.clone(),
        scenario: scenario.label(),
        rep,
        hosts: scenario.hosts,
        leechers: leechers.len(),
        size_bytes: scenario.size_bytes,
        min_s: completion_s.first().copied().unwrap_or(0.0),
        median_s: median(&completion_s),
        max_s,
        completion_s,
        origin_upload_copies: uploaded_bytes(&seeder)
            .or_else(|| client.origin_payload_bytes())
            .map(|b| b as f64 / f),
        origin_wire_copies: wire_bytes as f64 / f,
        payload_mb_per_cpu_s: leechers.len() as f64 * f / 1e6 / cpu_s.max(1e-9),
        cpu_s,
        d_cs_s: bounds.d_cs_s,
        d_p2p_s: bounds.d_p2p_s,
        ratio: max_s / bounds.d_p2p_s,
        d_topo_s: scenario.d_topo_s(),
        cross_rack_copies: (lan.racks() > 0).then(|| cross_rack_bytes as f64 / f),
        verified,
        from_whom,
        sim: None,
    })
}

/// Every rack uplink's wire-byte counter, by rack (empty when flat).
fn rack_uplink_bytes(lan: &Lan) -> Result<Vec<u64>, BenchError> {
    (0..lan.racks())
        .map(|k| {
            lan.rack_uplink_wire_bytes(k)
                .map_err(io_err(format!("rack {k} uplink counter")))
        })
        .collect()
}

/// Builds the row's from-whom matrix ([`Matrix`]) from the leechers'
/// completion lines, writes `from-whom.tsv` (and `from-whom-pieces.tsv` when
/// the client counts pieces) into the row's directory, and returns its
/// figures; `None` when the client reports no sources.
fn from_whom(ctx: &RowCtx, scenario: &Scenario, leechers: &[Proc]) -> Option<FromWhomFigures> {
    let first_slow = scenario.hosts - scenario.slow_leechers();
    let member = |host: usize, label: String| Member {
        label,
        ip: (*ctx.addr(host, PEER_PORT).ip()).into(),
        slow: host >= first_slow,
    };
    let mut members = vec![member(ORIGIN_HOST, "origin".to_owned())];
    members.extend((FIRST_LEECHER_HOST..scenario.hosts).map(|h| member(h, format!("peer{h}"))));
    let reports: Vec<Option<serde_json::Value>> = leechers
        .iter()
        .map(|p| p.find_json(is_complete).map(|(_, v)| v.clone()))
        .collect();
    let m = Matrix::build(members, &reports)?;
    let _ = std::fs::write(ctx.dir.join("from-whom.tsv"), m.tsv_mib());
    if let Some(pieces) = m.tsv_pieces() {
        let _ = std::fs::write(ctx.dir.join("from-whom-pieces.tsv"), pieces);
    }
    Some(m.figures(scenario.size_bytes))
}

/// Starts every leecher (blocked on the shared stdin pipe) and waits until
/// each has printed its ready line. Returns them and the pipe's write end:
/// dropping it releases them all at once.
fn spawn_leechers(
    ctx: &RowCtx,
    scenario: &Scenario,
    prep: &Prepared,
    timeout_s: u64,
) -> Result<(Vec<Proc>, std::io::PipeWriter), BenchError> {
    let (reader, writer) = std::io::pipe().map_err(io_err("start barrier pipe"))?;
    let mut leechers = Vec::new();
    let members: Vec<SocketAddrV4> = (ORIGIN_HOST..scenario.hosts)
        .map(|h| ctx.addr(h, PEER_PORT))
        .collect();
    for host in FIRST_LEECHER_HOST..scenario.hosts {
        let me = ctx.addr(host, PEER_PORT);
        let others: Vec<SocketAddrV4> = members.iter().copied().filter(|a| *a != me).collect();
        let dir = ctx.dir.join(format!("peer{host}"));
        std::fs::create_dir_all(&dir).map_err(io_err("create leecher dir"))?;
        let peer = PeerCtx {
            torrent: &prep.torrent,
            dir: &dir,
            listen: me,
            timeout_s,
            others: &others,
            stay: ctx.config.leechers_stay,
            rack: None,
        };
        let rack = scenario.rack_label(host);
        let cmd = ctx.client.leecher_cmd(&PeerCtx {
            rack: rack.as_deref(),
            ..peer
        });
        let argv = if cmd.self_barrier {
            cmd.argv
        } else {
            client::barrier_wrap(&cmd.argv)
        };
        let stdin = Stdio::from(reader.try_clone().map_err(io_err("dup barrier pipe"))?);
        leechers.push(ctx.spawn(host, &argv, &format!("leecher {host}"), stdin)?);
    }
    drop(reader);
    for p in &mut leechers {
        let at = p
            .wait_json(is_ready, STARTUP_TIMEOUT, &|| ctx.stopped())
            .map_err(|_| BenchError::Interrupted)?;
        if at.is_none() {
            return Err(ctx.fail(format!("{} never became ready", p.name)));
        }
    }
    Ok((leechers, writer))
}

/// How often a row samples the origin's upload counter.
const ORIGIN_SAMPLE: Duration = Duration::from_millis(100);

/// Releases the leechers (drops the barrier's write end) and waits, bounded
/// by the row timeout, until every one has reported completion. Returns the
/// release instant and the sorted completion times in seconds.
fn release_and_wait(
    ctx: &RowCtx,
    leechers: &mut [Proc],
    barrier: std::io::PipeWriter,
) -> Result<(Instant, Vec<f64>), BenchError> {
    let t0 = Instant::now();
    drop(barrier);
    let deadline = t0 + ctx.config.row_timeout;
    let mut done: Vec<Option<f64>> = vec![None; leechers.len()];
    // The origin's upload over time (seconds, wire bytes), every
    // ORIGIN_SAMPLE: shows start-up delay and idle tails of a row.
    let mut origin_trace = String::from("seconds\torigin_wire_bytes\n");
    let mut next_sample = t0;
    while done.iter().any(Option::is_none) {
        if Instant::now() >= next_sample {
            if let Ok(b) = ctx.lan.sent_wire_bytes(ORIGIN_HOST) {
                let t = t0.elapsed().as_secs_f64();
                origin_trace.push_str(&format!("{t:.3}\t{b}\n"));
            }
            next_sample += ORIGIN_SAMPLE;
        }
        ctx.check_stop()?;
        for (p, slot) in leechers.iter_mut().zip(done.iter_mut()) {
            if slot.is_some() {
                continue;
            }
            let exit = p.try_reap().map_err(io_err("wait4"))?.cloned();
            if let Some((at, _)) = p.find_json(is_complete) {
                *slot = Some(at.saturating_duration_since(t0).as_secs_f64());
            } else if let Some(exit) = exit {
                return Err(ctx.fail(format!(
                    "{} exited before completing ({})",
                    p.name, exit.status
                )));
            }
        }
        if Instant::now() >= deadline {
            let left = done.iter().filter(|d| d.is_none()).count();
            return Err(ctx.fail(format!(
                "{left} leechers not complete after {} s",
                ctx.config.row_timeout.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut times: Vec<f64> = done.into_iter().flatten().collect();
    // Who finished when, for reading a row's stragglers from its logs.
    let by_peer: String = leechers
        .iter()
        .zip(&times)
        .map(|(p, t)| format!("{}\t{t:.3}\n", p.name))
        .collect();
    let _ = std::fs::write(ctx.dir.join("completion.tsv"), by_peer);
    let _ = std::fs::write(ctx.dir.join("origin-upload.tsv"), origin_trace);
    times.sort_by(f64::total_cmp);
    Ok((t0, times))
}

/// Waits (bounded) until `addr` accepts TCP connections from the origin host.
fn wait_listening(ctx: &RowCtx, p: &mut Proc, addr: SocketAddrV4) -> Result<(), BenchError> {
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        ctx.check_stop()?;
        if let Ok(Some(exit)) = p.try_reap().map(|e| e.cloned()) {
            return Err(ctx.fail(format!("{} exited at start-up ({})", p.name, exit.status)));
        }
        let to = SocketAddr::V4(addr);
        if ctx
            .lan
            .connect_from(ORIGIN_HOST, to, Duration::from_millis(500))
            .is_ok()
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(ctx.fail(format!("{} did not listen on {addr}", p.name)));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits (bounded) until the seeder is registered: the tracker's scrape
/// counts a complete peer, or the seeder printed `{"event":"ready"}` having
/// had its announce answered.
fn wait_seeded(
    ctx: &RowCtx,
    seeder: &mut Proc,
    tracker: SocketAddrV4,
    info_hash_hex: &str,
) -> Result<(), BenchError> {
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        ctx.check_stop()?;
        if let Ok(Some(exit)) = seeder.try_reap() {
            return Err(ctx.fail(format!("seeder exited at start-up ({})", exit.status)));
        }
        let announced = |v: &serde_json::Value| is_ready(v) && v["announced"] == true;
        if seeder.find_json(announced).is_some() {
            return Ok(());
        }
        if scrape_complete(ctx.lan, tracker, info_hash_hex).is_some_and(|n| n >= 1) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(ctx.fail("seeder not registered at the tracker"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The `complete` count of a tracker scrape (BEP 48) for one info-hash, or
/// `None` if the tracker cannot be asked or does not answer in kind.
fn scrape_complete(lan: &Lan, tracker: SocketAddrV4, info_hash_hex: &str) -> Option<u64> {
    let mut escaped = String::new();
    for pair in info_hash_hex.as_bytes().chunks(2) {
        escaped.push('%');
        escaped.push_str(std::str::from_utf8(pair).ok()?);
    }
    let timeout = Duration::from_secs(1);
    let mut s = lan
        .connect_from(ORIGIN_HOST, SocketAddr::V4(tracker), timeout)
        .ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    let req = format!("GET /scrape?info_hash={escaped} HTTP/1.0\r\nHost: {tracker}\r\n\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut body = Vec::new();
    let _ = s.take(64 * 1024).read_to_end(&mut body);
    let key = b"8:completei";
    let at = body.windows(key.len()).position(|w| w == key)? + key.len();
    let digits: String = body
        .get(at..)?
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .map(|&b| b as char)
        .collect();
    digits.parse().ok()
}
