//! The tax-calendar obligations of every client joined with the directory and the store: the lines `taxinbox
//! calendar` prints (text, the JSONL contract of docs/formats.md, or an ICS feed), and [`generate`], which creates the
//! tasks whose lead time has begun — once per client + event + period, however often it runs (the daemon calls
//! [`generate_today`] on every pass).
//!
//! The definitions and the dates are computed by [`crate::calendar::tax`]; this module only joins them with the
//! directory (who is assigned) and the store (which tasks exist).

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::Context as _;
use chrono::{DateTime, Datelike as _, NaiveDate, Utc};

use crate::calendar::tax::{ClientFacts, Obligation, TaxCalendar};
use crate::calendar::ProductionCalendar;
use crate::directory::{Client, Directory, Role};
use crate::store::{self, LogEntry, NewCalendarTask, NewNotification, Store};

/// One line of `calendar --format jsonl` (docs/formats.md): the contract type, not a database row.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ObligationLine {
    pub client_inn: String,
    pub event: String,
    pub title: String,
    pub period: String,
    pub due: String,
    pub assignee: Option<String>,
}

/// The calendar data under the rules folder: production calendars and obligation definitions.
#[derive(Debug, Clone)]
pub struct CalendarData {
    pub production: ProductionCalendar,
    pub tax: TaxCalendar,
}

impl CalendarData {
    /// Loads `<rules>/calendar/production/*.toml` and `<rules>/calendar/*.toml`.
    pub fn load(rules_dir: &Path) -> anyhow::Result<CalendarData> {
        let dir = rules_dir.join("calendar");
        let production = ProductionCalendar::load_dir(&dir.join("production"))
            .context("load the production calendars")?;
        let tax = TaxCalendar::load_dir(&dir).context("load the tax-calendar definitions")?;
        Ok(CalendarData { production, tax })
    }
}

/// The obligations falling due in `year` for the selected clients, with the person assigned on the day each task
/// is due to be created; sorted by due date, client, event.
pub fn obligations(
    directory: &Directory,
    data: &CalendarData,
    year: i32,
    client: Option<&str>,
    assignee: Option<&str>,
) -> anyhow::Result<Vec<ObligationLine>> {
    let mut lines = Vec::new();
    // Each event's dates computed once per production calendar, not once per client.
    let plan = data.tax.year_plan(year, &data.production);
    for c in directory
        .clients()
        .filter(|c| client.is_none_or(|inn| c.inn.as_str() == inn))
    {
        let facts = ClientFacts::of(c);
        let list = plan
            .obligations(&facts, c.region.as_deref())
            .with_context(|| format!("tax calendar of client {}", c.inn.as_str()))?;
        let patents: Vec<Obligation> = patent_payments(directory, data, c)?
            .into_iter()
            .filter(|o| o.due.year() == year)
            .collect();
        for o in list.into_iter().chain(patents.iter()) {
            let person = directory.assignee(Some(c), Role::Accountant, o.creation_date());
            if assignee.is_some_and(|a| person.as_deref() != Some(a)) {
                continue;
            }
            lines.push(line(c, o, person));
        }
    }
    lines.sort_by(|a, b| {
        (&a.due, &a.client_inn, &a.event, &a.period).cmp(&(
            &b.due,
            &b.client_inn,
            &b.event,
            &b.period,
        ))
    });
    Ok(lines)
}

/// The payments of every patent of client `c`, on the client's regional calendar.
fn patent_payments(
    directory: &Directory,
    data: &CalendarData,
    c: &Client,
) -> anyhow::Result<Vec<Obligation>> {
    let mut out = Vec::new();
    for p in directory.patents_of(c.inn.as_str()) {
        out.extend(
            data.tax
                .patent_payments(p, c.region.as_deref(), &data.production)
                .with_context(|| format!("patent {} of client {}", p.number, c.inn.as_str()))?,
        );
    }
    Ok(out)
}

fn line(c: &Client, o: &Obligation, assignee: Option<String>) -> ObligationLine {
    ObligationLine {
        client_inn: c.inn.as_str().to_owned(),
        event: o.event.clone(),
        title: o.title.clone(),
        period: o.period.clone(),
        due: o.due.to_string(),
        assignee,
    }
}

