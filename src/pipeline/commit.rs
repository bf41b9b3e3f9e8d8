//! The writing half of the pipeline: one evaluated mail within its batch's transaction — the duplicate check, the
//! case it joins (the same demand; a forward, reply or quotation of a case's mail), the message row, a new case,
//! tasks, notifications and task events, and the log entry with the decision trace. The rows are kept with the
//! batch ([`store::BatchRows`]: ids assigned at once, written together at its flush), and what a later mail of the
//! batch reads of them is answered from there. The report is read off what was stored.

use super::number_key;
use super::{
    trace, DemandReport, Evaluation, Pipeline, PlannedTask, Report, Resolved, Status, TaskReport,
};
use crate::rules::DemandFacts;
use crate::store::{self, BatchRows, MessageRecord, NewNotification, NewTask};
use chrono::{DateTime, NaiveDate, Utc};
use sqlx::AnyConnection;

/// How a mail found the case it joins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JoinedBy {
    /// The same client, demand number and date (FORMAT.md 6).
    Demand,
    /// `In-Reply-To`/`References` name a mail of the case.
    Thread,
    /// It forwards a mail of the case as an attachment (the original's Message-ID).
    Forward,
    /// A client's mail quoting the demand's number and date.
    Quotation,
}

/// Categories whose mail can join a demand case by thread or quotation: not mail that needs nobody (an auto-reply
/// in a demand's thread is no second copy of it).
fn joins_by_thread_or_quotation(category: &str) -> bool {
    !matches!(category, "ignore" | "notice")
}

