//! Tax-calendar tasks: one task per client + event + period, created at most once however often generation runs
//! (the unique index `tasks_calendar_key` of migration 0002 decides, on both engines).

use super::composed_sql;
use super::messages::{Task, TASK_COLUMNS};
use anyhow::Context as _;
use sqlx::AnyConnection;

/// A task for one obligation of the tax calendar.
#[derive(Debug, Clone, Default)]
pub struct NewCalendarTask {
    pub client_inn: String,
    /// The canonical event id (`usn_declaration_org`).
    pub event: String,
    /// The period as the calendar writes it (`2025`, `Q1 2026`).
    pub period: String,
    pub title: String,
    pub role: String,
    pub assignee: Option<String>,
    /// ISO date.
    pub due: String,
    /// JSON: where the task came from (definition, nominal date, law).
    pub provenance: String,
    pub created_at: String,
}

/// Inserts the task unless the client already has one for this event and period; `Some(id)` when it was created.
/// `ON CONFLICT DO NOTHING` rather than a look-up first, so two instances generating at once still create it once.
pub async fn insert_calendar_task(
    conn: &mut AnyConnection,
    t: &NewCalendarTask,
) -> anyhow::Result<Option<i64>> {
    let id: Option<i64> = sqlx::query_scalar(
        "INSERT INTO tasks (message, case_id, client_inn, step, title, role, assignee, due, priority, provenance, \
         created_at, event, period) VALUES (NULL, NULL, $1, $2, $3, $4, $5, $6, 'normal', $7, $8, $9, $10) \
         ON CONFLICT (client_inn, event, period) DO NOTHING RETURNING id",
    )
    .bind(&t.client_inn)
    .bind("calendar")
    .bind(&t.title)
    .bind(&t.role)
    .bind(&t.assignee)
    .bind(&t.due)
    .bind(&t.provenance)
    .bind(&t.created_at)
    .bind(&t.event)
    .bind(&t.period)
    .fetch_optional(&mut *conn)
    .await
    .context("insert tax-calendar task")?;
    let Some(id) = id else { return Ok(None) };
    // The firm's task tracker hears of the task in the same transaction (nothing queued without sinks).
    super::sinks::queue_task_event(
        conn,
        id,
        super::sinks::EVENT_CREATED,
        &format!("created:{id}"),
        None,
        &t.created_at,
    )
    .await?;
    Ok(Some(id))
}

/// The tax-calendar tasks (those with an event), optionally of one assignee, by due date.
pub async fn calendar_tasks(
    conn: &mut AnyConnection,
    assignee: Option<&str>,
) -> anyhow::Result<Vec<Task>> {
    let sql = format!(
        "SELECT {TASK_COLUMNS} FROM tasks t \
         WHERE t.event IS NOT NULL AND ($1 = '' OR t.assignee = $1) ORDER BY t.due, t.id"
    );
    sqlx::query_as(composed_sql(sql))
        .bind(assignee.unwrap_or_default())
        .fetch_all(&mut *conn)
        .await
        .context("list tax-calendar tasks")
}

/// The (client, event, period) keys of tax-calendar tasks due on or after `due_from` (ISO date).
pub async fn calendar_task_keys(
    conn: &mut AnyConnection,
    due_from: &str,
) -> anyhow::Result<Vec<(String, String, String)>> {
    sqlx::query_as(
        "SELECT client_inn, event, period FROM tasks WHERE event IS NOT NULL AND due >= $1",
    )
    .bind(due_from)
    .fetch_all(&mut *conn)
    .await
    .context("list the keys of tax-calendar tasks")
}
