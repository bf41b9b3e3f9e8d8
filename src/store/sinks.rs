//! SQL of the task sinks (the firm's task tracker: a signed webhook, Bitrix24): the registry of configured sinks,
//! the sink outbox (one row per sink and task event, queued in the transaction that creates the task, the link, the
//! escalation, or a person's done / reassign), its claiming in order per task, and the tracker's own ids of our
//! tasks.

use super::composed_sql;
use super::messages::{clean, TaskView, TASK_VIEW_COLUMNS, TASK_VIEW_FROM};
use super::status::{MessageStatus, SinkEventStatus, TaskStatus};
use super::Engine;
use anyhow::Context as _;
use sqlx::AnyConnection;

/// The kinds of task event a sink hears of.
pub const EVENT_CREATED: &str = "created";
/// A mail joined the task's case.
pub const EVENT_LINKED: &str = "linked";
/// An escalation rung was reached.
pub const EVENT_ESCALATED: &str = "escalated";
/// A person marked the task done (web view; log entry `task_done`).
pub const EVENT_DONE: &str = "done";
/// A person gave the task to a colleague (web view; log entry `task_reassigned`).
pub const EVENT_REASSIGNED: &str = "reassigned";
/// A person undid their done: the task is open again (web view; log entry `task_reopened`).
pub const EVENT_REOPENED: &str = "reopened";

/// Records which sinks the configuration names (`name`, `kind`): those become active, every other one inactive, so
/// events queued from now on reach exactly the configured sinks. Rows already queued stay as they are.
pub async fn register_sinks(
    conn: &mut AnyConnection,
    sinks: &[(String, String)],
    now: &str,
) -> anyhow::Result<()> {
    for (name, kind) in sinks {
        sqlx::query(
            "INSERT INTO sinks (name, kind, active, registered_at) VALUES ($1, $2, 1, $3) \
             ON CONFLICT (name) DO UPDATE SET kind = excluded.kind, active = 1",
        )
        .bind(name)
        .bind(kind)
        .bind(now)
        .execute(&mut *conn)
        .await
        .with_context(|| format!("register sink {name}"))?;
    }
    let known: Vec<String> = sqlx::query_scalar("SELECT name FROM sinks WHERE active = 1")
        .fetch_all(&mut *conn)
        .await
        .context("read the registered sinks")?;
    for name in known {
        if !sinks.iter().any(|(n, _)| *n == name) {
            sqlx::query("UPDATE sinks SET active = 0 WHERE name = $1")
                .bind(&name)
                .execute(&mut *conn)
                .await
                .with_context(|| format!("deactivate sink {name}"))?;
        }
    }
    Ok(())
}

/// Queues one task event for every active sink, once per sink and `event_key` (a second call queues nothing).
/// Returns how many rows were queued (0 without sinks).
pub async fn queue_task_event(
    conn: &mut AnyConnection,
    task: i64,
    event: &str,
    event_key: &str,
    message: Option<i64>,
    now: &str,
) -> anyhow::Result<u64> {
    let done = sqlx::query(
        "INSERT INTO sink_outbox (sink, task, event, event_key, message, not_before, created_at) \
         SELECT name, $1, $2, $3, $4, $5, $5 FROM sinks WHERE active = 1 \
         ON CONFLICT (sink, event_key) DO NOTHING",
    )
    .bind(task)
    .bind(event)
    .bind(event_key)
    .bind(message)
    .bind(now)
    .execute(&mut *conn)
    .await
    .with_context(|| format!("queue task event {event_key}"))?;
    Ok(done.rows_affected())
}

/// Queues the task events one committed mail causes: `created` for each task of a processed mail, `linked` for
/// each open task of the case a linked mail joined. Idempotent; called in the mail's own transaction.
pub async fn queue_task_events_of_message(
    conn: &mut AnyConnection,
    message: i64,
    now: &str,
) -> anyhow::Result<u64> {
    let Some((status, case_id)) = sqlx::query_as::<_, (String, Option<i64>)>(
        "SELECT status, case_id FROM messages WHERE id = $1",
    )
    .bind(message)
    .fetch_optional(&mut *conn)
    .await
    .context("read a message for its task events")?
    else {
        return Ok(0);
    };
    let (sql, event) = match (status.parse::<MessageStatus>()?, case_id) {
        (MessageStatus::Processed, _) => (
            "SELECT id FROM tasks WHERE message = $1 ORDER BY id",
            EVENT_CREATED,
        ),
        (MessageStatus::Linked, Some(_)) => (
            "SELECT id FROM tasks WHERE case_id = (SELECT case_id FROM messages WHERE id = $1) \
             AND status = 'open' ORDER BY id",
            EVENT_LINKED,
        ),
        _ => return Ok(0),
    };
    let tasks: Vec<i64> = sqlx::query_scalar(sql)
        .bind(message)
        .fetch_all(&mut *conn)
        .await
        .context("read the tasks a mail touches")?;
    let mut queued = 0;
    for task in tasks {
        let (key, linked) = if event == EVENT_CREATED {
            (format!("created:{task}"), None)
        } else {
            (format!("linked:{task}:{message}"), Some(message))
        };
        queued += queue_task_event(conn, task, event, &key, linked, now).await?;
    }
    Ok(queued)
}

