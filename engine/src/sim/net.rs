//! The link model: per-node upload and download capacity, fluid fair sharing.
//!
//! A transfer moves `bytes` from `src` to `dst`. While active it progresses at
//! `rate = min(up_cap(src) / active_up(src), down_cap(dst) / active_down(dst))`: each node splits
//! its uplink equally between the transfers it sends and its downlink equally between the
//! transfers it receives, and a transfer gets the smaller of its two shares. This is the
//! one-step approximation of max-min fairness (TCP's long-run behaviour); it never
//! oversubscribes a link but can leave some capacity idle when shares are uneven.
//!
//! When a transfer starts or ends only the rates of the transfers at its `src` and `dst`
//! change, so only those are recomputed (O(degree)). Completion timers go to the caller's event
//! queue via [`Net::drain_timers`] with a version; a timer whose version is stale, or that
//! fires before the (later) current finish time, is handled by [`Net::on_timer`]. A timer is
//! only re-issued when a transfer's finish moves *earlier*, so a rate drop costs no heap push.
//!
//! Invariants: a transfer id is in `up_active[src]` and `down_active[dst]` exactly while it is
//! active, at positions `pos_up` / `pos_down`; `remaining_bytes` is exact as of `last_ns`.

use super::queue::Nanos;

/// Sentinel for "no timer pending" / "never finishes".
const NEVER: Nanos = Nanos::MAX;

#[derive(Clone, Debug)]
struct Transfer {
    active: bool,
    src: u32,
    dst: u32,
    remaining_bytes: f64,
    rate_bytes_per_ns: f64,
    last_ns: Nanos,
    finish_ns: Nanos,
    sched_ns: Nanos,
    version: u32,
    pos_up: u32,
    pos_down: u32,
}

impl Default for Transfer {
    fn default() -> Self {
        Self {
            active: false,
            src: 0,
            dst: 0,
            remaining_bytes: 0.0,
            rate_bytes_per_ns: 0.0,
            last_ns: 0,
            finish_ns: NEVER,
            sched_ns: NEVER,
            version: 0,
            pos_up: 0,
            pos_down: 0,
        }
    }
}

/// A completion timer to put in the event queue: `(time_ns, transfer id, version)`.
pub type TransferTimer = (Nanos, u32, u32);

/// Nodes with link capacities, and the transfers between them.
#[derive(Default)]
pub struct Net {
    up_cap_bytes_per_ns: Vec<f64>,
    down_cap_bytes_per_ns: Vec<f64>,
    up_active: Vec<Vec<u32>>,
    down_active: Vec<Vec<u32>>,
    transfers: Vec<Transfer>,
    timers: Vec<TransferTimer>,
}

impl Net {
    /// Adds a node with the given capacities (bytes per second); returns its index.
    pub fn add_node(&mut self, up_bytes_per_s: u64, down_bytes_per_s: u64) -> u32 {
        self.up_cap_bytes_per_ns.push(up_bytes_per_s as f64 / 1e9);
        self.down_cap_bytes_per_ns
            .push(down_bytes_per_s as f64 / 1e9);
        self.up_active.push(Vec::new());
        self.down_active.push(Vec::new());
        (self.up_active.len() - 1) as u32
    }

    /// Whether transfer `id` is in progress.
    pub fn is_active(&self, id: u32) -> bool {
        self.transfers.get(id as usize).is_some_and(|t| t.active)
    }

    /// Number of transfers `node` is currently sending.
    pub fn active_up(&self, node: u32) -> usize {
        self.up_active.get(node as usize).map_or(0, Vec::len)
    }

    /// Starts transfer `id` (caller-chosen, dense; must not be active) of `bytes` from `src`
    /// to `dst`.
    ///
    /// # Panics
    /// If `id` is already active or a node index is unknown (driver bugs, not input errors).
    pub fn start(&mut self, now: Nanos, id: u32, src: u32, dst: u32, bytes: u64) {
        let idx = id as usize;
        if self.transfers.len() <= idx {
            self.transfers.resize(idx + 1, Transfer::default());
        }
        let pos_up = self.up_active[src as usize].len() as u32;
        let pos_down = self.down_active[dst as usize].len() as u32;
        let t = &mut self.transfers[idx];
        assert!(!t.active, "transfer {id} started twice");
        *t = Transfer {
            active: true,
            src,
            dst,
            // At least one byte so that a zero-length transfer still takes an event.
            remaining_bytes: bytes.max(1) as f64,
            last_ns: now,
            pos_up,
            pos_down,
            version: t.version.wrapping_add(1),
            ..Transfer::default()
        };
        self.up_active[src as usize].push(id);
        self.down_active[dst as usize].push(id);
        self.reshare(now, src, dst);
    }

    /// Handles a completion timer. Returns `true` when transfer `id` has completed (it is then
    /// removed and its neighbours' rates updated), `false` for a stale or early timer.
    pub fn on_timer(&mut self, now: Nanos, id: u32, version: u32) -> bool {
        let Some(t) = self.transfers.get_mut(id as usize) else {
            return false;
        };
        if !t.active || t.version != version {
            return false;
        }
        t.sched_ns = NEVER;
        if t.finish_ns > now {
            // The rate dropped since this timer was set: re-arm at the current finish.
            if t.finish_ns != NEVER {
                t.sched_ns = t.finish_ns;
                self.timers.push((t.finish_ns, id, t.version));
            }
            return false;
        }
        self.remove(now, id);
        true
    }

