//! One module per subcommand.

pub mod bench;
pub mod create;
pub mod inspect;
pub mod sim;
pub mod tracker;