/// Queues `done`, `reopened` or `reassigned` for a task a person changed, in the transaction that changes the task and appends
/// the log entry `log_seq` recording it. The key, `<event>:<task>:<log seq>`, names that entry: a task reassigned
/// twice gives two events, each delivered with the assignee of its own change (see [`sink_task_change`]).
pub async fn queue_task_change(
    conn: &mut AnyConnection,
    task: i64,
    event: &str,
    log_seq: i64,
    now: &str,
) -> anyhow::Result<u64> {
    anyhow::ensure!(
        [EVENT_DONE, EVENT_REOPENED, EVENT_REASSIGNED].contains(&event),
        "a task change is {EVENT_DONE}, {EVENT_REOPENED} or {EVENT_REASSIGNED}, not {event}"
    );
    queue_task_event(
        conn,
        task,
        event,
        &format!("{event}:{task}:{log_seq}"),
        None,
        now,
    )
    .await
}

/// What a person changed, as a sink tells it: `done`, `reopened` and `reassigned` events.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TaskChange {
    /// The signed-in person who made the change.
    pub by: Option<String>,
    /// When (RFC 3339, the log entry's time).
    pub at: String,
    /// The task's status after the change (`done`; `open` after a reopening or a reassignment).
    pub status: TaskStatus,
    /// The assignee after the change.
    pub assignee: Option<String>,
    /// `reassigned`: the assignee before it.
    pub previous_assignee: Option<String>,
    /// The log entry recording the change (`audit show` / the web log find it by this number).
    pub log_seq: i64,
}

/// The change a `done`, `reopened` or `reassigned` event reports, read from the log entry its key names; `None` for
/// other events (or a key without a log entry, which the web never writes).
pub async fn sink_task_change(
    conn: &mut AnyConnection,
    event: &PendingSinkEvent,
) -> anyhow::Result<Option<TaskChange>> {
    let logged_as = match event.event.as_str() {
        EVENT_DONE => "task_done",
        EVENT_REOPENED => "task_reopened",
        EVENT_REASSIGNED => "task_reassigned",
        _ => return Ok(None),
    };
    let Some(seq) = event
        .event_key
        .rsplit(':')
        .next()
        .and_then(|s| s.parse::<i64>().ok())
    else {
        return Ok(None);
    };
    let Some((at, logged, payload)) = sqlx::query_as::<_, (String, String, String)>(
        "SELECT at, event, payload FROM audit_log WHERE seq = $1",
    )
    .bind(seq)
    .fetch_optional(&mut *conn)
    .await
    .with_context(|| format!("read the log entry {seq} of a task change"))?
    else {
        return Ok(None);
    };
    if logged != logged_as {
        return Ok(None);
    }
    let done = event.event == EVENT_DONE;
    let reassigned = event.event == EVENT_REASSIGNED;
    let payload: serde_json::Value =
        serde_json::from_str(&payload).unwrap_or(serde_json::Value::Null);
    let text = |key: &str| payload.get(key).and_then(|v| v.as_str()).map(str::to_owned);
    Ok(Some(TaskChange {
        by: text("by"),
        at,
        status: if done {
            TaskStatus::Done
        } else {
            TaskStatus::Open
        },
        assignee: if reassigned {
            text("to")
        } else {
            text("assignee")
        },
        previous_assignee: if reassigned { text("from") } else { None },
        log_seq: seq,
    }))
}

/// A notice to one person (Telegram): the daily digest, an escalation rung's message.
pub const EVENT_DIGEST: &str = "digest";
/// An escalation rung's message to one of the people it names (Telegram; the tracker's own event is
/// [`EVENT_ESCALATED`], once per task and rung).
pub const EVENT_ESCALATION_NOTICE: &str = "escalation";

