//! A node's DHT threads (BEP 5, Mainline DHT through the `mainline` crate):
//! one DHT node (one UDP port) per session, shared by all its torrents
//! (`build`); per torrent a thread that looks up peers of its info-hash and
//! announces our listen port, then hands the peers to its
//! `DiscoveryHost` like tracker peers. [`super::metadata`] builds its
//! look-up node here too.
//!
//! Never started for private torrents (BEP 27). The DHT node runs in server
//! mode (datacenter nodes are reachable, and a closed cluster needs every
//! node to answer). A round is `get_peers` then `announce_peer`; rounds
//! repeat every [`DhtConfig::interval`] once an announce was stored and the
//! node has peers (or is complete), every `RETRY` (2 s) before that.

use std::net::{SocketAddr, SocketAddrV4};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use mainline::{Dht, Id};

use super::host::{DiscoveryHost, Source};
use crate::base::InfoHash;

/// Delay between rounds while nothing was found or the announce failed.
const RETRY: Duration = Duration::from_secs(2);

/// DHT settings of a node (BEP 5).
#[derive(Debug, Clone)]
pub struct DhtConfig {
    /// Bootstrap nodes, `host:port` (`None`: the public Mainline routers;
    /// empty: this node starts a new DHT, e.g. the first node of a cluster).
    pub bootstrap: Option<Vec<String>>,
    /// UDP address of the DHT node (port 0: any free port).
    pub listen: SocketAddrV4,
    /// Time between rounds once the node is announced and has peers.
    pub interval: Duration,
}

impl Default for DhtConfig {
    /// Public routers, any port on all interfaces, a round every 5 minutes.
    fn default() -> Self {
        DhtConfig {
            bootstrap: None,
            listen: SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 0),
            interval: Duration::from_secs(300),
        }
    }
}

/// Binds a DHT node (server mode) as `config` says: the one node of a
/// session, whose handle every torrent's [`DhtNode`] clones.
///
/// # Errors
/// The UDP socket cannot be bound.
pub(crate) fn build(config: &DhtConfig) -> std::io::Result<Dht> {
    let mut b = Dht::builder();
    b.server_mode().bind_address(*config.listen.ip());
    if config.listen.port() != 0 {
        b.port(config.listen.port());
    }
    match &config.bootstrap {
        Some(list) if list.is_empty() => {
            b.no_bootstrap();
        }
        Some(list) => {
            b.bootstrap(list);
        }
        None => {}
    }
    b.build()
}

/// The running DHT thread of one torrent.
pub(crate) struct DhtNode {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<()>,
    local: SocketAddrV4,
}

impl DhtNode {
    /// Starts the torrent's look-up and announce thread on the session's
    /// DHT node `dht`.
    ///
    /// # Errors
    /// The thread cannot be spawned.
    #[allow(deprecated)] // `info`: the blocking API, see `run`
    pub(crate) fn spawn(
        dht: Dht,
        config: &DhtConfig,
        info_hash: InfoHash,
        port: u16,
        host: Arc<dyn DiscoveryHost>,
    ) -> std::io::Result<DhtNode> {
        let local = dht.info().local_addr();
        let id = Id::from_bytes(info_hash.0).map_err(std::io::Error::other)?;
        let interval = config.interval;
        let (stop, stop_rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("p2pe-dht".into())
            .spawn(move || run(&dht, id, port, &*host, &stop_rx, interval))?;
        Ok(DhtNode {
            stop,
            thread,
            local,
        })
    }

    /// The DHT node's UDP address.
    pub(crate) fn local_addr(&self) -> SocketAddrV4 {
        self.local
    }

    /// Ends the thread after its current query (bounded by the crate's
    /// request timeouts); the DHT node closes when its handle drops.
    pub(crate) fn stop(self) {
        let _ = self.stop.send(());
        if self.thread.is_finished() {
            let _ = self.thread.join();
        }
        // A query in progress finishes on its own; the thread is detached.
    }
}

#[allow(deprecated)] // the blocking API: this is a plain thread, not an async runtime
fn run(
    dht: &Dht,
    id: Id,
    port: u16,
    host: &dyn DiscoveryHost,
    stop: &mpsc::Receiver<()>,
    interval: Duration,
) {
    let mut wait = Duration::ZERO;
    let mut warned = false;
    loop {
        match stop.recv_timeout(wait) {
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            _ => return,
        }
        let mut found = Vec::new();
        for batch in dht.get_peers(id) {
            found.extend(batch.into_iter().map(SocketAddr::V4));
        }
        if !found.is_empty() {
            host.found_peers(found, Source::Dht);
        }
        let announced = match dht.announce_peer(id, Some(port)) {
            Ok(_) => true,
            Err(e) => {
                if !warned {
                    host.log(format!("dht: announce failed ({e}); retrying"));
                    warned = true;
                }
                false
            }
        };
        let p = host.progress();
        let settled = p.complete || p.peers > 0;
        wait = if announced && settled {
            interval
        } else {
            RETRY
        };
    }
}
