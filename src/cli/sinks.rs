//! `taxinbox sinks status|retry|check`: the firm's task trackers (`[[sinks]]`).

use crate::app::Instance;
use crate::notify::sink::{check, status_lines};
use crate::store;
use chrono::Utc;
use std::io::Write as _;
use std::path::Path;

/// `taxinbox sinks …`.
#[derive(Debug, clap::Subcommand)]
pub enum SinksCommand {
    /// Events per sink and state (pending, delivered, failed), with the newest error of each, and the tracker
    /// tasks that were lost (deleted on the portal, or invisible to the webhook's owner).
    Status,
    /// Bitrix24: the webhook's scopes, which accountant maps to which user and who is missing. Telegram: the bot
    /// (`getMe`), which accountant has a chat and who has none. Sends and changes nothing.
    Check,
    /// Queue the events that failed for good again (after fixing the sink or the tracker).
    Retry {
        /// Only this sink's events.
        #[arg(long)]
        sink: Option<String>,
    },
}

pub async fn run_command(
    config: Option<&Path>,
    command: SinksCommand,
) -> anyhow::Result<std::process::ExitCode> {
    let app = Instance::open(config).await?;
    match command {
        SinksCommand::Status => {
            let lines = status_lines(&app.store).await?;
            if lines.is_empty() {
                writeln!(std::io::stdout(), "no task events queued for any sink")?;
            }
            for line in lines {
                writeln!(std::io::stdout(), "{line}")?;
            }
        }
        SinksCommand::Check => {
            let lines = check(&app.store, &app.settings).await?;
            if lines.is_empty() {
                writeln!(std::io::stdout(), "no Bitrix24 or Telegram sink configured")?;
            }
            for line in lines {
                writeln!(std::io::stdout(), "{line}")?;
            }
        }
        SinksCommand::Retry { sink } => {
            let mut conn = app.store.acquire().await?;
            let n = store::retry_failed_sink_events(
                &mut conn,
                sink.as_deref().unwrap_or_default(),
                &store::timestamp(Utc::now()),
            )
            .await?;
            writeln!(std::io::stdout(), "{n} failed task event(s) queued again")?;
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}