/// Queues a notice to `recipient` (a directory e-mail) with its text for every active sink of kind `telegram`, once
/// per sink and `event_key`; `task` is the task it is about, if one (an escalation), `None` for the digest. A notice
/// of a task is delivered in order with the task's events. Returns how many rows were queued (0 without such sinks).
pub async fn queue_person_notice(
    conn: &mut AnyConnection,
    task: Option<i64>,
    event: &str,
    event_key: &str,
    recipient: &str,
    body: &str,
    now: &str,
) -> anyhow::Result<u64> {
    let done = sqlx::query(
        "INSERT INTO sink_outbox (sink, task, event, event_key, recipient, body, not_before, created_at) \
         SELECT name, $1, $2, $3, $4, $5, $6, $6 FROM sinks WHERE active = 1 AND kind = 'telegram' \
         ON CONFLICT (sink, event_key) DO NOTHING",
    )
    .bind(task)
    .bind(event)
    .bind(event_key)
    .bind(recipient)
    .bind(clean(body))
    .bind(now)
    .execute(&mut *conn)
    .await
    .with_context(|| format!("queue notice {event_key}"))?;
    Ok(done.rows_affected())
}

/// A sink event taken for delivery.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PendingSinkEvent {
    pub id: i64,
    pub sink: String,
    /// The task; 0 for a notice about no task (the digest, [`queue_person_notice`]).
    pub task: i64,
    pub event: String,
    pub event_key: String,
    /// The mail that joined the case (`linked`).
    pub message: Option<i64>,
    pub attempts: i64,
    pub created_at: String,
    /// A notice's person (directory e-mail); `None` for a task event.
    pub recipient: Option<String>,
    /// A notice's text as queued; `None` for a task event.
    pub body: Option<String>,
}

/// Takes the next due event of `sink`: the oldest pending one whose task has no earlier event of this sink still
/// undelivered (pending or failed), so each task's events reach the tracker strictly in order.
pub async fn claim_sink_event(
    conn: &mut AnyConnection,
    engine: Engine,
    sink: &str,
    now: &str,
) -> anyhow::Result<Option<PendingSinkEvent>> {
    let sql = format!(
        "SELECT o.id, o.sink, COALESCE(o.task, 0) AS task, o.event, o.event_key, o.message, o.attempts, \
         o.created_at, o.recipient, o.body FROM sink_outbox o WHERE o.sink = $1 AND o.status = 'pending' AND o.not_before <= $2 \
         AND NOT EXISTS (SELECT 1 FROM sink_outbox p WHERE p.sink = o.sink AND p.task = o.task \
         AND p.id < o.id AND p.status <> 'delivered') ORDER BY o.id LIMIT 1{}",
        engine.skip_locked()
    );
    sqlx::query_as(composed_sql(sql))
        .bind(sink)
        .bind(now)
        .fetch_optional(&mut *conn)
        .await
        .with_context(|| format!("claim an event for sink {sink}"))
}

/// Marks an event delivered (the tracker answered 2xx).
pub async fn mark_sink_delivered(
    conn: &mut AnyConnection,
    id: i64,
    now: &str,
) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE sink_outbox SET status = 'delivered', delivered_at = $1, attempts = attempts + 1, \
         last_error = NULL WHERE id = $2",
    )
    .bind(now)
    .bind(id)
    .execute(&mut *conn)
    .await
    .context("mark a sink event delivered")?;
    Ok(())
}

/// Records a failed attempt: again at `retry_at`, or `failed` for good when `None`.
pub async fn mark_sink_failed(
    conn: &mut AnyConnection,
    id: i64,
    error: &str,
    retry_at: Option<&str>,
) -> anyhow::Result<()> {
    let status = match retry_at {
        Some(_) => SinkEventStatus::Pending,
        None => SinkEventStatus::Failed,
    };
    super::record_failed_attempt(
        conn,
        "sink_outbox",
        id,
        &clean(error),
        status.as_str(),
        retry_at,
    )
    .await
}

/// Puts the failed events of `sink` (all sinks when empty) back in the queue, due at `now`; returns how many.
pub async fn retry_failed_sink_events(
    conn: &mut AnyConnection,
    sink: &str,
    now: &str,
) -> anyhow::Result<u64> {
    let done = sqlx::query(
        "UPDATE sink_outbox SET status = 'pending', attempts = 0, not_before = $1 \
         WHERE status = 'failed' AND ($2 = '' OR sink = $2)",
    )
    .bind(now)
    .bind(sink)
    .execute(&mut *conn)
    .await
    .context("queue failed sink events again")?;
    Ok(done.rows_affected())
}

/// The tracker's id of our `task` in `sink`, once known.
pub async fn sink_remote_id(
    conn: &mut AnyConnection,
    sink: &str,
    task: i64,
) -> anyhow::Result<Option<String>> {
    sqlx::query_scalar("SELECT remote_id FROM sink_tasks WHERE sink = $1 AND task = $2")
        .bind(sink)
        .bind(task)
        .fetch_optional(&mut *conn)
        .await
        .context("read the tracker's id of a task")
}