impl Pipeline {
    /// Writes one evaluated mail through the open transaction and returns its report. Its raw mail is in the store
    /// already ([`BatchRows::store_raw`]); its message, case, tasks, source reference, notifications and log entry
    /// wait in `rows` for the batch's flush. `archived`: the mail is history (archive import): logged and joined as usual, its tasks stored
    /// done and marked archived, no notification and no task event queued, and it proves no step of a case done
    /// (that would push a `done` event).
    #[allow(clippy::too_many_arguments)]
    pub async fn commit(
        &self,
        conn: &mut AnyConnection,
        rows: &mut BatchRows,
        source: &str,
        mailbox: &str,
        eval: &Evaluation,
        archived: bool,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Report> {
        let now_s = store::timestamp(now);
        if let Some(seen) = rows.seen(conn, &eval.sha256).await? {
            return Ok(Report {
                id: Some(seen.id),
                ..Report::new(source, seen.message_id, Status::Duplicate, &eval.ruleset)
            });
        }
        let target = Target {
            existing: None,
            source,
            mailbox,
            log_event: None,
            archived,
        };
        let report = self
            .write_outcome(conn, rows, &target, eval, &now_s)
            .await?;
        if let Some(id) = report.id {
            rows.remember(store::StoredMessage {
                id,
                sha256: eval.sha256.clone(),
                message_id: report.message_id.clone(),
                status: match report.status {
                    Status::Quarantined => store::MessageStatus::Quarantined,
                    Status::Linked => store::MessageStatus::Linked,
                    _ => store::MessageStatus::Processed,
                },
                source: source.to_owned(),
            });
            rows.add_source_ref(source, id);
            // Task events for the firm's tracker (webhook, Bitrix24), in this same transaction; history pushes none.
            if !archived && rows.sinks_active(conn).await? {
                rows.pending.queue_task_events(id, &now_s);
            }
        }
        Ok(report)
    }

    /// Runs a stored message through the current rules again (`taxinbox reprocess`), in the open transaction.
    pub async fn reprocess(
        &self,
        conn: &mut AnyConnection,
        id: i64,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Report> {
        let seen = store::message_by_id(conn, id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("no message with id {id}"))?;
        let raw = store::raw_mail(conn, &seen.sha256).await?.ok_or_else(|| {
            anyhow::anyhow!("message {id}: its raw mail was purged; it cannot be processed again")
        })?;
        let existing = store::tasks_of_message(conn, id).await?;
        if !existing.is_empty() && seen.status != store::MessageStatus::Quarantined {
            anyhow::bail!("message {id} already has tasks; only quarantined mail or mail without tasks is reprocessed");
        }
        let target = Target {
            existing: Some(id),
            source: &seen.source,
            mailbox: "reprocess",
            // A second decision is told from the first in the log (the payload says how it ended).
            log_event: Some("mail_reprocessed"),
            // Reprocessing is a person's request about this mail now: live.
            archived: false,
        };
        let eval = self.evaluate(&raw, target.mailbox, now);
        let now_s = store::timestamp(now);
        let mut rows = BatchRows::default();
        let report = self
            .write_outcome(conn, &mut rows, &target, &eval, &now_s)
            .await?;
        rows.flush(conn).await?;
        store::queue_task_events_of_message(conn, id, &now_s).await?;
        Ok(report)
    }

    /// Stores what `eval` decided for `target` — quarantined, linked to a known case, or processed with its case
    /// and tasks — logs it, and reports it as stored.
    async fn write_outcome(
        &self,
        conn: &mut AnyConnection,
        rows: &mut BatchRows,
        target: &Target<'_>,
        eval: &Evaluation,
        now_s: &str,
    ) -> anyhow::Result<Report> {
        let mut record = message_record(eval, target, now_s);
        let resolved = match &eval.outcome {
            Err(error) => {
                record.status = store::MessageStatus::Quarantined;
                record.error = Some(error.clone());
                let stored = Stored::new(save(conn, rows, target.existing, &record).await?, record);
                return self
                    .finish(conn, rows, target, eval, stored, "mail_quarantined", now_s)
                    .await;
            }
            Ok(r) => r,
        };
        decided(&mut record, resolved);
        let case_key = case_key(resolved);
        if let Some((case, by)) = self
            .joined_case(conn, rows, target.existing, resolved, case_key.as_ref())
            .await?
        {
            joined(&mut record, &case, by);
            // A second copy may carry the demand's text the first lacked (an operator's alert, then the client's
            // forward of the demand itself): its list fills a checklist still empty.
            rows.pending
                .set_case_checklist(conn, case.id, &resolved.checklist)
                .await?;
            let stored = Stored::new(save(conn, rows, target.existing, &record).await?, record)
                .named_demand(resolved.demand.is_some() || by != JoinedBy::Demand);
            return self
                .finish(conn, rows, target, eval, stored, "mail_linked", now_s)
                .await;
        }
        record.status = store::MessageStatus::Processed;
        // A decision that lifts a freeze, a demand withdrawn: it belongs to the case it names (its number and date
        // are the case's), which it is linked to; it creates no task and is no second copy of the demand.
        let mut closes = None;
        if resolved.closes {
            if let Some(case) = self.closed_case(conn, rows, resolved).await? {
                record.case_id = Some(case.id);
                record.reason = Some(format!(
                    "{}; относится к делу: требование № {} от {}",
                    record.reason.clone().unwrap_or_default(),
                    case.number,
                    case.demand_date
                ));
                closes = case.first_message_id.clone();
            }
        }
        // A receipt or acceptance that names a known demand by client, number and date proves its steps done; one
        // that only answers a case's mail (its thread) belongs to that case but proves nothing.
        let mut proved = None;
        if !resolved.proves.is_empty() {
            // History proves nothing: closing a step would push a `done` event (its own case's tasks are done already).
            let case = if target.archived {
                None
            } else {
                self.closed_case(conn, rows, resolved).await?
            };
            if let Some(case) = case {
                record.case_id = Some(case.id);
                record.reason = Some(format!(
                    "{}; подтверждает по требованию № {} от {}: {}",
                    record.reason.clone().unwrap_or_default(),
                    case.number,
                    case.demand_date,
                    resolved.proves.join(", ")
                ));
                proved = Some(case.id);
            } else if let Some(case) = rows
                .pending
                .find_case_by_thread(conn, &resolved.thread)
                .await?
            {
                record.case_id = Some(case.id);
            }
        }
        let id = save(conn, rows, target.existing, &record).await?;
        if let Some(case) = proved {
            close_proved_steps(conn, rows, case, &resolved.proves, id, &eval.sha256, now_s).await?;
        }
        let case_id = match &case_key {
            Some(key) => {
                let kind = resolved.decision.kind.as_deref();
                let case = rows
                    .pending
                    .insert_case(
                        conn,
                        key.demand_key(),
                        &key.number,
                        kind,
                        id,
                        record.message_id.as_deref(),
                        now_s,
                    )
                    .await?;
                rows.pending.set_message_case(conn, id, case).await?;
                rows.pending
                    .set_case_checklist(conn, case, &resolved.checklist)
                    .await?;
                Some(case)
            }
            None => None,
        };
        let tasks = create_tasks(
            conn,
            rows,
            id,
            case_id,
            resolved,
            eval,
            target.archived,
            now_s,
        )
        .await?;
        let mut stored = Stored::new(id, record).named_demand(resolved.demand.is_some());
        stored.tasks = tasks;
        stored.closes = closes;
        self.finish(conn, rows, target, eval, stored, "mail_processed", now_s)
            .await
    }

    /// The report of what was stored, and its log entry (`event`, unless the target names its own).
    #[allow(clippy::too_many_arguments)]
    async fn finish(
        &self,
        conn: &mut AnyConnection,
        rows: &mut BatchRows,
        target: &Target<'_>,
        eval: &Evaluation,
        stored: Stored,
        event: &str,
        now_s: &str,
    ) -> anyhow::Result<Report> {
        let report = stored.report(target.source, &eval.ruleset);
        self.log(
            conn,
            rows,
            target.log_event.unwrap_or(event),
            stored.id,
            eval,
            &report,
            now_s,
        )
        .await?;
        Ok(report)
    }

    /// The case a closing notice names: a demand of its client whose number and date it writes.
    async fn closed_case(
        &self,
        conn: &mut AnyConnection,
        rows: &mut BatchRows,
        resolved: &Resolved,
    ) -> anyhow::Result<Option<store::CaseRef>> {
        let Some(inn) = &resolved.client_inn else {
            return Ok(None);
        };
        for r in &resolved.demand_refs {
            if let Some(case) = rows
                .pending
                .find_case(conn, inn, &number_key(&r.number), &r.date.to_string())
                .await?
            {
                return Ok(Some(case));
            }
        }
        Ok(None)
    }

    /// The known case this mail joins, and how it was found: the same demand (client + number + date); else, for
    /// mail that is not itself a new demand, the case of a mail it answers (`In-Reply-To`/`References`); else a
    /// demand of the same client whose number and date the mail quotes (a client's reply, or a client's mail about
    /// the demand). A new demand that merely cites an earlier one (a freeze decision naming an unpaid demand) opens
    /// its own case: only replies are joined by what they quote.
    async fn joined_case(
        &self,
        conn: &mut AnyConnection,
        rows: &mut BatchRows,
        existing: Option<i64>,
        resolved: &Resolved,
        case_key: Option<&CaseKey>,
    ) -> anyhow::Result<Option<(store::CaseRef, JoinedBy)>> {
        let other = |case: &store::CaseRef| existing != Some(case.first_message);
        if let Some(k) = case_key {
            if let Some(case) = rows
                .pending
                .find_case(conn, &k.inn, &k.key, &k.date)
                .await?
            {
                // Reprocessing the case's first mail finds its own case: nothing to join.
                return Ok(other(&case).then_some((case, JoinedBy::Demand)));
            }
        }
        let category = resolved.decision.category.as_str();
        if !joins_by_thread_or_quotation(category) {
            return Ok(None);
        }
        // A forward "as attachment" carries the original's Message-ID: the very mail the case knows.
        if let Some(case) = rows
            .pending
            .find_case_by_thread(conn, &resolved.forwarded)
            .await?
        {
            if other(&case) {
                return Ok(Some((case, JoinedBy::Forward)));
            }
        }
        let new_demand = category == "tax_demand" && !resolved.is_reply;
        if case_key.is_none() || !new_demand {
            if let Some(case) = rows
                .pending
                .find_case_by_thread(conn, &resolved.thread)
                .await?
            {
                if other(&case) {
                    return Ok(Some((case, JoinedBy::Thread)));
                }
            }
        }
        if new_demand {
            return Ok(None);
        }
        let Some(inn) = &resolved.client_inn else {
            return Ok(None);
        };
        for r in &resolved.demand_refs {
            let date = r.date.to_string();
            if let Some(case) = rows
                .pending
                .find_case(conn, inn, &number_key(&r.number), &date)
                .await?
            {
                if other(&case) {
                    return Ok(Some((case, JoinedBy::Quotation)));
                }
            }
        }
        Ok(None)
    }

    #[allow(clippy::too_many_arguments)]
    async fn log(
        &self,
        conn: &mut AnyConnection,
        rows: &mut BatchRows,
        event: &str,
        id: i64,
        eval: &Evaluation,
        report: &Report,
        now_s: &str,
    ) -> anyhow::Result<()> {
        let reason = match &eval.outcome {
            Ok(r) => Some(r.decision.reason.clone()),
            Err(_) => None,
        };
        let provenance: Vec<_> = match &eval.outcome {
            Ok(r) => r
                .tasks
                .iter()
                .map(|t| serde_json::json!({"step": t.step, "provenance": t.provenance}))
                .collect(),
            Err(_) => vec![],
        };
        let mut payload = serde_json::json!({
            "report": report,
            "reason": reason,
            "received_date": eval.received,
            "deadlines": provenance,
            "trace": trace(eval),
        });
        if report.archived {
            payload["archived"] = serde_json::Value::Bool(true);
        }
        rows.log
            .append(
                conn,
                &store::LogEntry {
                    at: now_s,
                    event,
                    message: Some(id),
                    sha256: Some(&eval.sha256),
                    payload: &payload,
                },
            )
            .await?;
        Ok(())
    }
}

/// The planned tasks of a mail stored (in one statement), each with its new-task notification when it has a
/// person; archived ones (history) are stored done and marked archived, and nobody is notified.
#[allow(clippy::too_many_arguments)]
async fn create_tasks(
    conn: &mut AnyConnection,
    rows: &mut BatchRows,
    message: i64,
    case_id: Option<i64>,
    resolved: &Resolved,
    eval: &Evaluation,
    archived: bool,
    now_s: &str,
) -> anyhow::Result<Vec<TaskReport>> {
    let new: Vec<NewTask> = resolved
        .tasks
        .iter()
        .map(|t| NewTask {
            message,
            case_id,
            client_inn: resolved.client_inn.clone(),
            step: t.step.clone(),
            title: t.title.clone(),
            role: t.role.as_str().to_owned(),
            assignee: t.assignee.clone(),
            due: t.due.to_string(),
            priority: t.priority.clone(),
            provenance: t.provenance.to_string(),
            created_at: now_s.to_owned(),
            archived,
        })
        .collect();
    let ids = rows.pending.insert_tasks(conn, &new).await?;
    let mut reports = Vec::with_capacity(ids.len());
    for (t, task_id) in resolved.tasks.iter().zip(ids) {
        if let Some(person) = t.assignee.as_ref().filter(|_| !archived) {
            rows.queue_notification(new_task_notification(
                task_id, message, person, t, eval, now_s,
            ));
        }
        reports.push(TaskReport {
            step: t.step.clone(),
            title: t.title.clone(),
            role: t.role.as_str().to_owned(),
            assignee: t.assignee.clone(),
            due: t.due,
        });
    }
    Ok(reports)
}

/// Where an outcome is written: a new message from `source`, or the stored message `existing` decided again.
struct Target<'a> {
    existing: Option<i64>,
    source: &'a str,
    mailbox: &'a str,
    /// The log event instead of the outcome's own (`mail_reprocessed`).
    log_event: Option<&'static str>,
    /// History (archive import): see [`Pipeline::commit`].
    archived: bool,
}

/// A message as stored, with what its report adds: the tasks created and the case a closing notice names.
struct Stored {
    id: i64,
    record: MessageRecord,
    tasks: Vec<TaskReport>,
    closes: Option<String>,
    /// The decision named a demand (even one without number or date): the report shows its `demand` object.
    named_demand: bool,
}

impl Stored {
    fn new(id: i64, record: MessageRecord) -> Stored {
        Stored {
            id,
            record,
            tasks: Vec::new(),
            closes: None,
            named_demand: false,
        }
    }