/// What one `calendar generate` did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct GenerateOutcome {
    /// Tasks created now.
    pub created: usize,
    /// Obligations in their lead time whose task existed already.
    pub existing: usize,
}

/// Creates, in one transaction, the task of every obligation whose lead time has begun on `today` and that has no
/// task yet, each with a `task_assigned` notification for its assignee, and one `calendar_generated` log entry
/// when anything was created. Existing tasks are never touched: a client whose regime changed keeps the tasks
/// already created, and only obligations computed from now on follow the new regime.
pub async fn generate(
    store: &Store,
    directory: &Directory,
    data: &CalendarData,
    today: NaiveDate,
    now: DateTime<Utc>,
) -> anyhow::Result<GenerateOutcome> {
    let mut candidates = Vec::new();
    for c in directory.clients() {
        let facts = ClientFacts::of(c);
        let list = data
            .tax
            .due_for_creation(&facts, c.region.as_deref(), today, &data.production)
            .with_context(|| format!("tax calendar of client {}", c.inn.as_str()))?;
        candidates.extend(list.into_iter().map(|o| (c, o)));
        let patents = patent_payments(directory, data, c)?
            .into_iter()
            .filter(|o| o.due >= today && o.creation_date() <= today);
        candidates.extend(patents.map(|o| (c, o)));
    }
    let now_s = store::timestamp(now);
    let mut tx = store.begin().await?;
    // Known keys are read once so that a pass with nothing new (the daemon's usual case) writes nothing; the
    // unique index still decides when two instances race.
    let known: BTreeSet<(String, String, String)> =
        store::calendar_task_keys(&mut tx, &today.to_string())
            .await?
            .into_iter()
            .collect();
    let mut outcome = GenerateOutcome::default();
    let mut created = Vec::new();
    for (c, o) in candidates {
        let key = (c.inn.as_str().to_owned(), o.event.clone(), o.period.clone());
        if known.contains(&key) {
            outcome.existing += 1;
            continue;
        }
        let person = directory.assignee(Some(c), Role::Accountant, today);
        let provenance = serde_json::json!({
            "source": "tax_calendar", "event": o.event, "period": o.period,
            "nominal": o.nominal.to_string(), "law": o.law, "lead_days": o.lead_days,
        });
        let task = NewCalendarTask {
            client_inn: key.0.clone(),
            event: o.event.clone(),
            period: o.period.clone(),
            title: o.title.clone(),
            role: Role::Accountant.as_str().to_owned(),
            assignee: person.clone(),
            due: o.due.to_string(),
            provenance: provenance.to_string(),
            created_at: now_s.clone(),
        };
        let Some(id) = store::insert_calendar_task(&mut tx, &task).await? else {
            outcome.existing += 1;
            continue;
        };
        if let Some(person) = &person {
            store::insert_notification(&mut tx, &notification(id, person, c, &o, &now_s)).await?;
        }
        outcome.created += 1;
        created.push(serde_json::json!({
            "task": id, "client_inn": key.0, "event": o.event, "period": o.period,
            "due": o.due.to_string(), "assignee": person,
        }));
    }
    if !created.is_empty() {
        let payload = serde_json::json!({ "date": today.to_string(), "created": created });
        store::append_log(
            &mut tx,
            &LogEntry {
                at: &now_s,
                event: "calendar_generated",
                message: None,
                sha256: None,
                payload: &payload,
            },
        )
        .await?;
    }
    tx.commit().await.context("commit the tax-calendar tasks")?;
    Ok(outcome)
}

fn notification(
    task: i64,
    person: &str,
    c: &Client,
    o: &Obligation,
    now_s: &str,
) -> NewNotification {
    let due = o.due.format("%d.%m.%Y");
    NewNotification {
        kind: "task_assigned".into(),
        task: Some(task),
        message: None,
        recipient: person.to_owned(),
        subject: format!("Новая задача до {due}: {}", o.title),
        body: format!(
            "Вам назначена задача по налоговому календарю.\n\nКлиент: {} (ИНН {})\nЗадача: {}\nПериод: {}\nСрок: {due}\nОснование: {}\n",
            c.name,
            c.inn.as_str(),
            o.title,
            o.period,
            o.law,
        ),
        not_before: now_s.to_owned(),
        created_at: now_s.to_owned(),
    }
}

