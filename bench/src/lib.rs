//! p2pe benchmarks: criterion micro-benchmarks live in `benches/`; this
//! library holds the system harnesses: [`netns`] (emulated hosts: network
//! namespaces on a bridge, shaped with tbf), [`swarm_bench`] (one origin,
//! a tracker and many leechers on those hosts, compared with D_p2p) and
//! [`node_linerate`] (`p2pe seed` to `p2pe get` over loopback against iperf3);
//! [`nginx`] configures an HTTP origin for the bench and the web seed tests.
#![warn(missing_docs)]

pub mod netns;
pub mod nginx;
pub mod node_linerate;
pub mod swarm_bench;
