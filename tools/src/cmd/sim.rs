//! `p2pe sim`.

/// Arguments of `p2pe sim`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs `p2pe sim`.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("p2pe sim: not built yet")
}