/// The daemon's daily step: loads the directory and the calendars and generates for today in the configured zone.
pub async fn generate_today(
    store: &Store,
    rules_dir: &Path,
    timezone: chrono_tz::Tz,
) -> anyhow::Result<GenerateOutcome> {
    let directory = {
        let mut conn = store.acquire().await?;
        store::load_directory(&mut conn).await?
    };
    let data = CalendarData::load(rules_dir)?;
    let now = Utc::now();
    let today = now.with_timezone(&timezone).date_naive();
    let outcome = generate(store, &directory, &data, today, now).await?;
    if outcome.created > 0 {
        tracing::info!(created = outcome.created, "tax-calendar tasks generated");
    }
    Ok(outcome)
}

/// A task that goes into the ICS feed next to the obligations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedTask {
    /// Stable UID: the obligation's for a calendar task (so the two merge), the task id's for a mail task.
    pub uid: String,
    pub title: String,
    pub due: String,
    pub client_inn: Option<String>,
}

/// `person`'s open tasks for the ICS feed: mail tasks and tax-calendar tasks (`calendar --format ics` and the web
/// view's `/ics/<token>.ics`).
pub async fn open_tasks(
    conn: &mut sqlx::AnyConnection,
    person: &str,
) -> anyhow::Result<Vec<FeedTask>> {
    let filter = store::TaskFilter {
        assignee: Some(person.to_owned()),
        open_only: true,
        ..Default::default()
    };
    let mut feed: Vec<FeedTask> = store::list_tasks(conn, &filter)
        .await?
        .into_iter()
        .filter(|t| t.message.is_some())
        .map(|t| FeedTask {
            uid: format!("task-{}@taxinbox", t.id),
            title: t.title,
            due: t.due,
            client_inn: t.client_inn,
        })
        .collect();
    for t in store::calendar_tasks(conn, Some(person)).await? {
        if t.status != store::TaskStatus::Open {
            continue;
        }
        // A tax-calendar task is stored with its client, event and period (`store::insert_calendar_task`).
        let (Some(client_inn), Some(event), Some(period)) = (t.client_inn, t.event, t.period)
        else {
            anyhow::bail!(
                "tax-calendar task {} lacks its client, event or period",
                t.id
            );
        };
        feed.push(FeedTask {
            uid: obligation_uid(&client_inn, &event, &period),
            title: t.title,
            due: t.due,
            client_inn: Some(client_inn),
        });
    }
    Ok(feed)
}

/// The UID of an obligation: the same client + event + period always gives the same UID, so a re-imported feed
/// updates events instead of duplicating them.
pub fn obligation_uid(client_inn: &str, event: &str, period: &str) -> String {
    let period: String = period
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("{client_inn}-{event}-{period}@taxinbox")
}

/// An RFC 5545 calendar of all-day events: obligations, then tasks whose UID is not already there.
pub fn ics(lines: &[ObligationLine], tasks: &[FeedTask], now: DateTime<Utc>) -> String {
    let stamp = now.format("%Y%m%dT%H%M%SZ").to_string();
    let mut out = String::new();
    for l in [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//taxinbox//tax calendar//RU",
        "CALSCALE:GREGORIAN",
    ] {
        push_line(&mut out, l);
    }
    let mut seen = BTreeSet::new();
    let obligations = lines.iter().map(|l| {
        let description = format!(
            "Клиент: {}\nПериод: {}\nСобытие: {}",
            l.client_inn, l.period, l.event
        );
        (
            obligation_uid(&l.client_inn, &l.event, &l.period),
            l.title.as_str(),
            l.due.as_str(),
            description,
        )
    });
    let others = tasks.iter().map(|t| {
        let description = format!("Клиент: {}", t.client_inn.as_deref().unwrap_or("-"));
        (t.uid.clone(), t.title.as_str(), t.due.as_str(), description)
    });
    for (uid, title, due, description) in obligations.chain(others) {
        let Ok(day) = NaiveDate::parse_from_str(due, "%Y-%m-%d") else {
            continue;
        };
        if !seen.insert(uid.clone()) {
            continue;
        }
        push_event_head(&mut out, &uid, &stamp, day, title, &description);
        push_line(&mut out, "TRANSP:TRANSPARENT");
        push_line(&mut out, "END:VEVENT");
    }
    push_line(&mut out, "END:VCALENDAR");
    out
}

