//! Starting, addressing and stopping the workers.

use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use socket2::{Domain, Protocol, Socket, Type};

use super::ctx::PostError;
use super::sys;
use super::worker::Worker;
use super::{Handler, RuntimeConfig};

/// The one worker's mailbox: a bounded channel plus the eventfd its ring
/// keeps a read posted on.
pub(crate) struct Mailbox<M> {
    tx: Sender<M>,
    pub(crate) efd: File,
}

/// The workers' mailboxes and the runtime's stop flag, shared by all workers
/// and the [`RuntimeHandle`]; lock-free (channels and an atomic flag).
pub(crate) struct Mailboxes<M> {
    pub(crate) workers: Vec<Mailbox<M>>,
    pub(crate) stop: AtomicBool,
}

impl<M> Mailboxes<M> {
    pub(crate) fn post(&self, worker: usize, msg: M) -> Result<(), PostError> {
        let mb = self
            .workers
            .get(worker)
            .ok_or(PostError::NoSuchWorker(worker))?;
        mb.tx.try_send(msg).map_err(|e| match e {
            TrySendError::Full(_) => PostError::Full(worker),
            TrySendError::Disconnected(_) => PostError::Exited(worker),
        })?;
        sys::eventfd_signal(&mb.efd).map_err(|_| PostError::Exited(worker))
    }

    fn wake_all(&self) {
        for mb in &self.workers {
            // A failed wake only matters for a worker that already exited.
            let _ = sys::eventfd_signal(&mb.efd);
        }
    }
}

/// Handle on a running runtime whose handlers take control messages of type
/// `M` ([`Handler::Msg`]); dropping it shuts the runtime down.
pub struct RuntimeHandle<M> {
    shared: Arc<Mailboxes<M>>,
    threads: Vec<JoinHandle<io::Result<()>>>,
    local_addr: Option<SocketAddr>,
}

impl<M> RuntimeHandle<M> {
    /// The address the workers listen on (with the chosen port), if any.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// Number of workers.
    pub fn workers(&self) -> usize {
        self.shared.workers.len()
    }

    /// Sends a control message to worker `worker`'s `on_control`.
    ///
    /// # Errors
    /// As [`Ctx::post`](super::Ctx::post).
    pub fn post(&self, worker: usize, msg: M) -> Result<(), PostError> {
        self.shared.post(worker, msg)
    }

    /// A handle that posts control messages to the workers from another
    /// thread (e.g. a node's web seed fetchers); posts fail with
    /// [`PostError::Exited`] once the runtime has stopped.
    pub fn poster(&self) -> Poster<M> {
        Poster {
            shared: self.shared.clone(),
        }
    }

    /// Waits until every worker has exited (each handler's `is_done`, or a
    /// `shutdown`).
    ///
    /// # Errors
    /// The first error a worker exited with (ring setup, listener, fatal
    /// `io_uring_enter` failure); a panicking worker is reported as `Other`.
    pub fn join(mut self) -> io::Result<()> {
        self.join_all()
    }

    /// Asks every worker to exit (closing its connections without further
    /// callbacks) and waits for them.
    ///
    /// # Errors
    /// As [`RuntimeHandle::join`].
    pub fn shutdown(mut self) -> io::Result<()> {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.wake_all();
        self.join_all()
    }

    fn join_all(&mut self) -> io::Result<()> {
        let mut first = Ok(());
        for t in self.threads.drain(..) {
            let r = t
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("worker panicked")));
            if first.is_ok() {
                first = r;
            }
        }
        first
    }
}

impl<M> Drop for RuntimeHandle<M> {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.shared.stop.store(true, Ordering::Release);
            self.shared.wake_all();
            let _ = self.join_all();
        }
    }
}

/// Posts control messages to a runtime's workers from any thread
/// ([`RuntimeHandle::poster`]); cloning it is cheap.
pub struct Poster<M> {
    shared: Arc<Mailboxes<M>>,
}

impl<M> Clone for Poster<M> {
    fn clone(&self) -> Self {
        Poster {
            shared: self.shared.clone(),
        }
    }
}

impl<M> Poster<M> {
    /// Sends a control message to worker `worker`'s `on_control`.
    ///
    /// # Errors
    /// As [`Ctx::post`](super::Ctx::post).
    pub fn post(&self, worker: usize, msg: M) -> Result<(), PostError> {
        self.shared.post(worker, msg)
    }

    /// Number of workers.
    pub fn workers(&self) -> usize {
        self.shared.workers.len()
    }
}

impl<M> std::fmt::Debug for Poster<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Poster")
            .field("workers", &self.shared.workers.len())
            .finish()
    }
}

/// A `SO_REUSEPORT` listener bound to `addr`.
fn listener(addr: SocketAddr) -> io::Result<Socket> {
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    sock.set_cloexec(true)?;
    sock.set_reuse_address(true)?;
    sock.set_reuse_port(true)?;
    sock.bind(&addr.into())?;
    sock.listen(1024)?;
    Ok(sock)
}

/// Binds one listener per worker on the same address (the first picks the
/// port if `addr` has port 0).
fn listeners(addr: SocketAddr, n: usize) -> io::Result<(Vec<Socket>, SocketAddr)> {
    let first = listener(addr)?;
    let bound = first
        .local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::other("listener has no inet address"))?;
    let mut all = vec![first];
    for _ in 1..n {
        all.push(listener(bound)?);
    }
    Ok((all, bound))
}

/// Starts `config.workers` worker threads, worker `i` running the handler
/// `factory(i)`.
///
/// # Errors
/// Creating eventfds, binding the listeners, or spawning threads failed.
/// Errors of a worker's own setup (its ring) surface from
/// [`RuntimeHandle::join`].
pub fn run<H: Handler>(
    config: RuntimeConfig,
    factory: impl Fn(usize) -> H,
) -> io::Result<RuntimeHandle<H::Msg>> {
    let n = config.workers.max(1);
    let (mut socks, local_addr) = match config.listen {
        Some(addr) => {
            let (s, a) = listeners(addr, n)?;
            (s.into_iter().map(Some).collect(), Some(a))
        }
        None => ((0..n).map(|_| None).collect::<Vec<_>>(), None),
    };
    let mut mailboxes = Vec::with_capacity(n);
    let mut inboxes: Vec<Receiver<H::Msg>> = Vec::with_capacity(n);
    for _ in 0..n {
        let (tx, rx) = crossbeam_channel::bounded(config.control_capacity.max(1));
        mailboxes.push(Mailbox {
            tx,
            efd: sys::eventfd()?,
        });
        inboxes.push(rx);
    }
    let shared = Arc::new(Mailboxes {
        workers: mailboxes,
        stop: AtomicBool::new(false),
    });
    let mut handle = RuntimeHandle {
        shared: shared.clone(),
        threads: Vec::with_capacity(n),
        local_addr,
    };
    for (i, rx) in inboxes.into_iter().enumerate() {
        let handler = factory(i);
        let listen = socks.get_mut(i).and_then(Option::take);
        let (shared, config) = (shared.clone(), config.clone());
        let t = std::thread::Builder::new()
            .name(format!("p2pe-rt-{i}"))
            .spawn(move || Worker::run(i, config, shared, rx, listen, handler))?;
        handle.threads.push(t);
    }
    Ok(handle)
}
