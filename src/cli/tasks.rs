//! `taxinbox tasks`: the task list (text, or the JSONL contract).

use super::Format;
use crate::app::Instance;
use crate::store;
use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

/// One line of `tasks --format jsonl`: the contract, its fields in this order; built from the stored task.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TaskLine {
    pub id: i64,
    /// The mail the task came from; `None` for a tax-calendar task.
    pub message: Option<i64>,
    pub client_inn: Option<String>,
    pub step: String,
    pub title: String,
    pub role: String,
    /// `None` for a task in the unassigned queue.
    pub assignee: Option<String>,
    /// ISO date.
    pub due: String,
    pub status: store::TaskStatus,
}

impl From<store::Task> for TaskLine {
    fn from(t: store::Task) -> TaskLine {
        TaskLine {
            id: t.id,
            message: t.message,
            client_inn: t.client_inn,
            step: t.step,
            title: t.title,
            role: t.role,
            assignee: t.assignee,
            due: t.due,
            status: t.status,
        }
    }
}

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
    for t in tasks {
        match format {
            Format::Jsonl => writeln!(out, "{}", serde_json::to_string(&TaskLine::from(t))?)?,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_line_prints_the_contract_fields_in_their_order() {
        let task = store::Task {
            id: 7,
            message: Some(3),
            case_id: Some(2),
            client_inn: Some("7728997898".into()),
            step: "answer".into(),
            title: "Ответить".into(),
            role: "accountant".into(),
            assignee: None,
            due: "2026-03-19".into(),
            priority: "high".into(),
            status: store::TaskStatus::Done,
            provenance: "{}".into(),
            created_at: "2026-03-03T10:00:00Z".into(),
            event: None,
            period: None,
        };
        assert_eq!(
            serde_json::to_string(&TaskLine::from(task)).unwrap(),
            r#"{"id":7,"message":3,"client_inn":"7728997898","step":"answer","title":"Ответить","role":"accountant","assignee":null,"due":"2026-03-19","status":"done"}"#
        );
    }
}