    fn named_demand(mut self, named: bool) -> Stored {
        self.named_demand = named;
        self
    }

    /// The `ingest --format jsonl` report, read off the stored record.
    fn report(&self, source: &str, ruleset: &str) -> Report {
        let r = &self.record;
        let date = |d: &Option<String>| {
            d.as_deref()
                .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        };
        let status = match r.status {
            store::MessageStatus::Processed => Status::Processed,
            store::MessageStatus::Linked => Status::Linked,
            store::MessageStatus::Quarantined => Status::Quarantined,
        };
        Report {
            source: source.to_owned(),
            message_id: r.message_id.clone(),
            status,
            category: r.category.clone(),
            kind: r.kind.clone(),
            client_inn: r.client_inn.clone(),
            demand: self.named_demand.then(|| DemandReport {
                number: r.demand_number.clone(),
                date: date(&r.demand_date),
                sent: date(&r.demand_sent),
            }),
            joins: r.joins.clone(),
            rule: r.rule.clone(),
            ruleset: ruleset.to_owned(),
            tasks: self.tasks.clone(),
            error: r.error.clone(),
            reason: r.reason.clone(),
            closes: self.closes.clone(),
            id: Some(self.id),
            archived: r.archived,
        }
    }
}

/// The message row of an evaluated mail before its outcome is known.
fn message_record(eval: &Evaluation, target: &Target<'_>, now_s: &str) -> MessageRecord {
    MessageRecord {
        sha256: eval.sha256.clone(),
        message_id: eval.message_id.clone(),
        source: target.source.to_owned(),
        mailbox: target.mailbox.to_owned(),
        fetched_at: now_s.to_owned(),
        received_date: eval.received.to_string(),
        from_addr: eval.from.clone(),
        subject: eval.subject.clone(),
        ruleset: Some(eval.ruleset.clone()),
        facts: eval.facts.to_string(),
        processed_at: now_s.to_owned(),
        archived: target.archived,
        ..MessageRecord::default()
    }
}

/// What the rules decided, into the record: category, kind, client, rule, the reason (with the safety net's) and
/// the demand's number and dates (sent defaults to the document's date).
fn decided(record: &mut MessageRecord, resolved: &Resolved) {
    let d = &resolved.decision;
    record.category = Some(d.category.clone());
    record.kind = d.kind.clone();
    record.client_inn = resolved.client_inn.clone();
    record.rule = resolved.rule.clone();
    record.reason = match (&resolved.safety_net, d.reason.is_empty()) {
        (Some(net), true) => Some(net.clone()),
        (Some(net), false) => Some(format!("{}; {net}", d.reason)),
        (None, false) => Some(d.reason.clone()),
        (None, true) => None,
    };
    if let Some(dm) = &resolved.demand {
        record.demand_number = dm.number.clone();
        record.demand_date = dm.date.map(|x| x.to_string());
        record.demand_sent = dm.sent.or(dm.date).map(|x| x.to_string());
    }
}

/// A known case joined, into the record: `linked`, the case and its first mail, the case's kind (a second copy may
/// carry less: an XML without the article that tells a 93.1 demand from a 93 one); a reply, forward or quotation is
/// reported as the case's demand again.
fn joined(record: &mut MessageRecord, case: &store::CaseRef, by: JoinedBy) {
    record.status = store::MessageStatus::Linked;
    record.case_id = Some(case.id);
    record.joins = case.first_message_id.clone();
    if case.kind.is_some() {
        record.kind = case.kind.clone();
    }
    if by != JoinedBy::Demand {
        let note = match by {
            JoinedBy::Thread => "в ответ на письмо по требованию",
            JoinedBy::Forward => "пересылает письмо по требованию",
            _ => "цитирует известное требование",
        };
        record.reason = Some(format!(
            "{}; присоединено к требованию № {} от {} ({note})",
            record.reason.clone().unwrap_or_default(),
            case.number,
            case.demand_date
        ));
        record.category = Some("tax_demand".into());
        record.kind = case.kind.clone();
        record.client_inn = Some(case.client_inn.clone());
        record.demand_number = Some(case.number.clone());
        record.demand_date = Some(case.demand_date.clone());
        record.demand_sent = None;
    }
}

/// The key of the case a demand opens or joins: client + normalised number + date (FORMAT.md 6; only demands of a
/// known client).
struct CaseKey {
    inn: String,
    key: String,
    number: String,
    date: String,
}

impl CaseKey {
    fn demand_key(&self) -> store::DemandKey {
        store::DemandKey {
            client_inn: self.inn.clone(),
            number_key: self.key.clone(),
            demand_date: self.date.clone(),
        }
    }
}

/// The demand cases `eval` may look up when committed (the one it opens or joins, those it quotes or closes), and
/// whether it may open one: what a batch looks up together and reserves ids for ([`store::PendingRows`]).
pub(super) fn case_keys(eval: &Evaluation) -> (Vec<store::DemandKey>, bool) {
    let Ok(resolved) = &eval.outcome else {
        return (Vec::new(), false);
    };
    let own = case_key(resolved);
    let mut keys: Vec<store::DemandKey> = own.iter().map(CaseKey::demand_key).collect();
    if let Some(inn) = &resolved.client_inn {
        keys.extend(resolved.demand_refs.iter().map(|r| store::DemandKey {
            client_inn: inn.clone(),
            number_key: number_key(&r.number),
            demand_date: r.date.to_string(),
        }));
    }
    (keys, own.is_some())
}

fn case_key(resolved: &Resolved) -> Option<CaseKey> {
    match (&resolved.client_inn, &resolved.demand) {
        (
            Some(inn),
            Some(DemandFacts {
                number: Some(number),
                date: Some(date),
                ..
            }),
        ) => Some(CaseKey {
            inn: inn.clone(),
            key: number_key(number),
            number: number.clone(),
            date: date.to_string(),
        }),
        _ => None,
    }
}

/// Marks done the open tasks of case `case` whose step the receipt `message` proves, each with a `task_done` log
/// entry naming the mail and a `done` event for the task sinks, in the mail's transaction. The digest and the
/// escalations read open tasks only, so they stop for these steps.
async fn close_proved_steps(
    conn: &mut AnyConnection,
    rows: &mut BatchRows,
    case: i64,
    steps: &[String],
    message: i64,
    sha256: &str,
    now_s: &str,
) -> anyhow::Result<()> {
    // The case's open tasks are read from the store: the batch's own, kept so far, go there first.
    rows.pending.write(conn).await?;
    for step in steps {
        for task in store::open_case_tasks(conn, case, step).await? {
            if !store::mark_task_done(conn, task.id).await? {
                continue;
            }
            let payload = serde_json::json!({
                "task": task.id,
                "step": task.step,
                "assignee": task.assignee,
                "by": null,
                "proved_by_message": message,
            });
            let seq = rows
                .log
                .append(
                    conn,
                    &store::LogEntry {
                        at: now_s,
                        event: "task_done",
                        message: Some(message),
                        sha256: Some(sha256),
                        payload: &payload,
                    },
                )
                .await?;
            store::queue_task_change(conn, task.id, store::EVENT_DONE, seq, now_s).await?;
            tracing::info!(task_id = task.id, step = %task.step, message, "task done: the operator's receipt proves it");
        }
    }
    Ok(())
}

/// Stores `record`: over the stored message `existing`, or as a new message kept with the batch's rows.
async fn save(
    conn: &mut AnyConnection,
    rows: &mut BatchRows,
    existing: Option<i64>,
    record: &MessageRecord,
) -> anyhow::Result<i64> {
    match existing {
        Some(id) => {
            store::update_message_outcome(conn, id, record).await?;
            Ok(id)
        }
        None => rows.pending.insert_message(conn, record).await,
    }
}

/// The queued text of a new-task notification, from the built-in template (`rules/templates/task_assigned.txt`).
/// The worker renders it again from the stored task and mail when sending, with the admin's templates, the
/// mail's excerpt and its attachments; this text is the fallback and what the outbox row shows.
fn new_task_notification(
    task_id: i64,
    message: i64,
    person: &str,
    t: &PlannedTask,
    eval: &Evaluation,
    now_s: &str,
) -> NewNotification {
    let inn = eval
        .outcome
        .as_ref()
        .ok()
        .and_then(|r| r.client_inn.clone());
    let values = std::collections::BTreeMap::from([
        ("task", t.title.clone()),
        (
            "client",
            crate::templates::client_label(None, inn.as_deref()),
        ),
        ("client_inn", inn.unwrap_or_default()),
        ("due", t.due.format("%d.%m.%Y").to_string()),
        ("subject", eval.subject.clone()),
        ("from", eval.from.clone()),
        ("received", eval.received.format("%d.%m.%Y").to_string()),
    ]);
    let text = crate::templates::Templates::builtin_shared()
        .render(crate::templates::Kind::TaskAssigned, &values);
    NewNotification {
        kind: crate::templates::Kind::TaskAssigned.as_str().into(),
        task: Some(task_id),
        message: Some(message),
        recipient: person.to_owned(),
        subject: text.subject,
        body: text.body,
        not_before: now_s.to_owned(),
        created_at: now_s.to_owned(),
    }
}
