//! p2pe benchmarks: criterion micro-benchmarks live in `benches/`; this
//! library holds the system harnesses: [`netns`] (emulated hosts: network
//! namespaces on a bridge, shaped with tbf) and [`swarm_bench`] (one origin,
//! a tracker and many leechers on those hosts, compared with D_p2p).
#![warn(missing_docs)]

pub mod netns;
pub mod swarm_bench;
