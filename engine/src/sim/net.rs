//! The link model: per-node upload and download capacity, fluid fair sharing.
//!
//! A transfer moves `bytes` from `src` to `dst`. Two sharing models ([`Sharing`]):
//! - [`Sharing::Equal`]: `rate = min(up_cap(src) / active_up(src), down_cap(dst) /
//!   active_down(dst))`: each node splits each link equally and a transfer gets the smaller of
//!   its two shares. Exact when one side is the only bottleneck (the server strategies); can leave
//!   capacity idle when shares are uneven. On a start/end only the transfers at `src` and `dst`
//!   are re-rated (O(degree)).
//! - [`Sharing::WaterFill`] (a closer approximation of max-min fairness, TCP's long-run
//!   behaviour): each uplink is water-filled over its transfers, capping each at its receiver's
//!   equal downlink share (`share_up`); then each downlink is water-filled over its transfers,
//!   capping each at its `share_up` (`share_down`); a transfer runs at
//!   `min(share_up, share_down)`. So a sender whose receiver is busy gives the spare uplink to
//!   its other transfers, and a receiver takes what its senders can give. On a start/end at
//!   `(src, dst)` the uplinks of `src` and of every sender into `dst`, then the downlinks of `dst`
//!   and of every receiver from `src`, are refilled: O(degree²). Other shares may be stale
//!   (slightly suboptimal) but every share is set by a fill over the link's current transfers,
//!   so no link is ever oversubscribed.
//!
//! Far-end refills ([`Net::set_far_refill_delay`], water-fill with `Fair` uplinks): with a
//! delay `Δ > 0` a start/end at `(src, dst)` refills only the uplink of `src` and the
//! downlink of `dst` at once (and rerates their transfers); the far ends it would refill
//! (the uplinks of the other senders into `dst`, the downlinks of the other receivers from
//! `src`, and `dst`'s downlink again after those uplinks) are marked stale and refilled
//! together, uplinks then downlinks, by one sync at most `Δ` later, which coalesces every
//! change to a link in between into one fill. A stale share was set by a fill over the
//! link's transfers, so it can only leave capacity idle (never oversubscribe a link), for
//! at most `Δ` per change. A transfer whose rate a refill leaves unchanged keeps its finish
//! time untouched. With `Δ = 0` (the default) every refill is immediate: the exact
//! model above, bit for bit. Why: at 1,000-10,000 peers the far-end refills are ~2/3 of a
//! run's CPU (`perf/sim.md`, "Simulator at fleet size").
//!
//! Uplink order ([`UplinkOrder`], water-fill only): `Fair` as above; `Fifo` fills each uplink
//! in the order the transfers' blocks were handed out (strict priority, work-conserving),
//! each capped at what its receiver's downlink could give it (its share plus the unused
//! capacity, or the downlink's water level when full), with two uplink-then-downlink fill
//! rounds per start/end so a receiver's refusal flows on to the sender's next transfers.
//!
//! Racks ([`Net::add_rack`], [`Net::place`]): a node placed in a rack reaches nodes outside
//! it through the rack's shared uplink (to the core) and downlink (from the core); a
//! transfer between two racks, or between a rack and an unplaced node (the origin), also
//! uses those links. With water-fill, on a start/end the rack links on the transfer's path
//! are filled first, each transfer capped at its node links' larger of equal and current
//! share (a lower estimate of what it can use there); node uplinks and downlinks are then
//! filled as above with the rack shares as extra caps, and a transfer runs at the smallest
//! of its (up to four) shares. Every transfer on a refilled rack link is re-rated. Without
//! racks every rack share is infinite and the results are those of the flat model, bit for
//! bit.
//!
//! Completion timers go to the caller's event
//! queue via [`Net::drain_timers`] with a version; a timer whose version is stale, or that
//! fires before the (later) current finish time, is handled by [`Net::on_timer`]. A timer is
//! only re-issued when a transfer's finish moves *earlier*, so a rate drop costs no heap push.
//!
//! Invariants: a transfer id is in `up_active[src]` and `down_active[dst]` exactly while it is
//! active, at positions `pos_up` / `pos_down`; likewise in `rack_up_active[rack(src)]` /
//! `rack_down_active[rack(dst)]` (positions `pos_rack_up` / `pos_rack_down`) exactly while
//! active and crossing that rack's boundary; `remaining_bytes` is exact as of `last`.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::core::Time;

/// Sentinel for "no timer pending" / "never finishes".
const NEVER: Time = Time::MAX;
/// Rack of a node placed in none (the origin, flat runs).
const NO_RACK: u32 = u32::MAX;
/// Uplink-then-downlink fill rounds per start/end with [`UplinkOrder::Fifo`]: the second
/// round hands what a receiver's downlink refused to the sender's next transfers.
const FIFO_FILL_ROUNDS: usize = 2;
/// Transfer id of the far-end sync timer (see [`Net::set_far_refill_delay`]); a driver's
/// ids are dense from 0, far below it.
const SYNC_ID: u32 = u32::MAX;

#[derive(Clone, Debug)]
struct Transfer {
    active: bool,
    src: u32,
    dst: u32,
    remaining_bytes: f64,
    rate_bytes_per_ns: f64,
    last: Time,
    finish: Time,
    sched: Time,
    version: u32,
    pos_up: u32,
    pos_down: u32,
    /// Rack whose uplink / downlink the transfer crosses (`NO_RACK`: none), and its
    /// position in that link's list.
    rack_up: u32,
    rack_down: u32,
    pos_rack_up: u32,
    pos_rack_down: u32,
    /// Water-filled shares (bytes/ns) of the uplink of `src` and the downlink of `dst`.
    share_up: f64,
    share_down: f64,
    /// Water-filled shares of the rack links it crosses (infinite when it crosses none).
    share_rack_up: f64,
    share_rack_down: f64,
    /// Weight in the water-fill (1 unless the net has jitter).
    weight: f64,
    /// `Net::epoch` of the refill that last rerated it (see [`Net::refill`]).
    stamp: u32,
    /// Service order on the sender's uplink with [`UplinkOrder::Fifo`] (lower first).
    rank: u64,
}

impl Default for Transfer {
    fn default() -> Self {
        Self {
            active: false,
            src: 0,
            dst: 0,
            remaining_bytes: 0.0,
            rate_bytes_per_ns: 0.0,
            last: Time::ZERO,
            finish: NEVER,
            sched: NEVER,
            version: 0,
            pos_up: 0,
            pos_down: 0,
            rack_up: NO_RACK,
            rack_down: NO_RACK,
            pos_rack_up: 0,
            pos_rack_down: 0,
            share_up: 0.0,
            share_down: 0.0,
            share_rack_up: f64::INFINITY,
            share_rack_down: f64::INFINITY,
            weight: 1.0,
            stamp: 0,
            rank: 0,
        }
    }
}

