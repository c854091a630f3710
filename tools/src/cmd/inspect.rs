//! `p2pe inspect`.

/// Arguments of `p2pe inspect`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs `p2pe inspect`.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("p2pe inspect: not built yet")
}
