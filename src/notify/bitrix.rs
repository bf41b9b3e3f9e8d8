//! The Bitrix24 sink, over an incoming webhook of the portal (`https://<portal>/rest/<user>/<token>/`; the token is
//! a secret, read from `url_env`/`url_file` and never logged). `created` adds a task (`tasks.task.add`: TITLE,
//! DESCRIPTION, RESPONSIBLE_ID, DEADLINE); `linked` and `escalated` update that same task (`tasks.task.update`:
//! the description rewritten with the mail that joined, the priority raised on an escalation); `reassigned` updates
//! it with the RESPONSIBLE_ID of the new assignee (mapped from the e-mail as for `created`); `done` completes it
//! (`tasks.task.complete`). An event for a task that has no Bitrix24 task yet (the sink was configured later) adds
//! it with the state of now, as `linked` does; `done` then completes what it added.
//!
//! **Never a second task.** `tasks.task.add` is not idempotent, and taxinbox may die after Bitrix24 created the task
//! but before the id is stored. Every task's title therefore ends with a marker, `(taxinbox #<id>)`, and before
//! adding, the sink asks `tasks.task.list` for a task whose title holds the marker; one found is adopted (its id
//! stored) instead of adding another. Updates set fields to values computed from the store, so repeating one is
//! harmless; a repeated `tasks.task.complete` that Bitrix24 refuses is accepted when `tasks.task.get` shows the
//! task completed already.

use super::sink::{http_error, status_error, SinkError};
use super::{client_label, russian_date};
use crate::settings::Responsible;
use crate::store::{
    PendingSinkEvent, SinkTask, TaskChange, EVENT_CREATED, EVENT_DONE, EVENT_ESCALATED,
    EVENT_REASSIGNED,
};
use chrono::{NaiveDate, TimeZone as _};
use secrecy::{ExposeSecret as _, SecretString};

/// Bitrix24's priority "high" (0 low, 1 normal, 2 high).
const PRIORITY_HIGH: u8 = 2;

/// Bitrix24's task status "completed" (2 pending, 3 in progress, 4 awaiting control, 5 completed, 6 deferred), as
/// `tasks.task.get` writes it.
const STATUS_COMPLETED: &str = "5";

/// Bitrix24's error code for "too many requests": worth another try later.
const QUERY_LIMIT_EXCEEDED: &str = "QUERY_LIMIT_EXCEEDED";

/// The marker at the end of every title: how a task created by an attempt whose answer was lost is found again.
pub fn marker(task: i64) -> String {
    format!("(taxinbox #{task})")
}

/// One call of the REST API: POST `<base>/<method>.json` with a JSON body; the `result` on success.
async fn call(
    client: &reqwest::Client,
    base: &SecretString,
    method: &str,
    params: &serde_json::Value,
) -> Result<serde_json::Value, SinkError> {
    let url = format!(
        "{}/{method}.json",
        base.expose_secret().trim_end_matches('/')
    );
    let response = client
        .post(url)
        .json(params)
        .send()
        .await
        .map_err(http_error)?;
    let status = response.status();
    let text = response.text().await.map_err(http_error)?;
    let json: serde_json::Value = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
    if let Some(code) = json.get("error").and_then(|e| e.as_str()) {
        let description = json
            .get("error_description")
            .and_then(|d| d.as_str())
            .unwrap_or_default();
        let message = format!("{method}: {code}: {description} (HTTP {})", status.as_u16());
        return Err(
            if code == QUERY_LIMIT_EXCEEDED || status.is_server_error() {
                SinkError::Transient(message)
            } else {
                SinkError::Permanent(message)
            },
        );
    }
    if !status.is_success() {
        return Err(match status_error(status, &text) {
            SinkError::Transient(m) => SinkError::Transient(format!("{method}: {m}")),
            SinkError::Permanent(m) => SinkError::Permanent(format!("{method}: {m}")),
        });
    }
    json.get("result").cloned().ok_or_else(|| {
        SinkError::Transient(format!("{method}: the answer holds no result: {text:.200}"))
    })
}

