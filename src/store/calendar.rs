//! Tax-calendar tasks: one task per client + event + period, created at most once however often generation runs
//! (the unique index `tasks_calendar_key` of migration 0002 decides, on both engines).

use anyhow::Context as _;
use sqlx::{AnyConnection, Row as _};

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
    let row = sqlx::query(
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
    let Some(row) = row else { return Ok(None) };
    let id: i64 = row.try_get("id")?;
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

/// A tax-calendar task as stored, for listings and the ICS feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CalendarTaskRow {
    pub id: i64,
    pub client_inn: String,
    pub event: String,
    pub period: String,
    pub title: String,
    pub assignee: Option<String>,
    pub due: String,
    pub status: String,
}

/// The tax-calendar tasks, optionally of one assignee, by due date.
pub async fn calendar_tasks(
    conn: &mut AnyConnection,
    assignee: Option<&str>,
) -> anyhow::Result<Vec<CalendarTaskRow>> {
    let rows = sqlx::query(
        "SELECT id, client_inn, event, period, title, assignee, due, status FROM tasks \
         WHERE event IS NOT NULL AND ($1 = '' OR assignee = $1) ORDER BY due, id",
    )
    .bind(assignee.unwrap_or_default())
    .fetch_all(&mut *conn)
    .await
    .context("list tax-calendar tasks")?;
    rows.iter()
        .map(|r| {
            Ok(CalendarTaskRow {
                id: r.try_get("id")?,
                client_inn: r.try_get("client_inn")?,
                event: r.try_get("event")?,
                period: r.try_get("period")?,
                title: r.try_get("title")?,
                assignee: r.try_get("assignee")?,
                due: r.try_get("due")?,
                status: r.try_get("status")?,
            })
        })
        .collect()
}

/// The (client, event, period) keys of tax-calendar tasks due on or after `due_from` (ISO date).
pub async fn calendar_task_keys(
    conn: &mut AnyConnection,
    due_from: &str,
) -> anyhow::Result<Vec<(String, String, String)>> {
    let rows = sqlx::query(
        "SELECT client_inn, event, period FROM tasks WHERE event IS NOT NULL AND due >= $1",
    )
    .bind(due_from)
    .fetch_all(&mut *conn)
    .await
    .context("list the keys of tax-calendar tasks")?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get("client_inn")?,
                r.try_get("event")?,
                r.try_get("period")?,
            ))
        })
        .collect()
}
