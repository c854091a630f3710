//! One module per subcommand.

pub mod create;
pub mod inspect;
pub mod sim;
pub mod tracker;
