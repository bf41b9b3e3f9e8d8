//! `taxinbox rules check|test|replay|shadow`: the library functions decide, this module prints.

use super::Format;
use crate::pipeline::{fixtures, replay, shadow};
use crate::rules::check;
use crate::settings::Settings;
use chrono::NaiveDate;
use clap::Subcommand;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Compile every rule file and lint the decisions (statically, and on the fixtures of rules/tests);
    /// errors name file:line:col and exit non-zero.
    Check,
    /// Run the fixtures: `rules/tests/<name>.eml` beside `<name>.expected.toml`, against rules/tests/directory/.
    Test {
        /// Fixture folder (default: `tests` in the rules folder).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Re-run stored mail received on or after DATE through a candidate ruleset and print the decisions that would
    /// change. Writes nothing.
    Replay {
        /// ISO date (YYYY-MM-DD): mail whose received date is on or after it.
        #[arg(long, value_name = "DATE")]
        since: NaiveDate,
        /// Candidate rules: a rules folder (with `mail/`) or a folder of `*.rhai` alone (default: the configured).
        #[arg(long, value_name = "DIR")]
        rules: Option<PathBuf>,
    },
    /// Print the live mails the shadow ruleset (`rules.shadow_dir`) decided differently from the live rules, live →
    /// shadow. Writes nothing.
    Shadow {
        /// ISO date (YYYY-MM-DD): mail committed on or after it (UTC); default: all.
        #[arg(long, value_name = "DATE")]
        since: Option<NaiveDate>,
        /// `text`: a line per mail; `jsonl`: one JSON object per mail.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
}

/// `taxinbox rules …`.
pub async fn run(config: Option<&Path>, command: RulesCommand) -> anyhow::Result<ExitCode> {
    let settings = Settings::load(config)?;
    let limits = settings.rules.limits.clone();
    let root = settings.rules.dir.clone();
    match command {
        RulesCommand::Check => {
            let report = check::check(&root, &limits, settings.general.timezone)?;
            write!(std::io::stdout(), "{report}")?;
            Ok(exit(report.errors() == 0))
        }
        RulesCommand::Test { dir } => {
            let dir = dir.unwrap_or_else(|| root.join("tests"));
            let run = fixtures::run_fixtures(&root, &dir, &limits, settings.general.timezone)?;
            write!(std::io::stdout(), "{run}")?;
            Ok(exit(run.failed() == 0))
        }
        RulesCommand::Replay { since, rules } => {
            let store = crate::store::Store::connect_read_only(&settings.database.url).await?;
            let directory = {
                let mut conn = store.acquire().await?;
                crate::store::load_directory(&mut conn).await?
            };
            let pipeline = replay::candidate_pipeline(
                &root,
                rules.as_deref(),
                &limits,
                directory,
                settings.general.timezone,
            )?;
            let outcome = replay::replay(&store, &pipeline, since).await?;
            store.close().await;
            write!(std::io::stdout(), "{outcome}")?;
            Ok(ExitCode::SUCCESS)
        }
        RulesCommand::Shadow { since, format } => {
            let store = crate::store::Store::connect_read_only(&settings.database.url).await?;
            let outcome = shadow::differences(&store, since).await;
            store.close().await;
            let outcome = outcome?;
            match format {
                Format::Text => write!(std::io::stdout(), "{outcome}")?,
                Format::Jsonl => {
                    for d in &outcome.decisions {
                        writeln!(std::io::stdout(), "{}", serde_json::to_string(d)?)?;
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn exit(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