/// An id as Bitrix24 writes it: a string or a number.
fn id_of(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The Bitrix24 task carrying our marker, if one exists.
async fn find(
    client: &reqwest::Client,
    base: &SecretString,
    task: i64,
) -> Result<Option<String>, SinkError> {
    let marker = marker(task);
    let result = call(
        client,
        base,
        "tasks.task.list",
        &serde_json::json!({"filter": {"%TITLE": marker}, "select": ["ID", "TITLE"]}),
    )
    .await?;
    let tasks = result
        .get("tasks")
        .and_then(|t| t.as_array())
        .cloned()
        .unwrap_or_default();
    // `%TITLE` is a substring search; the marker's closing bracket keeps #12 from matching #123, and the title is
    // checked here again so a pattern quirk of the portal cannot adopt a stranger's task.
    Ok(tasks
        .iter()
        .filter(|t| {
            t.get("title")
                .and_then(|x| x.as_str())
                .is_some_and(|x| x.contains(&marker))
        })
        .find_map(|t| t.get("id").and_then(id_of)))
}

/// Completes the Bitrix24 task `id`. A repeat (the first answer was lost) may be refused, the task being completed
/// already: that refusal is success once `tasks.task.get` confirms the status.
async fn complete(
    client: &reqwest::Client,
    base: &SecretString,
    id: &str,
) -> Result<(), SinkError> {
    let refused = match call(
        client,
        base,
        "tasks.task.complete",
        &serde_json::json!({"taskId": id}),
    )
    .await
    {
        Ok(_) => return Ok(()),
        Err(SinkError::Permanent(m)) => m,
        Err(e) => return Err(e),
    };
    let task = call(
        client,
        base,
        "tasks.task.get",
        &serde_json::json!({"taskId": id, "select": ["ID", "STATUS"]}),
    )
    .await?;
    let status = task
        .get("task")
        .and_then(|t| t.get("status"))
        .and_then(id_of);
    if status.as_deref() == Some(STATUS_COMPLETED) {
        Ok(())
    } else {
        Err(SinkError::Permanent(refused))
    }
}

/// End of the due day in the firm's zone, as Bitrix24 reads a deadline.
pub fn deadline(due: &str, zone: chrono_tz::Tz) -> Option<String> {
    let day = NaiveDate::parse_from_str(due, "%Y-%m-%d").ok()?;
    let end = day.and_hms_opt(23, 59, 59)?;
    let at = zone.from_local_datetime(&end).earliest()?;
    Some(at.format("%Y-%m-%dT%H:%M:%S%:z").to_string())
}

/// Where a deadline comes from, in words.
fn provenance_text(p: &serde_json::Value) -> String {
    let s = |key: &str| p.get(key).and_then(|v| v.as_str()).unwrap_or_default();
    match s("from") {
        "" if s("source") == "tax_calendar" => format!(
            "налоговый календарь: {} за {}{}",
            s("event"),
            s("period"),
            if s("law").is_empty() {
                String::new()
            } else {
                format!(" ({})", s("law"))
            }
        ),
        "" => "—".to_owned(),
        "rule" => format!("дата из правила: {}", russian_date(s("base"))),
        from => {
            let days = p
                .get("working_days")
                .and_then(serde_json::Value::as_i64)
                .unwrap_or(0);
            format!(
                "{days} раб. дн. от {} ({from}), календарь {}",
                russian_date(s("base")),
                s("calendar")
            )
        }
    }
}

/// The fields of the Bitrix24 task for our task as it stands now.
pub fn fields(
    task: &SinkTask,
    responsible: &Responsible,
    zone: chrono_tz::Tz,
    escalated: bool,
) -> serde_json::Value {
    let client = client_label(task.client_name.as_deref(), task.client_inn.as_deref());
    let mapped = task
        .assignee
        .as_deref()
        .and_then(|a| responsible.by_email.get(&a.to_lowercase()).copied());
    let mut lines = vec![
        format!("Клиент: {client}"),
        format!("Что сделать: {} (шаг: {})", task.title, task.step),
        format!(
            "Срок: {} — {}",
            russian_date(&task.due),
            provenance_text(&task.provenance)
        ),
    ];
    if let Some(mail) = &task.mail {
        lines.push(format!(
            "Письмо: «{}» от {}, получено {}",
            mail.subject,
            mail.from,
            russian_date(&mail.received)
        ));
    }
    for mail in &task.linked_mail {
        lines.push(format!(
            "Ещё письмо по делу: «{}» от {}, получено {}",
            mail.subject,
            mail.from,
            russian_date(&mail.received)
        ));
    }
    match (&task.assignee, mapped) {
        (Some(who), Some(_)) => lines.push(format!("Исполнитель в taxinbox: {who}")),
        (Some(who), None) => lines.push(format!(
            "Исполнитель в taxinbox: {who} — нет в списке пользователей Битрикс24, задача поставлена ответственному по умолчанию"
        )),
        (None, _) => lines.push(
            "Исполнитель в taxinbox не назначен — задача поставлена ответственному по умолчанию"
                .to_owned(),
        ),
    }
    if escalated {
        lines.push("Срок близко, задача не закрыта (эскалация).".to_owned());
    }
    lines.push(format!("taxinbox, задача #{}", task.id));
    let mut fields = serde_json::json!({
        "TITLE": format!("{} — {client} {}", task.title, marker(task.id)),
        "DESCRIPTION": lines.join("\n"),
        "RESPONSIBLE_ID": mapped.unwrap_or(responsible.default),
    });
    if let Some(deadline) = deadline(&task.due, zone) {
        fields["DEADLINE"] = serde_json::Value::String(deadline);
    }
    if escalated {
        fields["PRIORITY"] = serde_json::Value::from(PRIORITY_HIGH);
    }
    fields
}

/// A Bitrix24 sink as one delivery uses it.
#[derive(Debug, Clone, Copy)]
pub struct Portal<'a> {
    pub client: &'a reqwest::Client,
    /// The incoming-webhook URL (holds the token).
    pub base: &'a SecretString,
    pub responsible: &'a Responsible,
    /// The firm's zone, for deadlines.
    pub zone: chrono_tz::Tz,
}

