//! `taxinbox calendar [generate]`: every client's obligations as text, JSONL or ICS; `generate` creates the tasks
//! that are due.

use crate::app::Instance;
use crate::calendar::obligations::{generate_today, ics, obligations, open_tasks, CalendarData};
use crate::store;
use chrono::{Datelike as _, Utc};
use clap::{Args, Subcommand, ValueEnum};
use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

/// Arguments of `taxinbox calendar`.
#[derive(Debug, Args)]
pub struct CalendarArgs {
    #[command(subcommand)]
    pub command: Option<CalendarCommand>,
    /// Obligations falling due in this year (default: the current year).
    #[arg(long)]
    pub year: Option<i32>,
    /// Only this client (INN).
    #[arg(long)]
    pub client: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = CalendarFormat::Text)]
    pub format: CalendarFormat,
    /// Only obligations (and, for ICS, open tasks) of this person.
    #[arg(long)]
    pub assignee: Option<String>,
}

/// `calendar generate`.
#[derive(Debug, Subcommand)]
pub enum CalendarCommand {
    /// Create the tasks whose lead time has begun (idempotent).
    Generate,
}

/// How `calendar` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CalendarFormat {
    Text,
    Jsonl,
    Ics,
}

/// `taxinbox calendar …`.
pub async fn run(config: Option<&Path>, args: CalendarArgs) -> anyhow::Result<ExitCode> {
    let app = Instance::open(config).await?;
    if let Some(CalendarCommand::Generate) = args.command {
        let outcome = generate_today(
            &app.store,
            &app.settings.rules.dir,
            app.settings.general.timezone,
        )
        .await?;
        writeln!(
            std::io::stdout(),
            "calendar generate: {} task(s) created, {} already existed",
            outcome.created,
            outcome.existing
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    let directory = {
        let mut conn = app.store.acquire().await?;
        store::load_directory(&mut conn).await?
    };
    let data = CalendarData::load(&app.settings.rules.dir)?;
    let now = Utc::now();
    let year = args
        .year
        .unwrap_or_else(|| now.with_timezone(&app.settings.general.timezone).year());
    if let Some(inn) = &args.client {
        if directory.client(inn).is_none() {
            anyhow::bail!("--client {inn}: no such client in the directory");
        }
    }
    let assignee = args.assignee.as_deref().map(str::to_lowercase);
    let lines = obligations(
        &directory,
        &data,
        year,
        args.client.as_deref(),
        assignee.as_deref(),
    )?;
    let mut out = std::io::stdout().lock();
    match args.format {
        CalendarFormat::Jsonl => {
            for l in &lines {
                writeln!(out, "{}", serde_json::to_string(l)?)?;
            }
        }
        CalendarFormat::Text => {
            for l in &lines {
                writeln!(
                    out,
                    "{}  {:<12} {:<30} {:<24} {:<34} {}",
                    l.due,
                    l.client_inn,
                    l.event,
                    l.period,
                    l.assignee.as_deref().unwrap_or("(unassigned)"),
                    l.title
                )?;
            }
        }
        CalendarFormat::Ics => {
            let mut conn = app.store.acquire().await?;
            let tasks = match &assignee {
                Some(person) => open_tasks(&mut conn, person).await?,
                None => Vec::new(),
            };
            out.write_all(ics(&lines, &tasks, now).as_bytes())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
