//! The processed-mail log as auditors use it: `taxinbox audit …`. The chain itself is written in `store`.

use crate::cli::App;
use crate::store;
use clap::Subcommand;
use std::path::Path;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain of the processed-mail log; names the first bad entry.
    Verify,
}

pub async fn run(config: Option<&Path>, command: AuditCommand) -> anyhow::Result<ExitCode> {
    match command {
        AuditCommand::Verify => {
            let app = App::open(config).await?;
            let mut conn = app.store.acquire().await?;
            match store::verify_log(&mut conn).await? {
                store::VerifyOutcome::Intact { entries } => {
                    println!("processed-mail log intact: {entries} entries");
                    Ok(ExitCode::SUCCESS)
                }
                store::VerifyOutcome::Broken { seq, reason } => {
                    println!("processed-mail log BROKEN at entry {seq}: {reason}");
                    Ok(ExitCode::from(2))
                }
            }
        }
    }
}