/// Delivers one event (`change`: what a person changed, for `done` and `reassigned`; `known`: the Bitrix24 task id
/// stored so far); returns the Bitrix24 task id (stored by the caller with the event's marking).
pub async fn deliver(
    portal: Portal<'_>,
    event: &PendingSinkEvent,
    task: &SinkTask,
    change: Option<&TaskChange>,
    known: Option<String>,
) -> Result<String, SinkError> {
    let Portal {
        client,
        base,
        responsible,
        zone,
    } = portal;
    let escalated = event.event == EVENT_ESCALATED;
    let existing = match known {
        Some(id) => Some(id),
        None => find(client, base, task.id).await?,
    };
    let Some(id) = existing else {
        // No task yet (the `created` event, or a sink configured after the task was created): add it, with the
        // state of now, which already includes any linked mail, escalation and reassignment.
        let result = call(
            client,
            base,
            "tasks.task.add",
            &serde_json::json!({"fields": fields(task, responsible, zone, escalated)}),
        )
        .await?;
        let id = result
            .get("task")
            .and_then(|t| t.get("id"))
            .and_then(id_of)
            .ok_or_else(|| {
                SinkError::Transient("tasks.task.add: the answer holds no task id".to_owned())
            })?;
        if event.event == EVENT_DONE {
            // Should this fail, the retry finds the task just added by its marker and completes it.
            complete(client, base, &id).await?;
        }
        return Ok(id);
    };
    if event.event == EVENT_CREATED {
        return Ok(id);
    }
    if event.event == EVENT_DONE {
        complete(client, base, &id).await?;
        return Ok(id);
    }
    let update = if event.event == EVENT_REASSIGNED {
        // The assignee of this change (a later one has its own event), mapped as for `created`.
        let mut task = task.clone();
        if let Some(change) = change {
            task.assignee = change.assignee.clone();
        }
        fields(&task, responsible, zone, escalated)
    } else {
        let mut update = fields(task, responsible, zone, escalated);
        if let Some(map) = update.as_object_mut() {
            // The people working the task in Bitrix24 may have reassigned it; only taxinbox's own facts are
            // rewritten.
            map.remove("RESPONSIBLE_ID");
        }
        update
    };
    call(
        client,
        base,
        "tasks.task.update",
        &serde_json::json!({"taskId": id, "fields": update}),
    )
    .await?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deadline_is_the_end_of_the_due_day_in_the_firms_zone() {
        assert_eq!(
            deadline("2026-03-12", chrono_tz::Europe::Moscow).as_deref(),
            Some("2026-03-12T23:59:59+03:00")
        );
        assert_eq!(deadline("12.03.2026", chrono_tz::Europe::Moscow), None);
    }

    #[test]
    fn markers_of_different_tasks_never_contain_each_other() {
        assert!(!marker(123).contains(&marker(12)));
    }
}