/// Which of a transfer's link shares a [`water_fill`] sets.
#[derive(Clone, Copy, Debug)]
enum Share {
    Up,
    Down,
    RackUp,
    RackDown,
}

impl Transfer {
    fn share_mut(&mut self, which: Share) -> &mut f64 {
        match which {
            Share::Up => &mut self.share_up,
            Share::Down => &mut self.share_down,
            Share::RackUp => &mut self.share_rack_up,
            Share::RackDown => &mut self.share_rack_down,
        }
    }
}

/// Sort key of a water-fill entry: orders like `(cap.total_cmp, id)` (the order the fill
/// visits transfers in, which fixes its rounding) but sorts as one integer.
fn fill_key(cap_per_weight: f64, id: u32) -> u128 {
    // `f64::total_cmp`'s key: flip the magnitude bits of negatives; then shift the sign
    // so that the signed order becomes the unsigned one.
    let bits = cap_per_weight.to_bits() as i64;
    let ordered = (bits ^ (((bits >> 63) as u64) >> 1) as i64) as u64 ^ (1 << 63);
    (u128::from(ordered) << 32) | u128::from(id)
}

/// The cap of a [`fill_key`].
fn key_cap(key: u128) -> f64 {
    let ordered = ((key >> 32) as u64) ^ (1 << 63);
    let bits = ordered as i64;
    f64::from_bits((bits ^ (((bits >> 63) as u64) >> 1) as i64) as u64)
}

/// Weighted max-min water-fill of one link of `capacity` (bytes/ns) over its
/// transfers: `keys` holds a [`fill_key`] of `(cap per unit of weight, transfer id)` for
/// each (any order: sorted here, the most constrained filled first), `weights` the
/// sum of their weights; each transfer's fair share of what is left is
/// proportional to its weight, at most its cap, and is written to its share
/// `which`.
fn water_fill(
    transfers: &mut [Transfer],
    keys: &mut [u128],
    mut weights: f64,
    capacity: f64,
    which: Share,
) {
    keys.sort_unstable();
    let mut left = capacity;
    for &key in keys.iter() {
        let (cap_per_weight, id) = (key_cap(key), key as u32);
        let t = &mut transfers[id as usize];
        let w = t.weight;
        let (fair, cap) = (left * w, cap_per_weight * w);
        let share = if cap_below(cap, fair, weights) {
            cap
        } else {
            (fair / weights).min(cap)
        };
        left = (left - share).max(0.0);
        weights -= w;
        *t.share_mut(which) = share;
    }
}

/// Whether `cap < fair / weights` holds with a margin (all finite, `weights > 0`), so that
/// `(fair / weights).min(cap)` is `cap` without dividing: the product is compared with a
/// relative margin of 1e-9, far above the 2^-53 rounding of each operation, and only
/// when it is a normal number (subnormals round with a larger relative error).
fn cap_below(cap: f64, fair: f64, weights: f64) -> bool {
    let product = cap * weights;
    product >= f64::MIN_POSITIVE && product.is_finite() && product * (1.0 + 1e-9) < fair
}

/// `x.ceil()` for `x >= 0` (or +inf), without the libm call: every f64 from 2^52 up is
/// an integer already, and below it the truncation fits a u64 exactly.
fn ceil_nonneg(x: f64) -> f64 {
    const INTEGRAL_FROM: f64 = 4_503_599_627_370_496.0; // 2^52
    if x < INTEGRAL_FROM {
        let t = x as u64 as f64;
        if t < x {
            t + 1.0
        } else {
            t
        }
    } else {
        x
    }
}

/// How a link's capacity is divided between its transfers (see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Sharing {
    /// Equal split per link; a transfer gets the smaller of its two shares.
    #[default]
    Equal,
    /// Water-filling per link with the far end's equal share as cap.
    WaterFill,
}

/// How an uplink divides its capacity between its transfers ([`Sharing::WaterFill`] only).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UplinkOrder {
    /// Max-min fair: every transfer gets an equal share (water-filled), as TCP flows
    /// written all at once share a NIC.
    #[default]
    Fair,
    /// Strict priority by rank (the order the sender's core handed the blocks out),
    /// work-conserving: the first transfer gets all its receiver can take, the next what
    /// is left, and so on. A sender that writes its sockets in hand-out order and tops up
    /// a later socket only while the earlier ones cannot take more (TCP_NOTSENT_LOWAT)
    /// behaves so. A block then crosses a hop in about one block time instead of
    /// `concurrent transfers` block times, while the uplink stays as busy as with `Fair`.
    Fifo,
}

impl std::str::FromStr for UplinkOrder {
    type Err = String;

    /// Parses `fair` or `fifo`.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "fair" => Ok(Self::Fair),
            "fifo" => Ok(Self::Fifo),
            _ => Err(format!(
                "unknown uplink order {s:?} (expected fair or fifo)"
            )),
        }
    }
}

/// Where link capacity went unused (debug output of the driver): byte-seconds... in
/// bytes, of uplink and downlink capacity left idle, split by whether the link had no
/// transfer at all or had transfers that the far ends (or rack links) limited.
#[derive(Clone, Debug, Default)]
pub struct IdleAccount {
    up_used: Vec<f64>,
    down_used: Vec<f64>,
    up_last: Vec<Time>,
    down_last: Vec<Time>,
    /// Idle bytes: `[node 0 (origin), other nodes]` × `[no transfer, limited elsewhere]`.
    pub up_idle_bytes: [[f64; 2]; 2],
    /// Same for downlinks.
    pub down_idle_bytes: [[f64; 2]; 2],
    /// Width of the bins of `origin_up_idle_bins` (0: no bins).
    pub bin_ns: u64,
    /// The origin's (node 0's) idle uplink bytes per bin: `[no transfer, limited]`.
    pub origin_up_idle_bins: Vec<[f64; 2]>,
}

/// A completion timer to put in the event queue: `(time, transfer id, version)`.
pub type TransferTimer = (Time, u32, u32);

