//! A node's tracker thread: a [`TrackerDriver`] announcing one torrent
//! (BEP 3 events, BEP 12 tiers, BEP 15 UDP) off the runtime workers.
//!
//! Each loop it copies the torrent's progress (`uploaded`, `downloaded`,
//! `left`, from [`DiscoveryHost::progress`]) into the client, turns
//! completion into a `completed` announce, asks for peers early while the
//! node is short of them ([`wants_more_peers`], the policy the simulator runs
//! too: an incomplete node below a quarter of its `max_peers`; the client
//! still waits out the tracker's `min interval`), and hands the peers the
//! trackers return to the host ([`DiscoveryHost::found_peers`]; the node
//! wakes the worker that owns each address, which dials it at once, and the
//! workers' timer tick picks up any the wake-up missed). Warnings go to the host's log. A
//! dead tracker never stops the node: the client backs off and retries while
//! known peers keep transferring.

use std::net::SocketAddr;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::host::{DiscoveryHost, Source};
use super::tracker_client::{ClientConfig, TrackerClient};
use super::tracker_io::TrackerDriver;
use crate::base::{InfoHash, PeerId};
use crate::core::dialer::wants_more_peers;

/// How long `Announcer::stop` (at [`crate::node::Node::shutdown`]) waits for the trackers to take the `stopped`
/// announce (a tracker that does not answer in time is left alone).
pub const TRACKER_STOP_BOUND: Duration = Duration::from_secs(3);

/// Longest wait between two looks at the node's progress.
const POLL: Duration = Duration::from_millis(200);

/// What the tracker thread needs.
pub(crate) struct Params {
    pub(crate) tiers: Vec<Vec<String>>,
    pub(crate) info_hash: InfoHash,
    pub(crate) peer_id: PeerId,
    pub(crate) port: u16,
    pub(crate) client: ClientConfig,
    pub(crate) seed: u64,
    /// The node's connection bound ([`crate::node::NodeConfig::max_peers`]).
    pub(crate) max_peers: usize,
    pub(crate) host: Arc<dyn DiscoveryHost>,
}

/// The running tracker thread.
pub(crate) struct Announcer {
    stop: mpsc::Sender<()>,
    done: mpsc::Receiver<()>,
    thread: JoinHandle<()>,
}

impl Announcer {
    /// Starts the thread; the first announce (`started`) goes out at once.
    pub(crate) fn spawn(p: Params) -> std::io::Result<Announcer> {
        let (stop, stop_rx) = mpsc::channel();
        let (done_tx, done) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("p2pe-tracker".into())
            .spawn(move || {
                run(p, &stop_rx);
                let _ = done_tx.send(());
            })?;
        Ok(Announcer { stop, done, thread })
    }

    /// Announces `stopped` and ends the thread, waiting at most about
    /// [`TRACKER_STOP_BOUND`] (a tracker stuck mid-HTTP is abandoned, the thread
    /// detached).
    pub(crate) fn stop(self) {
        let _ = self.stop.send(());
        if self.done.recv_timeout(TRACKER_STOP_BOUND + POLL).is_ok() {
            let _ = self.thread.join();
        }
    }
}

fn run(p: Params, stop: &mpsc::Receiver<()>) {
    let host = &*p.host;
    let http_timeout = p.client.http_timeout;
    let client = TrackerClient::new(p.client, &p.tiers, p.info_hash, p.peer_id, p.port, p.seed);
    let mut driver = TrackerDriver::new(client, http_timeout);
    let mut was_complete = host.progress().complete;
    let mut announces_ok = 0;
    loop {
        update_progress(&mut driver, host, p.max_peers, &mut was_complete);
        driver.step(POLL);
        forward(&mut driver, host, &mut announces_ok);
        match stop.try_recv() {
            Err(mpsc::TryRecvError::Empty) => {}
            _ => break,
        }
    }
    update_progress(&mut driver, host, p.max_peers, &mut was_complete);
    let now = driver.now();
    driver.client_mut().handle_stopped(now);
    let end = Instant::now() + TRACKER_STOP_BOUND;
    while !driver.client_mut().is_done() {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            host.log("tracker: no answer to the `stopped` announce; leaving anyway".into());
            break;
        }
        driver.step(left.min(POLL));
    }
    forward(&mut driver, host, &mut announces_ok);
}

/// Copies the torrent's counters into the client; completion becomes a
/// `completed` announce; a leecher short of peers asks for some early.
fn update_progress(
    driver: &mut TrackerDriver,
    host: &dyn DiscoveryHost,
    max_peers: usize,
    was_complete: &mut bool,
) {
    let now = driver.now();
    let p = host.progress();
    let complete = p.complete;
    let c = driver.client_mut();
    c.set_progress(p.uploaded_bytes, p.downloaded_bytes, p.left_bytes);
    if complete && !*was_complete {
        c.handle_completed(now);
    }
    *was_complete = complete;
    if wants_more_peers(p.peers as usize, max_peers, complete) {
        // Bounded by the tracker's `min interval` inside the client.
        c.handle_want_peers(now);
    }
}

/// Moves warnings to the log, the counters and the peers to the host.
fn forward(driver: &mut TrackerDriver, host: &dyn DiscoveryHost, announces_ok: &mut u32) {
    let c = driver.client_mut();
    while let Some(w) = c.poll_warning() {
        host.log(format!("tracker: {w}"));
    }
    let ok = c.announces_ok();
    if ok != *announces_ok && *announces_ok == 0 {
        host.log("tracker: first announce accepted".into());
    }
    *announces_ok = ok;
    host.set_announce_counts(ok, c.announces_failed());
    let peers: Vec<SocketAddr> = c.poll_peers();
    if peers.is_empty() {
        return;
    }
    host.found_peers(peers, Source::Tracker);
}
