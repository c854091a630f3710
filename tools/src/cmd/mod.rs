//! One module per subcommand.

pub(crate) mod bench;
pub(crate) mod create;
pub(crate) mod get;
pub(crate) mod inspect;
pub(crate) mod node_common;
pub(crate) mod progress_log;
pub(crate) mod seed;
pub(crate) mod seed_many;
pub(crate) mod sim;
pub(crate) mod source;
pub(crate) mod swarm;
pub(crate) mod tracker;
pub(crate) mod web_seed;