/// Nodes with link capacities, and the transfers between them.
#[derive(Default)]
pub struct Net {
    up_cap_bytes_per_ns: Vec<f64>,
    down_cap_bytes_per_ns: Vec<f64>,
    /// Per node: `down_cap · (1 / transfers on its downlink)`, the equal downlink share an
    /// unweighted uplink fill caps each transfer at; kept up to date on every start and
    /// end so that a fill reads one number per transfer.
    down_equal_bytes_per_ns: Vec<f64>,
    up_active: Vec<Vec<u32>>,
    down_active: Vec<Vec<u32>>,
    /// Rack of each node (`NO_RACK`: none).
    rack_of: Vec<u32>,
    /// Per rack: uplink / downlink capacity and the transfers crossing each.
    rack_up_cap_bytes_per_ns: Vec<f64>,
    rack_down_cap_bytes_per_ns: Vec<f64>,
    rack_up_active: Vec<Vec<u32>>,
    rack_down_active: Vec<Vec<u32>>,
    transfers: Vec<Transfer>,
    timers: Vec<TransferTimer>,
    sharing: Sharing,
    uplink_order: UplinkOrder,
    /// Per node, from the last fill of its downlink: the water level (share per unit of
    /// weight of the transfers the fair share limited; infinite when none was) and the
    /// capacity left unused. What a transfer into it could get if its sender gave more.
    down_level: Vec<f64>,
    down_spare: Vec<f64>,
    /// Idle-capacity accounting (debug output), when enabled.
    idle: Option<IdleAccount>,
    /// Scratch for priority fills: (rank, cap, id).
    ranked: Vec<(u64, f64, u32)>,
    /// Scratch for refills: nodes whose uplink / downlink to refill, (cap, id) to sort.
    up_nodes: Vec<u32>,
    down_nodes: Vec<u32>,
    caps: Vec<u128>,
    /// Refills so far; a transfer rerated in the current refill carries it in `stamp`.
    epoch: u32,
    /// Weights of new transfers are drawn uniformly from `1 ± jitter` (0: all equal).
    jitter: f64,
    rng: Option<ChaCha8Rng>,
    /// Longest wait of a far-end refill, ns (0: immediate, the exact model).
    far_delay_ns: u64,
    /// Per node: its uplink / downlink waits for the next sync; and the nodes marked so
    /// since the last sync (pushed when the flag is set; a node whose link was refilled
    /// at once in between, flag cleared, may be pushed again: the sync goes by the flags).
    up_stale: Vec<bool>,
    down_stale: Vec<bool>,
    stale_up: Vec<u32>,
    stale_down: Vec<u32>,
    /// Whether a sync is pending, and its timer's version.
    sync_pending: bool,
    sync_version: u32,
}

impl std::str::FromStr for Sharing {
    type Err = String;

    /// Parses `equal` or `water-fill`.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "equal" => Ok(Self::Equal),
            "water-fill" => Ok(Self::WaterFill),
            _ => Err(format!(
                "unknown sharing {s:?} (expected equal or water-fill)"
            )),
        }
    }
}

impl Net {
    /// An empty net using `sharing`.
    pub fn new(sharing: Sharing) -> Self {
        Self {
            sharing,
            ..Self::default()
        }
    }

