//! `taxinbox tasks`: the task list (text, or the JSONL contract).

use super::Format;
use crate::app::Instance;
use crate::store;
use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

/// Lists tasks: one person's, the overdue ones, or the unassigned queue.
pub async fn list(
    config: Option<&Path>,
    assignee: Option<String>,
    overdue: bool,
    unassigned: bool,
    format: Format,
) -> anyhow::Result<ExitCode> {
    let app = Instance::open(config).await?;
    let mut conn = app.store.acquire().await?;
    let today = chrono::Utc::now()
        .with_timezone(&app.settings.general.timezone)
        .date_naive();
    let filter = store::TaskFilter {
        assignee,
        unassigned,
        due_before: overdue.then(|| today.to_string()),
        open_only: overdue,
    };
    let tasks = store::list_tasks(&mut conn, &filter).await?;
    let mut out = std::io::stdout().lock();
    for t in &tasks {
        match format {
            Format::Jsonl => writeln!(out, "{}", serde_json::to_string(t)?)?,
            Format::Text => writeln!(
                out,
                "{}  {:<11} {:<12} {:<34} {}",
                t.due,
                t.step,
                t.client_inn.as_deref().unwrap_or("-"),
                t.assignee.as_deref().unwrap_or("(unassigned)"),
                t.title
            )?,
        }
    }
    Ok(ExitCode::SUCCESS)
}
