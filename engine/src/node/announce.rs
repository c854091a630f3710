//! The node's tracker thread: a [`TrackerDriver`] announcing the torrent
//! (BEP 3 events, BEP 12 tiers, BEP 15 UDP) off the runtime worker.
//!
//! Each loop it copies the worker's progress (`uploaded`, `downloaded`,
//! `left`) into the client, turns completion into a `completed` announce,
//! asks for peers early while the node has none, and hands the peers the
//! trackers return to the workers that dial them through
//! [`TorrentShared::discovered`] (drained on each worker's timer tick, at most
//! 100 ms later). Warnings go to the node's
//! log ([`TorrentShared::log`]). A dead tracker never stops the node: the client
//! backs off and retries while known peers keep transferring.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::base::PeerId;
use crate::discovery::tracker_client::{ClientConfig, TrackerClient};
use crate::discovery::tracker_io::TrackerDriver;
use crate::wire::metainfo::InfoHash;

use super::peer::Source;
use super::{TorrentShared, TRACKER_STOP_BOUND as STOP_BOUND};

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
    pub(crate) shared: Arc<TorrentShared>,
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
    /// [`STOP_BOUND`] (a tracker stuck mid-HTTP is abandoned, the thread
    /// detached).
    pub(crate) fn stop(self) {
        let _ = self.stop.send(());
        if self.done.recv_timeout(STOP_BOUND + POLL).is_ok() {
            let _ = self.thread.join();
        }
    }
}

fn run(p: Params, stop: &mpsc::Receiver<()>) {
    let shared = p.shared;
    let http_timeout = p.client.http_timeout;
    let client = TrackerClient::new(p.client, &p.tiers, p.info_hash, p.peer_id, p.port, p.seed);
    let mut driver = TrackerDriver::new(client, http_timeout);
    let mut was_complete = shared.complete.load(Ordering::Acquire);
    let mut announces_ok = 0;
    loop {
        update_progress(&mut driver, &shared, &mut was_complete);
        driver.step(POLL);
        forward(&mut driver, &shared, &mut announces_ok);
        match stop.try_recv() {
            Err(mpsc::TryRecvError::Empty) => {}
            _ => break,
        }
    }
    update_progress(&mut driver, &shared, &mut was_complete);
    let now = driver.now();
    driver.client_mut().handle_stopped(now);
    let end = Instant::now() + STOP_BOUND;
    while !driver.client_mut().is_done() {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            shared.log("tracker: no answer to the `stopped` announce; leaving anyway".into());
            break;
        }
        driver.step(left.min(POLL));
    }
    forward(&mut driver, &shared, &mut announces_ok);
}

/// Copies the worker's counters into the client; completion becomes a
/// `completed` announce; a leecher without peers asks for some early.
fn update_progress(driver: &mut TrackerDriver, shared: &TorrentShared, was_complete: &mut bool) {
    let now = driver.now();
    let complete = shared.complete.load(Ordering::Acquire);
    let c = driver.client_mut();
    c.set_progress(
        shared.uploaded_bytes.load(Ordering::Acquire),
        shared.downloaded_bytes.load(Ordering::Acquire),
        shared.left_bytes.load(Ordering::Acquire),
    );
    if complete && !*was_complete {
        c.handle_completed(now);
    }
    *was_complete = complete;
    if !complete && shared.peers.load(Ordering::Acquire) == 0 {
        // Bounded by the tracker's `min interval` inside the client.
        c.handle_want_peers(now);
    }
}

/// Moves warnings to the log and peers to the worker.
fn forward(driver: &mut TrackerDriver, shared: &TorrentShared, announces_ok: &mut u32) {
    let c = driver.client_mut();
    while let Some(w) = c.poll_warning() {
        shared.log(format!("tracker: {w}"));
    }
    shared
        .announces_failed
        .store(c.announces_failed(), Ordering::Release);
    let ok = c.announces_ok();
    if ok != *announces_ok {
        if *announces_ok == 0 {
            shared.log("tracker: first announce accepted".into());
        }
        *announces_ok = ok;
        shared.announces_ok.store(ok, Ordering::Release);
    }
    let peers: Vec<SocketAddr> = c.poll_peers();
    if peers.is_empty() {
        return;
    }
    shared.discovered(peers, Source::Tracker);
}