    /// Defers far-end refills by at most `delay` (see the module docs; [`Sharing::WaterFill`]
    /// with [`UplinkOrder::Fair`] only, otherwise refills stay immediate). `Duration::ZERO`:
    /// immediate, the exact model.
    pub fn set_far_refill_delay(&mut self, delay: std::time::Duration) {
        self.far_delay_ns = u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX / 4);
    }

    /// Unequal sharing, a crude stand-in for TCP flows that do not share a bottleneck
    /// equally: every transfer started from now on gets a weight drawn uniformly from
    /// `1 ± jitter` (clamped to 0..1) with an RNG seeded by `seed`, and the water-fill
    /// ([`Sharing::WaterFill`] only) gives each transfer a share proportional to its weight.
    pub fn set_jitter(&mut self, jitter: f64, seed: u64) {
        self.jitter = jitter.clamp(0.0, 1.0);
        self.rng = (self.jitter > 0.0).then(|| ChaCha8Rng::seed_from_u64(seed));
    }

    /// Starts accounting idle link capacity ([`Net::idle_account`]); call before adding nodes.
    pub fn enable_idle_account(&mut self, bin_ns: u64) {
        self.idle = Some(IdleAccount {
            bin_ns,
            ..IdleAccount::default()
        });
    }

    /// Idle capacity accounted until `now` (if enabled).
    pub fn idle_account(&mut self, now: Time) -> Option<IdleAccount> {
        for n in 0..self.up_active.len() as u32 {
            self.touch(now, n, true, 0.0);
            self.touch(now, n, false, 0.0);
        }
        self.idle.clone()
    }

    /// Integrates `node`'s idle uplink (`up`) or downlink up to `now`, then adds `delta`
    /// (bytes/ns) to its used rate.
    fn touch(&mut self, now: Time, node: u32, up: bool, delta: f64) {
        let Some(acc) = self.idle.as_mut() else {
            return;
        };
        let n = node as usize;
        if acc.up_used.len() <= n {
            acc.up_used.resize(n + 1, 0.0);
            acc.down_used.resize(n + 1, 0.0);
            acc.up_last.resize(n + 1, Time::ZERO);
            acc.down_last.resize(n + 1, Time::ZERO);
        }
        let (used, last, cap, busy, bucket) = if up {
            (
                &mut acc.up_used[n],
                &mut acc.up_last[n],
                self.up_cap_bytes_per_ns[n],
                !self.up_active[n].is_empty(),
                &mut acc.up_idle_bytes,
            )
        } else {
            (
                &mut acc.down_used[n],
                &mut acc.down_last[n],
                self.down_cap_bytes_per_ns[n],
                !self.down_active[n].is_empty(),
                &mut acc.down_idle_bytes,
            )
        };
        let (now_ns, last_ns) = (now.as_nanos(), last.as_nanos());
        let dt = now_ns.saturating_sub(last_ns) as f64;
        let idle_rate = (cap - *used).max(0.0);
        bucket[usize::from(n != 0)][usize::from(busy)] += idle_rate * dt;
        if n == 0 && up && acc.bin_ns > 0 && idle_rate > 0.0 {
            let mut t = last_ns;
            while t < now_ns {
                let bin = (t / acc.bin_ns) as usize;
                let end = ((bin as u64 + 1) * acc.bin_ns).min(now_ns);
                if acc.origin_up_idle_bins.len() <= bin {
                    acc.origin_up_idle_bins.resize(bin + 1, [0.0; 2]);
                }
                acc.origin_up_idle_bins[bin][usize::from(busy)] += idle_rate * (end - t) as f64;
                t = end;
            }
        }
        *last = now;
        *used += delta;
    }

    /// How uplinks divide their capacity ([`UplinkOrder`]; used with
    /// [`Sharing::WaterFill`] only).
    pub fn set_uplink_order(&mut self, order: UplinkOrder) {
        self.uplink_order = order;
    }

    /// Adds a node with the given capacities (bytes per second); returns its index.
    pub fn add_node(&mut self, up_bytes_per_s: u64, down_bytes_per_s: u64) -> u32 {
        self.up_cap_bytes_per_ns.push(up_bytes_per_s as f64 / 1e9);
        self.down_cap_bytes_per_ns
            .push(down_bytes_per_s as f64 / 1e9);
        self.down_level.push(f64::INFINITY);
        self.down_spare.push(down_bytes_per_s as f64 / 1e9);
        self.down_equal_bytes_per_ns.push(f64::INFINITY);
        self.up_active.push(Vec::new());
        self.down_active.push(Vec::new());
        self.rack_of.push(NO_RACK);
        self.up_stale.push(false);
        self.down_stale.push(false);
        (self.up_active.len() - 1) as u32
    }

    /// Adds a rack whose shared links to the core carry `up_bytes_per_s` out and
    /// `down_bytes_per_s` in; returns its index. Place nodes in it with [`Net::place`].
    pub fn add_rack(&mut self, up_bytes_per_s: u64, down_bytes_per_s: u64) -> u32 {
        self.rack_up_cap_bytes_per_ns
            .push(up_bytes_per_s as f64 / 1e9);
        self.rack_down_cap_bytes_per_ns
            .push(down_bytes_per_s as f64 / 1e9);
        self.rack_up_active.push(Vec::new());
        self.rack_down_active.push(Vec::new());
        (self.rack_up_active.len() - 1) as u32
    }

    /// Puts `node` in `rack`: its transfers to and from nodes outside the rack start
    /// crossing the rack's links (transfers already active keep their path).
    ///
    /// # Panics
    /// If `node` or `rack` is unknown (a driver bug).
    pub fn place(&mut self, node: u32, rack: u32) {
        assert!(
            (rack as usize) < self.rack_up_active.len(),
            "unknown rack {rack}"
        );
        self.rack_of[node as usize] = rack;
    }

    /// Rack of `node`, if it was placed in one.
    pub fn rack(&self, node: u32) -> Option<u32> {
        self.rack_of
            .get(node as usize)
            .copied()
            .filter(|&r| r != NO_RACK)
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
    pub fn start(&mut self, now: Time, id: u32, src: u32, dst: u32, bytes: u64) {
        self.start_ranked(now, id, src, dst, bytes, 0);
    }

    /// [`Net::start`] with the transfer's `rank` on its sender's uplink: with
    /// [`UplinkOrder::Fifo`] lower ranks are served first (equal ranks by id).
    ///
    /// # Panics
    /// As [`Net::start`].
    pub fn start_ranked(&mut self, now: Time, id: u32, src: u32, dst: u32, bytes: u64, rank: u64) {
        let idx = id as usize;
        if self.transfers.len() <= idx {
            self.transfers.resize(idx + 1, Transfer::default());
        }
        let pos_up = self.up_active[src as usize].len() as u32;
        let pos_down = self.down_active[dst as usize].len() as u32;
        let (rs, rd) = (self.rack_of[src as usize], self.rack_of[dst as usize]);
        let rack_up = if rs != rd { rs } else { NO_RACK };
        let rack_down = if rs != rd { rd } else { NO_RACK };
        let pos_rack_up = match self.rack_up_active.get_mut(rack_up as usize) {
            Some(list) => {
                list.push(id);
                list.len() as u32 - 1
            }
            None => 0,
        };
        let pos_rack_down = match self.rack_down_active.get_mut(rack_down as usize) {
            Some(list) => {
                list.push(id);
                list.len() as u32 - 1
            }
            None => 0,
        };
        let weight = match self.rng.as_mut() {
            Some(rng) => 1.0 + self.jitter * (2.0 * rng.random::<f64>() - 1.0),
            None => 1.0,
        }
        .max(1e-3);
        let t = &mut self.transfers[idx];
        assert!(!t.active, "transfer {id} started twice");
        let old_version = t.version;
        *t = Transfer {
            active: true,
            src,
            dst,
            // At least one byte so that a zero-length transfer still takes an event.
            remaining_bytes: bytes.max(1) as f64,
            last: now,
            pos_up,
            pos_down,
            rack_up,
            rack_down,
            pos_rack_up,
            pos_rack_down,
            version: old_version.wrapping_add(1),
            weight,
            rank,
            ..Transfer::default()
        };
        self.touch(now, src, true, 0.0);
        self.touch(now, dst, false, 0.0);
        self.up_active[src as usize].push(id);
        self.down_active[dst as usize].push(id);
        self.update_down_equal(dst);
        self.reshare_racks(now, rack_up, rack_down);
        self.reshare(now, src, dst);
    }

    /// Handles a completion timer. Returns `true` when transfer `id` has completed (it is then
    /// removed and its neighbours' rates updated), `false` for a stale or early timer.
    pub fn on_timer(&mut self, now: Time, id: u32, version: u32) -> bool {
        if id == SYNC_ID {
            if version == self.sync_version && self.sync_pending {
                self.sync(now);
            }
            return false;
        }
        let Some(t) = self.transfers.get_mut(id as usize) else {
            return false;
        };
        if !t.active || t.version != version {
            return false;
        }
        t.sched = NEVER;
        if t.finish > now {
            // The rate dropped since this timer was set: re-arm at the current finish.
            if t.finish != NEVER {
                t.sched = t.finish;
                self.timers.push((t.finish, id, t.version));
            }
            return false;
        }
        self.remove(now, id);
        true
    }

    /// Cancels transfer `id` if active (a connection closed); returns the bytes not yet sent.
    pub fn cancel(&mut self, now: Time, id: u32) -> Option<u64> {
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

    fn remove(&mut self, now: Time, id: u32) {
        let t = &mut self.transfers[id as usize];
        t.active = false;
        t.version = t.version.wrapping_add(1);
        let (src, dst, pos_up, pos_down) = (t.src, t.dst, t.pos_up, t.pos_down);
        let rate = t.rate_bytes_per_ns;
        let (rack_up, pos_rack_up) = (t.rack_up, t.pos_rack_up);
        let (rack_down, pos_rack_down) = (t.rack_down, t.pos_rack_down);
        self.touch(now, src, true, -rate);
        self.touch(now, dst, false, -rate);
        if let Some(list) = self.rack_up_active.get_mut(rack_up as usize) {
            list.swap_remove(pos_rack_up as usize);
            if let Some(&moved) = list.get(pos_rack_up as usize) {
                self.transfers[moved as usize].pos_rack_up = pos_rack_up;
            }
        }
        if let Some(list) = self.rack_down_active.get_mut(rack_down as usize) {
            list.swap_remove(pos_rack_down as usize);
            if let Some(&moved) = list.get(pos_rack_down as usize) {
                self.transfers[moved as usize].pos_rack_down = pos_rack_down;
            }
        }
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
        self.update_down_equal(dst);
        self.reshare_racks(now, rack_up, rack_down);
        self.reshare(now, src, dst);
    }

    /// Recomputes `down_equal_bytes_per_ns[node]` after its downlink gained or lost a
    /// transfer (the same expression the fill used to evaluate in place).
    fn update_down_equal(&mut self, node: u32) {
        let n = node as usize;
        let share = 1.0 / self.down_active[n].len() as f64;
        self.down_equal_bytes_per_ns[n] = self.down_cap_bytes_per_ns[n] * share;
    }

    /// Recomputes the rates of the transfers on the rack links `rack_up` / `rack_down`
    /// (`NO_RACK`: none) after a start or end on them.
    fn reshare_racks(&mut self, now: Time, rack_up: u32, rack_down: u32) {
        if self.sharing == Sharing::WaterFill {
            if rack_up != NO_RACK {
                self.fill_rack(rack_up, true);
            }
            if rack_down != NO_RACK {
                self.fill_rack(rack_down, false);
            }
        }
        for (rack, up) in [(rack_up, true), (rack_down, false)] {
            let lists = if up {
                &self.rack_up_active
            } else {
                &self.rack_down_active
            };
            let Some(len) = lists.get(rack as usize).map(Vec::len) else {
                continue;
            };
            for i in 0..len {
                let lists = if up {
                    &self.rack_up_active
                } else {
                    &self.rack_down_active
                };
                let id = lists[rack as usize][i];
                self.rerate(now, id);
            }
        }
    }

    /// Recomputes the rates affected by a start or end of a transfer `src` → `dst`.
    fn reshare(&mut self, now: Time, src: u32, dst: u32) {
        if self.sharing == Sharing::WaterFill {
            return self.refill(now, src, dst);
        }
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

    /// Whether far-end refills are deferred (see [`Net::set_far_refill_delay`]).
    fn deferred(&self) -> bool {
        self.far_delay_ns > 0
            && self.sharing == Sharing::WaterFill
            && self.uplink_order == UplinkOrder::Fair
    }

    /// Starts a new refill's rerates: a transfer rerated from now on carries the new epoch.
    fn next_epoch(&mut self) {
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            // Wrapped: no stamp may look current.
            self.transfers.iter_mut().for_each(|t| t.stamp = 0);
            self.epoch = 1;
        }
    }

    fn refill(&mut self, now: Time, src: u32, dst: u32) {
        if self.deferred() {
            return self.refill_near(now, src, dst);
        }
        let mut up_nodes = std::mem::take(&mut self.up_nodes);
        let mut down_nodes = std::mem::take(&mut self.down_nodes);
        up_nodes.clear();
        down_nodes.clear();
        up_nodes.push(src);
        up_nodes.extend(
            self.down_active[dst as usize]
                .iter()
                .map(|&id| self.transfers[id as usize].src),
        );
        down_nodes.push(dst);
        down_nodes.extend(
            self.up_active[src as usize]
                .iter()
                .map(|&id| self.transfers[id as usize].dst),
        );
        up_nodes.sort_unstable();
        up_nodes.dedup();
        down_nodes.sort_unstable();
        down_nodes.dedup();
        let rounds = match self.uplink_order {
            UplinkOrder::Fair => 1,
            UplinkOrder::Fifo => FIFO_FILL_ROUNDS,
        };
        for _ in 0..rounds {
            for &n in &up_nodes {
                self.fill(n, true);
            }
            for &n in &down_nodes {
                self.fill(n, false);
            }
        }
        // Every share is set now, so rerating a transfer twice (it is on a refilled uplink
        // and a refilled downlink) would change nothing: once is enough.
        self.next_epoch();
        for &n in &up_nodes {
            for i in 0..self.up_active[n as usize].len() {
                let id = self.up_active[n as usize][i];
                self.rerate_once(now, id);
            }
        }
        for &n in &down_nodes {
            for i in 0..self.down_active[n as usize].len() {
                let id = self.down_active[n as usize][i];
                self.rerate_once(now, id);
            }
        }
        self.up_nodes = up_nodes;
        self.down_nodes = down_nodes;
    }

    /// The deferred refill of a start/end at `(src, dst)` (see the module docs): refills the
    /// uplink of `src` and the downlink of `dst` now, rerates their transfers, and marks the
    /// far ends stale for the next sync (scheduled at most `far_delay_ns` from now).
    fn refill_near(&mut self, now: Time, src: u32, dst: u32) {
        self.fill(src, true);
        self.fill(dst, false);
        // The fill of `src`'s uplink read current inputs only (its receivers' equal shares).
        self.up_stale[src as usize] = false;
        self.next_epoch();
        for i in 0..self.up_active[src as usize].len() {
            let id = self.up_active[src as usize][i];
            self.rerate_once(now, id);
        }
        for i in 0..self.down_active[dst as usize].len() {
            let id = self.down_active[dst as usize][i];
            self.rerate_once(now, id);
        }
        let mut far_senders = false;
        for i in 0..self.down_active[dst as usize].len() {
            let s = self.transfers[self.down_active[dst as usize][i] as usize].src;
            if s != src {
                far_senders = true;
                self.mark_stale(now, s, true);
            }
        }
        if far_senders {
            // Its fill read those senders' shares, which the sync changes.
            self.mark_stale(now, dst, false);
        } else {
            // Its fill read only `src`'s share, just set.
            self.down_stale[dst as usize] = false;
        }
        for i in 0..self.up_active[src as usize].len() {
            let d = self.transfers[self.up_active[src as usize][i] as usize].dst;
            if d != dst {
                self.mark_stale(now, d, false);
            }
        }
    }

    /// Marks `node`'s uplink (`up`) or downlink for the next sync, scheduling one if none is
    /// pending.
    fn mark_stale(&mut self, now: Time, node: u32, up: bool) {
        let (flag, list) = if up {
            (&mut self.up_stale[node as usize], &mut self.stale_up)
        } else {
            (&mut self.down_stale[node as usize], &mut self.stale_down)
        };
        if *flag {
            return;
        }
        *flag = true;
        list.push(node);
        if !self.sync_pending {
            self.sync_pending = true;
            self.sync_version = self.sync_version.wrapping_add(1);
            let at = Time::from_nanos(now.as_nanos().saturating_add(self.far_delay_ns));
            self.timers.push((at, SYNC_ID, self.sync_version));
        }
    }

    /// Refills every stale link, uplinks then downlinks (the order of an immediate refill),
    /// and rerates their transfers once each.
    fn sync(&mut self, now: Time) {
        self.sync_pending = false;
        let stale_up = std::mem::take(&mut self.stale_up);
        let stale_down = std::mem::take(&mut self.stale_down);
        for &n in &stale_up {
            if self.up_stale[n as usize] {
                self.fill(n, true);
            }
        }
        for &n in &stale_down {
            if self.down_stale[n as usize] {
                self.fill(n, false);
            }
        }
        self.next_epoch();
        for &n in &stale_up {
            if std::mem::take(&mut self.up_stale[n as usize]) {
                for i in 0..self.up_active[n as usize].len() {
                    let id = self.up_active[n as usize][i];
                    self.rerate_once(now, id);
                }
            }
        }
        for &n in &stale_down {
            if std::mem::take(&mut self.down_stale[n as usize]) {
                for i in 0..self.down_active[n as usize].len() {
                    let id = self.down_active[n as usize][i];
                    self.rerate_once(now, id);
                }
            }
        }
        self.stale_up = stale_up;
        self.stale_up.clear();
        self.stale_down = stale_down;
        self.stale_down.clear();
    }

    /// Water-fills the uplink (`up`) or downlink of `node` over its transfers, each capped at
    /// the far end's share (equal, or by weight with jitter). With weights, a transfer's fair
    /// share of what is left is proportional to its weight (weighted max-min).
    fn fill(&mut self, node: u32, up: bool) {
        if up && self.uplink_order == UplinkOrder::Fifo {
            return self.fill_up_ranked(node);
        }
        let mut caps = std::mem::take(&mut self.caps);
        caps.clear();
        let list = if up {
            &self.up_active[node as usize]
        } else {
            &self.down_active[node as usize]
        };
        let weighted = self.jitter > 0.0;
        let mut weights = 0.0;
        for &id in list {
            let t = &self.transfers[id as usize];
            weights += t.weight;
            let cap = if up {
                let d = t.dst as usize;
                let equal = if weighted {
                    let sum: f64 = self.down_active[d]
                        .iter()
                        .map(|&o| self.transfers[o as usize].weight)
                        .sum();
                    self.down_cap_bytes_per_ns[d] * (t.weight / sum)
                } else {
                    self.down_equal_bytes_per_ns[d]
                };
                equal.min(t.share_rack_up).min(t.share_rack_down)
            } else {
                // The sender's water-filled share (refilled just before): a downlink takes
                // what its senders can actually give.
                t.share_up.min(t.share_rack_up).min(t.share_rack_down)
            };
            caps.push(fill_key(cap / t.weight, id));
        }
        let capacity = if up {
            self.up_cap_bytes_per_ns[node as usize]
        } else {
            self.down_cap_bytes_per_ns[node as usize]
        };
        let which = if up { Share::Up } else { Share::Down };
        water_fill(&mut self.transfers, &mut caps, weights, capacity, which);
        if !up {
            self.note_down_level(node, &caps, capacity);
        }
        self.caps = caps;
    }

    /// Records the water level and the unused capacity of `node`'s downlink after a fill
    /// over `caps` (see `down_level`).
    fn note_down_level(&mut self, node: u32, caps: &[u128], capacity: f64) {
        let mut used = 0.0;
        let mut level: f64 = 0.0;
        for &key in caps {
            // A fill key's low 32 bits are the transfer id (see `fill_key`).
            let t = &self.transfers[key as u32 as usize];
            used += t.share_down;
            level = level.max(t.share_down / t.weight);
        }
        let spare = (capacity - used).max(0.0);
        let n = node as usize;
        self.down_spare[n] = spare;
        self.down_level[n] = if spare > capacity * 1e-9 {
            f64::INFINITY
        } else {
            level
        };
    }

    /// [`UplinkOrder::Fifo`]: fills `node`'s uplink in rank order, each transfer taking
    /// what its receiver can take (its current downlink share plus the downlink's unused
    /// capacity, or at least the downlink's water level when it is full) and the rack
    /// links allow, until the uplink is used up.
    fn fill_up_ranked(&mut self, node: u32) {
        let mut ranked = std::mem::take(&mut self.ranked);
        ranked.clear();
        for &id in &self.up_active[node as usize] {
            let t = &self.transfers[id as usize];
            let d = t.dst as usize;
            let spare = self.down_spare[d];
            let receiver = if self.down_level[d].is_infinite() {
                t.share_down + spare
            } else {
                (self.down_level[d] * t.weight).max(t.share_down)
            };
            let cap = receiver
                .min(self.down_cap_bytes_per_ns[d])
                .min(t.share_rack_up)
                .min(t.share_rack_down);
            ranked.push((t.rank, cap, id));
        }
        ranked.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(a.2.cmp(&b.2)));
        let mut left = self.up_cap_bytes_per_ns[node as usize];
        for &(_, cap, id) in &ranked {
            let share = cap.min(left).max(0.0);
            left -= share;
            self.transfers[id as usize].share_up = share;
        }
        self.ranked = ranked;
    }

    /// Water-fills the uplink (`up`) or downlink of `rack` over the transfers crossing it,
    /// each capped at what its node links can give it: the larger of its current and equal
    /// share on each (see the module docs), and for a rack uplink also its equal share of
    /// the far rack's downlink; for a rack downlink, its rack-uplink share just filled.
    fn fill_rack(&mut self, rack: u32, up: bool) {
        let mut caps = std::mem::take(&mut self.caps);
        caps.clear();
        let list = if up {
            &self.rack_up_active[rack as usize]
        } else {
            &self.rack_down_active[rack as usize]
        };
        let mut weights = 0.0;
        for &id in list {
            let t = &self.transfers[id as usize];
            weights += t.weight;
            let (src, dst) = (t.src as usize, t.dst as usize);
            let eq_up = self.up_cap_bytes_per_ns[src] / self.up_active[src].len().max(1) as f64;
            let eq_down =
                self.down_cap_bytes_per_ns[dst] / self.down_active[dst].len().max(1) as f64;
            let nodes = t.share_up.max(eq_up).min(t.share_down.max(eq_down));
            let cap = if up {
                match self.rack_down_active.get(t.rack_down as usize) {
                    Some(l) => nodes.min(
                        self.rack_down_cap_bytes_per_ns[t.rack_down as usize]
                            / l.len().max(1) as f64,
                    ),
                    None => nodes,
                }
            } else {
                nodes.min(t.share_rack_up)
            };
            caps.push(fill_key(cap / t.weight, id));
        }
        let capacity = if up {
            self.rack_up_cap_bytes_per_ns[rack as usize]
        } else {
            self.rack_down_cap_bytes_per_ns[rack as usize]
        };
        let which = if up { Share::RackUp } else { Share::RackDown };
        water_fill(&mut self.transfers, &mut caps, weights, capacity, which);
        self.caps = caps;
    }

    /// Equal share of rack link `rack` (uplink if `up`) for each of its transfers
    /// (infinite for `NO_RACK`).
    fn rack_equal_share(&self, rack: u32, up: bool) -> f64 {
        let (caps, lists) = if up {
            (&self.rack_up_cap_bytes_per_ns, &self.rack_up_active)
        } else {
            (&self.rack_down_cap_bytes_per_ns, &self.rack_down_active)
        };
        match (caps.get(rack as usize), lists.get(rack as usize)) {
            (Some(cap), Some(list)) => cap / list.len().max(1) as f64,
            _ => f64::INFINITY,
        }
    }

    /// [`Net::rerate`] unless `id` was rerated since the current refill's fills.
    fn rerate_once(&mut self, now: Time, id: u32) {
        let t = &mut self.transfers[id as usize];
        if t.stamp != self.epoch {
            t.stamp = self.epoch;
            self.rerate(now, id);
        }
    }

    fn rerate(&mut self, now: Time, id: u32) {
        let deferred = self.deferred();
        let t = &self.transfers[id as usize];
        let rate = if self.sharing == Sharing::WaterFill {
            t.share_up
                .min(t.share_down)
                .min(t.share_rack_up)
                .min(t.share_rack_down)
        } else {
            let (src, dst) = (t.src as usize, t.dst as usize);
            let up_share = self.up_cap_bytes_per_ns[src] / self.up_active[src].len() as f64;
            let down_share = self.down_cap_bytes_per_ns[dst] / self.down_active[dst].len() as f64;
            up_share
                .min(down_share)
                .min(self.rack_equal_share(t.rack_up, true))
                .min(self.rack_equal_share(t.rack_down, false))
        };
        let t = &mut self.transfers[id as usize];
        if deferred && rate == t.rate_bytes_per_ns {
            // Deferred model: an unchanged rate keeps its finish time; advancing the bytes
            // now or at the next change is the same sum (only the rounding differs, which
            // the exact model keeps bit for bit, hence not there).
            return;
        }
        advance(t, now);
        let delta = rate - t.rate_bytes_per_ns;
        let (src, dst) = (t.src, t.dst);
        t.rate_bytes_per_ns = rate;
        t.finish = if rate > 0.0 {
            let left_ns = ceil_nonneg(t.remaining_bytes / rate);
            let left_ns = left_ns.min(NEVER.as_nanos() as f64 / 2.0) as u64;
            Time::from_nanos(now.as_nanos().saturating_add(left_ns))
        } else {
            NEVER
        };
        if t.finish < t.sched {
            t.version = t.version.wrapping_add(1);
            t.sched = t.finish;
            self.timers.push((t.finish, id, t.version));
        }
        if self.idle.is_some() {
            self.touch(now, src, true, delta);
            self.touch(now, dst, false, delta);
        }
    }
}