    /// Cancels transfer `id` if active (a connection closed); returns the bytes not yet sent.
    pub fn cancel(&mut self, now: Nanos, id: u32) -> Option<u64> {
        let t = self.transfers.get_mut(id as usize)?;
        if !t.active {
            return None;
        }
        advance(t, now);
        let left = t.remaining_bytes.max(0.0) as u64;
        self.remove(now, id);
        Some(left)
    }

    /// Hands every timer requested since the last call to `f`.
    pub fn drain_timers(&mut self, mut f: impl FnMut(TransferTimer)) {
        for timer in self.timers.drain(..) {
            f(timer);
        }
    }

    fn remove(&mut self, now: Nanos, id: u32) {
        let t = &mut self.transfers[id as usize];
        t.active = false;
        t.version = t.version.wrapping_add(1);
        let (src, dst, pos_up, pos_down) = (t.src, t.dst, t.pos_up, t.pos_down);
        let ups = &mut self.up_active[src as usize];
        ups.swap_remove(pos_up as usize);
        if let Some(&moved) = ups.get(pos_up as usize) {
            self.transfers[moved as usize].pos_up = pos_up;
        }
        let downs = &mut self.down_active[dst as usize];
        downs.swap_remove(pos_down as usize);
        if let Some(&moved) = downs.get(pos_down as usize) {
            self.transfers[moved as usize].pos_down = pos_down;
        }
        self.reshare(now, src, dst);
    }

    /// Recomputes the rates of every transfer sent by `src` or received by `dst`.
    fn reshare(&mut self, now: Nanos, src: u32, dst: u32) {
        for i in 0..self.up_active[src as usize].len() {
            let id = self.up_active[src as usize][i];
            self.rerate(now, id);
        }
        for i in 0..self.down_active[dst as usize].len() {
            let id = self.down_active[dst as usize][i];
            if self.transfers[id as usize].src != src {
                self.rerate(now, id);
            }
        }
    }

    fn rerate(&mut self, now: Nanos, id: u32) {
        let t = &self.transfers[id as usize];
        let (src, dst) = (t.src as usize, t.dst as usize);
        let up_share = self.up_cap_bytes_per_ns[src] / self.up_active[src].len() as f64;
        let down_share = self.down_cap_bytes_per_ns[dst] / self.down_active[dst].len() as f64;
        let rate = up_share.min(down_share);
        let t = &mut self.transfers[id as usize];
        advance(t, now);
        t.rate_bytes_per_ns = rate;
        t.finish_ns = if rate > 0.0 {
            let left_ns = (t.remaining_bytes / rate).ceil();
            now.saturating_add(left_ns.min(NEVER as f64 / 2.0) as Nanos)
        } else {
            NEVER
        };
        if t.finish_ns < t.sched_ns {
            t.version = t.version.wrapping_add(1);
            t.sched_ns = t.finish_ns;
            self.timers.push((t.finish_ns, id, t.version));
        }
    }
}

/// Brings `remaining_bytes` up to date at `now`.
fn advance(t: &mut Transfer, now: Nanos) {
    let elapsed_ns = now.saturating_sub(t.last_ns) as f64;
    t.remaining_bytes = (t.remaining_bytes - t.rate_bytes_per_ns * elapsed_ns).max(0.0);
    t.last_ns = now;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::queue::EventQueue;

    /// Runs the net until no transfer is active; returns (id, completion time) in order.
    fn run(net: &mut Net, q: &mut EventQueue<(u32, u32)>) -> Vec<(u32, Nanos)> {
        let mut done = Vec::new();
        net.drain_timers(|(t, id, v)| q.push(t, (id, v)));
        while let Some((now, (id, v))) = q.pop() {
            if net.on_timer(now, id, v) {
                done.push((id, now));
            }
            net.drain_timers(|(t, id, v)| q.push(t, (id, v)));
        }
        done
    }

    #[test]
    fn single_transfer_runs_at_link_rate() {
        let mut net = Net::default();
        let a = net.add_node(1_000_000_000, 1_000_000_000);
        let b = net.add_node(1_000_000_000, 1_000_000_000);
        let mut q = EventQueue::default();
        net.start(0, 0, a, b, 1_000_000);
        assert_eq!(run(&mut net, &mut q), vec![(0, 1_000_000)]);
    }

    #[test]
    fn uplink_is_shared_fairly_and_freed_capacity_is_reused() {
        let mut net = Net::default();
        let s = net.add_node(1_000_000_000, 0);
        let p1 = net.add_node(0, 10_000_000_000);
        let p2 = net.add_node(0, 10_000_000_000);
        let mut q = EventQueue::default();
        net.start(0, 0, s, p1, 1_000_000);
        net.start(0, 1, s, p2, 2_000_000);
        // Both at 0.5 B/ns: id 0 done at 2 ms; then id 1 alone at 1 B/ns for its last 1 MB.
        assert_eq!(run(&mut net, &mut q), vec![(0, 2_000_000), (1, 3_000_000)]);
    }

    #[test]
    fn downlink_limits_and_cancel_frees() {
        let mut net = Net::default();
        let s1 = net.add_node(1_000_000_000, 0);
        let s2 = net.add_node(1_000_000_000, 0);
        let d = net.add_node(0, 1_000_000_000);
        let mut q = EventQueue::default();
        net.start(0, 0, s1, d, 1_000_000);
        net.start(0, 1, s2, d, 1_000_000);
        assert_eq!(net.cancel(1_000_000, 1), Some(500_000));
        assert!(!net.is_active(1));
        // id 0 got 500 kB by 1 ms, then the full downlink: done at 1.5 ms.
        assert_eq!(run(&mut net, &mut q), vec![(0, 1_500_000)]);
    }
}
