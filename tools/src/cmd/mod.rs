//! One module per subcommand.

pub mod bench;
pub mod create;
pub mod get;
pub mod inspect;
pub mod node_common;
pub mod progress_log;
pub mod seed;
pub mod seed_many;
pub mod sim;
pub mod source;
pub mod swarm;
pub mod tracker;
pub mod web_seed;