/// Records the tracker's id of our `task` (the first one recorded stays).
pub async fn set_sink_remote_id(
    conn: &mut AnyConnection,
    sink: &str,
    task: i64,
    remote_id: &str,
    now: &str,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO sink_tasks (sink, task, remote_id, created_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (sink, task) DO NOTHING",
    )
    .bind(sink)
    .bind(task)
    .bind(remote_id)
    .bind(now)
    .execute(&mut *conn)
    .await
    .context("record the tracker's id of a task")?;
    Ok(())
}

/// A mail as a sink describes it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SinkMail {
    pub id: i64,
    pub message_id: Option<String>,
    pub subject: String,
    pub from: String,
    /// ISO date the mail counts as received.
    pub received: String,
}

/// The columns of `messages` a [`SinkMail`] is built from.
#[derive(sqlx::FromRow)]
struct SinkMailRow {
    id: i64,
    message_id: Option<String>,
    subject: String,
    from_addr: String,
    received_date: String,
}

impl From<SinkMailRow> for SinkMail {
    fn from(m: SinkMailRow) -> SinkMail {
        SinkMail {
            id: m.id,
            message_id: m.message_id,
            subject: m.subject,
            from: m.from_addr,
            received: m.received_date,
        }
    }
}

/// What a sink is told about a task.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SinkTask {
    pub id: i64,
    pub title: String,
    pub step: String,
    pub role: String,
    pub assignee: Option<String>,
    /// ISO date.
    pub due: String,
    pub status: TaskStatus,
    pub priority: String,
    pub client_inn: Option<String>,
    pub client_name: Option<String>,
    /// The demand kind of the mail the task came from.
    pub kind: Option<String>,
    /// The tax-calendar event and period, for a calendar task.
    pub event: Option<String>,
    pub period: Option<String>,
    /// Where the deadline comes from (JSON, as stored).
    pub provenance: serde_json::Value,
    /// The mail the task came from; `None` for a tax-calendar task.
    pub mail: Option<SinkMail>,
    /// Later mail that joined the task's case, oldest first.
    pub linked_mail: Vec<SinkMail>,
}

/// The task as a sink describes it now; `None` when there is no such task.
pub async fn sink_task(conn: &mut AnyConnection, task: i64) -> anyhow::Result<Option<SinkTask>> {
    let sql = format!("SELECT {TASK_VIEW_COLUMNS} FROM {TASK_VIEW_FROM} WHERE t.id = $1");
    let Some(TaskView {
        task: t,
        client_name,
        kind,
    }) = sqlx::query_as(composed_sql(sql))
        .bind(task)
        .fetch_optional(&mut *conn)
        .await
        .with_context(|| format!("read task {task} for a sink"))?
    else {
        return Ok(None);
    };
    let mail = match t.message {
        Some(id) => sqlx::query_as::<_, SinkMailRow>(
            "SELECT id, message_id, subject, from_addr, received_date FROM messages WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
        .context("read a task's mail")?
        .map(SinkMail::from),
        None => None,
    };
    let linked_mail = match t.case_id {
        Some(case_id) => sqlx::query_as::<_, SinkMailRow>(
            "SELECT id, message_id, subject, from_addr, received_date FROM messages \
             WHERE case_id = $1 AND status = 'linked' ORDER BY id",
        )
        .bind(case_id)
        .fetch_all(&mut *conn)
        .await
        .context("read the mail linked to a task's case")?
        .into_iter()
        .map(SinkMail::from)
        .collect(),
        None => Vec::new(),
    };
    Ok(Some(SinkTask {
        id: t.id,
        title: t.title,
        step: t.step,
        role: t.role,
        assignee: t.assignee,
        due: t.due,
        status: t.status,
        priority: t.priority,
        client_inn: t.client_inn,
        client_name,
        kind,
        event: t.event,
        period: t.period,
        provenance: serde_json::from_str(&t.provenance).unwrap_or(serde_json::Value::Null),
        mail,
        linked_mail,
    }))
}

/// One line of `taxinbox sinks status`: how many events of a sink are in a state, and the newest error.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SinkStatusLine {
    pub sink: String,
    #[sqlx(try_from = "String")]
    pub status: SinkEventStatus,
    #[sqlx(rename = "n")]
    pub count: i64,
    pub last_error: Option<String>,
}

/// Counts of sink events by sink and status, with the error of the newest failed or retrying one.
pub async fn sink_status(conn: &mut AnyConnection) -> anyhow::Result<Vec<SinkStatusLine>> {
    sqlx::query_as(
        "SELECT o.sink, o.status, COUNT(*) AS n, (SELECT p.last_error FROM sink_outbox p \
         WHERE p.sink = o.sink AND p.status = o.status AND p.last_error IS NOT NULL ORDER BY p.id DESC LIMIT 1) \
         AS last_error FROM sink_outbox o GROUP BY o.sink, o.status ORDER BY o.sink, o.status",
    )
    .fetch_all(&mut *conn)
    .await
    .context("count sink events")
}