/// Opens an all-day event on `day` (RFC 5545: `DTEND` the day after) with its UID, stamp, summary and description;
/// the caller adds what else it has and `END:VEVENT`. The web view's task feed writes its events with it too.
pub(crate) fn push_event_head(
    out: &mut String,
    uid: &str,
    stamp: &str,
    day: NaiveDate,
    summary: &str,
    description: &str,
) {
    let next = day.succ_opt().unwrap_or(day);
    push_line(out, "BEGIN:VEVENT");
    push_line(out, &format!("UID:{}", escape(uid)));
    push_line(out, &format!("DTSTAMP:{stamp}"));
    push_line(out, &format!("DTSTART;VALUE=DATE:{}", day.format("%Y%m%d")));
    push_line(out, &format!("DTEND;VALUE=DATE:{}", next.format("%Y%m%d")));
    push_line(out, &format!("SUMMARY:{}", escape(summary)));
    push_line(out, &format!("DESCRIPTION:{}", escape(description)));
}

/// RFC 5545 §3.3.11 TEXT escaping (the task feed of the web view writes its events with it too).
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

/// The longest content line of RFC 5545 §3.1, in octets.
const MAX_LINE_OCTETS: usize = 75;

/// Writes one content line, folded when longer than 75 octets (RFC 5545 §3.1): CRLF plus one space, never inside a
/// UTF-8 character; the continuation's leading space counts towards its 75. The web view's task feed uses it too.
pub(crate) fn push_line(out: &mut String, line: &str) {
    let mut used = 0;
    for c in line.chars() {
        let len = c.len_utf8();
        if used + len > MAX_LINE_OCTETS {
            out.push_str("\r\n ");
            used = 1;
        }
        out.push(c);
        used += len;
    }
    out.push_str("\r\n");
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn long_ics_lines_are_folded_at_75_octets_without_splitting_characters() {
        let mut out = String::new();
        let summary = format!("SUMMARY:{}", "Уведомление, по НДФЛ; ".repeat(10));
        push_line(&mut out, &summary);
        for physical in out.split("\r\n").filter(|l| !l.is_empty()) {
            assert!(
                physical.len() <= 75,
                "{} octets: {physical}",
                physical.len()
            );
        }
        let unfolded = out.replace("\r\n ", "");
        assert_eq!(unfolded, format!("{summary}\r\n"));
    }

    #[test]
    fn ics_text_escapes_commas_semicolons_backslashes_and_newlines() {
        assert_eq!(escape("a,b;c\\d\ne"), "a\\,b\\;c\\\\d\\ne");
    }

    #[test]
    fn an_obligation_has_the_same_uid_in_every_feed() {
        let l = ObligationLine {
            client_inn: "7728997898".into(),
            event: "rsv_q1".into(),
            title: "Расчет по страховым взносам (РСВ) за I квартал 2026".into(),
            period: "Q1 2026".into(),
            due: "2026-04-27".into(),
            assignee: None,
        };
        let t1 = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .to_utc();
        let a = ics(std::slice::from_ref(&l), &[], t1);
        let b = ics(&[l], &[], t1 + chrono::Duration::days(3));
        let uid = |s: &str| {
            s.lines()
                .find(|x| x.starts_with("UID:"))
                .unwrap()
                .to_owned()
        };
        assert_eq!(uid(&a), uid(&b));
        assert!(a.contains("DTSTART;VALUE=DATE:20260427\r\n"));
        assert!(a.starts_with("BEGIN:VCALENDAR\r\n") && a.ends_with("END:VCALENDAR\r\n"));
    }
}
