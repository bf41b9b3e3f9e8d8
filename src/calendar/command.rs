//! `taxinbox calendar`: the tax-calendar obligations of every client, and `calendar generate`.
//! (Being written for the tax-calendar issue.)

use clap::Args;
use std::path::Path;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct CalendarArgs {}

pub async fn run(_config: Option<&Path>, _args: CalendarArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("taxinbox calendar is not available in this build yet")
}
