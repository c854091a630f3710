//! `p2pe create`.

/// Arguments of `p2pe create`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs `p2pe create`.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("p2pe create: not built yet")
}