/// Brings `remaining_bytes` up to date at `now`.
fn advance(t: &mut Transfer, now: Time) {
    let elapsed_ns = now.as_nanos().saturating_sub(t.last.as_nanos()) as f64;
    t.remaining_bytes = (t.remaining_bytes - t.rate_bytes_per_ns * elapsed_ns).max(0.0);
    t.last = now;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::queue::EventQueue;

    /// Runs the net until no transfer is active; returns (id, completion time) in order.
    fn run(net: &mut Net, q: &mut EventQueue<(u32, u32)>) -> Vec<(u32, u64)> {
        let mut done = Vec::new();
        net.drain_timers(|(t, id, v)| q.push(t, (id, v)));
        while let Some((now, (id, v))) = q.pop() {
            if net.on_timer(now, id, v) {
                done.push((id, now.as_nanos()));
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
        net.start(Time::ZERO, 0, a, b, 1_000_000);
        assert_eq!(run(&mut net, &mut q), vec![(0, 1_000_000)]);
    }

    #[test]
    fn uplink_is_shared_fairly_and_freed_capacity_is_reused() {
        let mut net = Net::default();
        let s = net.add_node(1_000_000_000, 0);
        let p1 = net.add_node(0, 10_000_000_000);
        let p2 = net.add_node(0, 10_000_000_000);
        let mut q = EventQueue::default();
        net.start(Time::ZERO, 0, s, p1, 1_000_000);
        net.start(Time::ZERO, 1, s, p2, 2_000_000);
        // Both at 0.5 B/ns: id 0 done at 2 ms; then id 1 alone at 1 B/ns for its last 1 MB.
        assert_eq!(run(&mut net, &mut q), vec![(0, 2_000_000), (1, 3_000_000)]);
    }

    #[test]
    fn water_fill_uses_the_whole_uplink() {
        // s -> a and s -> b; a also receives from s2 and s3, so a's share for s is 1/3 B/ns.
        // Equal: s gives b 1/2 (s's uplink 1/6 idle). Water-fill: b gets 2/3.
        let mut rates = Vec::new();
        for sharing in [Sharing::Equal, Sharing::WaterFill] {
            let mut net = Net::new(sharing);
            let s = net.add_node(1_000_000_000, 0);
            let s2 = net.add_node(1_000_000_000, 0);
            let s3 = net.add_node(1_000_000_000, 0);
            let a = net.add_node(0, 1_000_000_000);
            let b = net.add_node(0, 1_000_000_000);
            let mut q = EventQueue::default();
            net.start(Time::ZERO, 0, s2, a, 100_000_000);
            net.start(Time::ZERO, 1, s3, a, 100_000_000);
            net.start(Time::ZERO, 2, s, a, 100_000_000);
            net.start(Time::ZERO, 3, s, b, 2_000_000);
            let done = run(&mut net, &mut q);
            rates.push(done.iter().find(|d| d.0 == 3).map(|d| d.1));
        }
        assert_eq!(rates, vec![Some(4_000_000), Some(3_000_000)]);
    }

    #[test]
    fn deferred_far_refill_reaches_the_immediate_shares_after_the_sync() {
        // As `water_fill_uses_the_whole_uplink`: b's transfer gets 2/3 B/ns once the far
        // ends are refilled, 1 us (the delay) after the starts at t = 0, so it ends within
        // a few ns of 3 ms; until the sync it runs at a share no larger (idle, never over).
        let mut net = Net::new(Sharing::WaterFill);
        net.set_far_refill_delay(std::time::Duration::from_micros(1));
        let s = net.add_node(1_000_000_000, 0);
        let s2 = net.add_node(1_000_000_000, 0);
        let s3 = net.add_node(1_000_000_000, 0);
        let a = net.add_node(0, 1_000_000_000);
        let b = net.add_node(0, 1_000_000_000);
        let mut q = EventQueue::default();
        net.start(Time::ZERO, 0, s2, a, 100_000_000);
        net.start(Time::ZERO, 1, s3, a, 100_000_000);
        net.start(Time::ZERO, 2, s, a, 100_000_000);
        net.start(Time::ZERO, 3, s, b, 2_000_000);
        assert!(net.sync_pending);
        let done = run(&mut net, &mut q);
        let at = done.iter().find(|d| d.0 == 3).map(|d| d.1);
        assert!(
            at.is_some_and(|t| t.abs_diff(3_000_000) <= 1_000),
            "{done:?}"
        );
        assert!(!net.sync_pending, "the sync ran");
    }

    #[test]
    fn deferred_far_refill_never_oversubscribes_a_link() {
        // Random starts and completions on 12 nodes with 1 GB/s links; after every event the
        // rates on each uplink and downlink sum to at most its capacity, and every transfer
        // completes.
        for seed in 0..8u64 {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut net = Net::new(Sharing::WaterFill);
            net.set_far_refill_delay(std::time::Duration::from_micros(50));
            let nodes: Vec<u32> = (0..12)
                .map(|_| net.add_node(1_000_000_000, 1_000_000_000))
                .collect();
            let mut q: EventQueue<(u32, u32)> = EventQueue::default();
            let check = |net: &Net| {
                for n in 0..nodes.len() {
                    for (list, cap) in [
                        (&net.up_active[n], net.up_cap_bytes_per_ns[n]),
                        (&net.down_active[n], net.down_cap_bytes_per_ns[n]),
                    ] {
                        let sum: f64 = list
                            .iter()
                            .map(|&id| net.transfers[id as usize].rate_bytes_per_ns)
                            .sum();
                        assert!(sum <= cap * (1.0 + 1e-9), "seed {seed}: {sum} > {cap}");
                    }
                }
            };
            let (mut next_id, mut done) = (0u32, 0u32);
            let mut now = Time::ZERO;
            for _ in 0..200 {
                let (src, dst) = (rng.random_range(0..12usize), rng.random_range(0..12usize));
                if src != dst {
                    let bytes = rng.random_range(1_000..200_000u64);
                    net.start(now, next_id, nodes[src], nodes[dst], bytes);
                    next_id += 1;
                    check(&net);
                }
                net.drain_timers(|(t, id, v)| q.push(t, (id, v)));
                now += std::time::Duration::from_micros(rng.random_range(0..40u64));
                while q.peek_time().is_some_and(|t| t <= now) {
                    let Some((t, (id, v))) = q.pop() else { break };
                    done += u32::from(net.on_timer(t, id, v));
                    check(&net);
                    net.drain_timers(|(t, id, v)| q.push(t, (id, v)));
                }
            }
            done += run(&mut net, &mut q).len() as u32;
            assert_eq!(done, next_id, "seed {seed}");
        }
    }

    #[test]
    fn downlink_limits_and_cancel_frees() {
        let mut net = Net::default();
        let s1 = net.add_node(1_000_000_000, 0);
        let s2 = net.add_node(1_000_000_000, 0);
        let d = net.add_node(0, 1_000_000_000);
        let mut q = EventQueue::default();
        net.start(Time::ZERO, 0, s1, d, 1_000_000);
        net.start(Time::ZERO, 1, s2, d, 1_000_000);
        assert_eq!(net.cancel(Time::from_nanos(1_000_000), 1), Some(500_000));
        assert!(!net.is_active(1));
        // id 0 got 500 kB by 1 ms, then the full downlink: done at 1.5 ms.
        assert_eq!(run(&mut net, &mut q), vec![(0, 1_500_000)]);
    }

    #[test]
    fn rack_links_are_shared_by_transfers_between_racks_only() {
        // Racks 0 and 1 with 1 GB/s links; nodes at 10 GB/s. Two transfers from rack 0 to
        // rack 1 share its uplink (0.5 B/ns each: 1 MB in 2 ms); a transfer inside rack 0
        // and one from the unplaced origin into rack 0 use no shared uplink, but the
        // origin's competes with nothing on rack 0's downlink: 1 ms.
        for sharing in [Sharing::Equal, Sharing::WaterFill] {
            let mut net = Net::new(sharing);
            let (r0, r1) = (
                net.add_rack(1_000_000_000, 1_000_000_000),
                net.add_rack(1_000_000_000, 1_000_000_000),
            );
            let origin = net.add_node(10_000_000_000, 10_000_000_000);
            let nodes: Vec<u32> = (0..6)
                .map(|_| net.add_node(10_000_000_000, 10_000_000_000))
                .collect();
            for (i, &n) in nodes.iter().enumerate() {
                net.place(n, if i < 4 { r0 } else { r1 });
            }
            assert_eq!((net.rack(origin), net.rack(nodes[5])), (None, Some(r1)));
            let mut q = EventQueue::default();
            net.start(Time::ZERO, 0, nodes[0], nodes[4], 1_000_000);
            net.start(Time::ZERO, 1, nodes[1], nodes[5], 1_000_000);
            net.start(Time::ZERO, 2, nodes[2], nodes[3], 10_000_000);
            net.start(Time::ZERO, 3, origin, nodes[0], 1_000_000);
            let done = run(&mut net, &mut q);
            let at = |id: u32| done.iter().find(|d| d.0 == id).map(|d| d.1);
            assert_eq!(at(0), Some(2_000_000), "{sharing:?} {done:?}");
            assert_eq!(at(1), Some(2_000_000), "{sharing:?} {done:?}");
            assert_eq!(at(2), Some(1_000_000), "{sharing:?} {done:?}");
            assert_eq!(at(3), Some(1_000_000), "{sharing:?} {done:?}");
        }
    }

    #[test]
    fn weighted_fill_shares_by_weight_and_uses_the_whole_link() {
        // Two equal transfers on one uplink, weights 0.5 and 1.5: shares 1/4 and 3/4 of
        // the link; the heavier ends at 1.33 ms, the other then gets the whole link and
        // still ends at 2 ms (work-conserving).
        let mut net = Net::new(Sharing::WaterFill);
        net.set_jitter(0.6, 7);
        let s = net.add_node(1_000_000_000, 0);
        let a = net.add_node(0, 10_000_000_000);
        let b = net.add_node(0, 10_000_000_000);
        let mut q = EventQueue::default();
        net.start(Time::ZERO, 0, s, a, 1_000_000);
        net.start(Time::ZERO, 1, s, b, 1_000_000);
        net.transfers[0].weight = 0.5;
        net.transfers[1].weight = 1.5;
        net.refill(Time::ZERO, s, a);
        let done = run(&mut net, &mut q);
        assert_eq!(done.len(), 2);
        assert_eq!(done[0].0, 1);
        assert!(done[0].1.abs_diff(1_333_334) <= 2, "{done:?}");
        assert!(done[1].1.abs_diff(2_000_000) <= 2, "{done:?}");
        // Drawn weights stay within 1 ± jitter; without jitter they are all 1.
        for id in 2..50 {
            net.start(Time::ZERO, id, s, a, 1);
            let w = net.transfers[id as usize].weight;
            assert!((0.4..=1.6).contains(&w), "{w}");
        }
        let mut fair = Net::new(Sharing::WaterFill);
        fair.set_jitter(0.0, 7);
        let s = fair.add_node(1, 0);
        let a = fair.add_node(0, 1);
        fair.start(Time::ZERO, 0, s, a, 1);
        assert_eq!(fair.transfers[0].weight, 1.0);
    }
}
