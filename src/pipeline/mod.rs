//! The path of one mail: parse → extract → classify → resolve → deadlines → commit.
//!
//! [`Pipeline::evaluate`] does everything that needs no database (and so can run outside a transaction);
//! [`Pipeline::commit`] writes the outcome — message, case, tasks, notifications, log entry — through one open
//! transaction. Callers batch several mails per transaction and acknowledge them at the source only after the
//! commit returned. Invariant: every mail ends as a committed `processed`, `linked` or `quarantined` message, or
//! is recognised as a `duplicate` of one; nothing is dropped.

pub mod batch;
pub mod fixtures;
pub mod reload;
pub mod replay;
pub mod shadow;

use crate::calendar::{self, DemandDates, DueFrom};
use crate::directory::{Client, Role};
use crate::mail::{self, Facts, ParsedMail};
use crate::rules::{ClientChoice, Decision, DemandFacts, RuleContext, Ruleset, TaskDue};
use crate::store::{self, MessageRecord, NewNotification, NewTask};
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use sqlx::AnyConnection;
use std::sync::Arc;

/// How a mail ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Processed,
    Linked,
    Duplicate,
    Quarantined,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Processed => "processed",
            Status::Linked => "linked",
            Status::Duplicate => "duplicate",
            Status::Quarantined => "quarantined",
        }
    }
}

/// The `ingest --format jsonl` contract: one per mail (DESIGN.md). Its own type, never a database row.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Report {
    pub source: String,
    pub message_id: Option<String>,
    pub status: Status,
    pub category: Option<String>,
    pub kind: Option<String>,
    pub client_inn: Option<String>,
    pub demand: Option<DemandReport>,
    pub joins: Option<String>,
    pub rule: Option<String>,
    pub ruleset: String,
    pub tasks: Vec<TaskReport>,
    pub error: Option<String>,
    /// Why it was decided so (the deciding rule's reason, a join, the safety net): what a person reads first.
    pub reason: Option<String>,
    /// For a notice that undoes or closes a demand (a freeze lifted, a demand withdrawn): the Message-ID of the
    /// first mail of the case it names. It is no second copy, so `joins` stays empty.
    pub closes: Option<String>,
    /// Row id of the stored message (for `audit show`, `reprocess`).
    pub id: Option<i64>,
}

impl Report {
    /// A report that says nothing yet beyond where the mail came from and how it ended.
    pub fn new(source: &str, message_id: Option<String>, status: Status, ruleset: &str) -> Report {
        Report {
            source: source.to_owned(),
            message_id,
            status,
            category: None,
            kind: None,
            client_inn: None,
            demand: None,
            joins: None,
            rule: None,
            ruleset: ruleset.to_owned(),
            tasks: vec![],
            error: None,
            reason: None,
            closes: None,
            id: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DemandReport {
    pub number: Option<String>,
    pub date: Option<NaiveDate>,
    pub sent: Option<NaiveDate>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TaskReport {
    pub step: String,
    pub title: String,
    pub role: String,
    pub assignee: Option<String>,
    pub due: NaiveDate,
}

/// A task with its deadline and person worked out, before it is stored.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedTask {
    pub step: String,
    pub title: String,
    pub role: Role,
    pub assignee: Option<String>,
    pub due: NaiveDate,
    pub priority: String,
    /// Where the deadline comes from: base date, its source, working days, calendar region.
    pub provenance: serde_json::Value,
}

/// Everything decided about a mail before touching the database.
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub sha256: String,
    pub message_id: Option<String>,
    pub from: String,
    pub subject: String,
    pub received: NaiveDate,
    pub facts: serde_json::Value,
    pub outcome: Result<Resolved, String>,
    /// The version of the ruleset this mail was evaluated under (one snapshot from start to end, whatever a hot
    /// reload swaps meanwhile); what its report and stored decision name.
    pub ruleset: String,
}

/// A mail the rules decided on, with client, demand and tasks resolved.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub rule: Option<String>,
    pub decision: Decision,
    pub client_inn: Option<String>,
    pub demand: Option<DemandFacts>,
    pub tasks: Vec<PlannedTask>,
    /// The rule files that ran before `rule` and returned `()`, in order (the decision trace).
    pub ran: Vec<String>,
    /// How the client was found: `rule`, `xml_taxpayer`, `inn_in_mail`, `sender`, or `none`.
    pub client_from: &'static str,
    /// The mail's thread, nearest ancestor first (`In-Reply-To`, then `References` from the last): a mail answering
    /// one that belongs to a demand case joins that case.
    pub thread: Vec<String>,
    /// Every `№ … от …` the mail writes, quoted text included ([`Facts::demand_refs`]).
    pub demand_refs: Vec<mail::extract::DemandRef>,
    /// A reply (`Re:`/`Ответ:` or `In-Reply-To`, not a forward): a demand it names is one it quotes.
    pub is_reply: bool,
    /// The Message-IDs of the messages it forwards as attachments: a forward of a case's mail is that case again.
    pub forwarded: Vec<String>,
    /// The mail's own document, as its evidence says (`evidence`): for the decision trace.
    pub document: Option<crate::evidence::Document>,
    /// Why the safety net added a review task, when it did.
    pub safety_net: Option<String>,
    /// The mail is a notice that undoes or closes a demand (a freeze lifted, a demand withdrawn: `closes` in
    /// `notices.toml`): it is linked to the case it names.
    pub closes: bool,
}

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

/// Where the client a rule chose is found in the mail, for the decision trace: the official XML's taxpayer, an INN
/// written in the mail, the sender's address or domain — else the rule's own reasoning (`rule`).
fn client_source(
    client: &Client,
    parsed: &ParsedMail,
    facts: &Facts,
    dir: &crate::directory::Directory,
) -> &'static str {
    let inn = client.inn.as_str();
    let xml = facts
        .demand
        .as_ref()
        .and_then(|d| d.taxpayer_inn.as_ref())
        .map(|i| i.as_str());
    if xml == Some(inn) {
        "xml_taxpayer"
    } else if facts.inns.iter().any(|i| i.as_str() == inn) {
        "inn_in_mail"
    } else if dir
        .client_by_email(&parsed.from)
        .is_some_and(|c| c.inn.as_str() == inn)
    {
        "sender"
    } else {
        "rule"
    }
}

/// Everything one run needs: rules, register, calendars, the store.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// The live ruleset with the register, calendars and demand catalogue it decides with (`Ruleset::ctx`),
    /// swappable while the service runs (hot reload); shared by every clone of the pipeline. A mail is decided under
    /// one snapshot of both, so it never mixes versions.
    pub rules: crate::rules::LiveRules,
    pub timezone: chrono_tz::Tz,
}

/// What a rule that decides nothing gets: a person looks at the mail within this many working days.
const UNCLASSIFIED_REVIEW_DAYS: u32 = 2;

/// The safety net's review falls due when the acknowledgement of a demand would: on the day it counts as received,
/// this many working days after it was sent (абз. 8 п. 4 ст. 31 НК РФ; `demands.toml`).
const SAFETY_NET_WORKING_DAYS: u32 = 6;

/// Categories after which the safety net stands back: the mail is a demand, or it has a review task already.
fn needs_no_safety_net(category: &str) -> bool {
    matches!(category, "tax_demand" | "unclassified")
}

/// Demand numbers compare without `№`/`N`, spaces and case (FORMAT.md 6).
pub fn number_key(number: &str) -> String {
    let mut s = number.trim();
    for prefix in ["№", "N", "n", "No.", "No"] {
        if let Some(rest) = s.strip_prefix(prefix) {
            if rest.starts_with(|c: char| c.is_ascii_digit() || c.is_whitespace() || c == '.') {
                s = rest;
                break;
            }
        }
    }
    s.chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect()
}

impl Pipeline {
    /// Loads the production calendars, the demand catalogue and the rules from a rules folder
    /// (`calendar/production/*.toml`, `demands.toml`, `mail/*.rhai`) around a register snapshot.
    pub fn load(
        rules_dir: &std::path::Path,
        limits: &crate::rules::Limits,
        directory: crate::directory::Directory,
        timezone: chrono_tz::Tz,
    ) -> anyhow::Result<Pipeline> {
        let calendar = crate::calendar::ProductionCalendar::load_dir(
            &rules_dir.join("calendar").join("production"),
        )?;
        let demands = crate::calendar::DemandCatalog::load(&rules_dir.join("demands.toml"))?;
        let vocabulary =
            crate::evidence::Vocabulary::load(rules_dir, &crate::rules::demand_titles(&demands))?;
        let ctx = RuleContext {
            directory: Arc::new(directory),
            calendar: Arc::new(calendar),
            demands: Arc::new(demands),
            vocabulary: Arc::new(vocabulary),
        };
        let rules = Ruleset::load(&rules_dir.join("mail"), limits, &ctx)?;
        Ok(Pipeline {
            rules: crate::rules::LiveRules::new(rules),
            timezone,
        })
    }

    /// The register, calendars and demand catalogue in force now (with the live rules).
    pub fn ctx(&self) -> RuleContext {
        self.rules.snapshot().ctx().clone()
    }

    /// Parses, extracts, classifies and resolves one mail. Pure: no I/O.
    pub fn evaluate(&self, raw: &[u8], mailbox: &str, now: DateTime<Utc>) -> Evaluation {
        let rules = self.rules.snapshot();
        let sha256 = store::sha256_hex(raw);
        let today = now.with_timezone(&self.timezone).date_naive();
        let parsed = match mail::parse(raw) {
            Ok(p) => p,
            Err(e) => {
                return Evaluation {
                    sha256,
                    message_id: None,
                    from: String::new(),
                    subject: String::new(),
                    received: today,
                    facts: serde_json::json!({}),
                    outcome: Err(format!("parse: {e}")),
                    ruleset: rules.version().to_owned(),
                }
            }
        };
        let received = parsed
            .date
            .map(|d| d.with_timezone(&self.timezone).date_naive())
            .unwrap_or(today);
        let facts = mail::extract(&parsed);
        let outcome = self.decide(&rules, &parsed, &facts, received, mailbox);
        Evaluation {
            sha256,
            message_id: parsed.message_id.clone(),
            from: parsed.from.clone(),
            subject: parsed.subject.clone(),
            received,
            facts: serde_json::to_value(&facts).unwrap_or_default(),
            outcome,
            ruleset: rules.version().to_owned(),
        }
    }

    fn decide(
        &self,
        rules: &Ruleset,
        parsed: &ParsedMail,
        facts: &Facts,
        received: NaiveDate,
        mailbox: &str,
    ) -> Result<Resolved, String> {
        let evidence = crate::evidence::assess(&rules.ctx().vocabulary, parsed, facts);
        let object = crate::rules::mail_object(parsed, facts, &evidence, received, mailbox);
        let classification = rules.classify(&object).map_err(|e| format!("rule {e}"))?;
        let rule = classification.rule;
        let ran = classification.ran;
        let decision = classification.decision.unwrap_or_else(|| Decision {
            category: "unclassified".into(),
            reason: "no rule claimed this mail".into(),
            tasks: Some(vec![crate::rules::TaskSpec {
                step: "review".into(),
                title: Some("Разобрать письмо: ни одно правило его не распознало".into()),
                role: "accountant".into(),
                due: TaskDue::WorkingDays(UNCLASSIFIED_REVIEW_DAYS),
                priority: "normal".into(),
            }]),
            ..Decision::default()
        });
        let ctx = rules.ctx();
        let dir = &ctx.directory;
        // The same order as before, each step named so the trace says why this client.
        let (client, client_from): (Option<&Client>, &'static str) = match &decision.client {
            ClientChoice::Inn(inn) => {
                let c = dir.client(inn.trim());
                (
                    c,
                    c.map_or("rule", |c| client_source(c, parsed, facts, dir)),
                )
            }
            ClientChoice::None => (None, "rule"),
            ClientChoice::Resolve => {
                let xml = facts
                    .demand
                    .as_ref()
                    .and_then(|d| d.taxpayer_inn.as_ref())
                    .and_then(|inn| dir.client(inn.as_str()));
                if xml.is_some() {
                    (xml, "xml_taxpayer")
                } else if let Some(c) = facts.inns.iter().find_map(|inn| dir.client(inn.as_str())) {
                    (Some(c), "inn_in_mail")
                } else if let Some(c) = dir.client_by_email(&parsed.from) {
                    (Some(c), "sender")
                } else {
                    (None, "none")
                }
            }
        };
        let region = client.and_then(|c| c.region.as_deref());
        let demand = merge_demand(decision.demand.clone(), facts);
        let mut tasks = self.plan_tasks(
            ctx,
            &decision,
            client,
            demand.as_ref(),
            received,
            region,
            parsed,
        )?;
        let closes = decision.category == "notice"
            && evidence.document.as_ref().is_some_and(|d| {
                d.class == crate::evidence::Class::Notice
                    && d.kind.as_deref().is_some_and(|k| ctx.vocabulary.closes(k))
            });
        let safety_net = match evidence.demand() {
            Some(doc)
                if !needs_no_safety_net(&decision.category) && !is_own_notification(parsed) =>
            {
                let (task, why) =
                    safety_net_task(ctx, doc, facts, &decision, client, received, region)?;
                tasks.push(task);
                Some(why)
            }
            _ => None,
        };
        Ok(Resolved {
            rule,
            client_inn: client.map(|c| c.inn.as_str().to_owned()),
            demand: if decision.category == "tax_demand" {
                demand
            } else {
                None
            },
            decision,
            tasks,
            ran,
            client_from,
            thread: parsed
                .in_reply_to
                .iter()
                .chain(parsed.references.iter().rev())
                .cloned()
                .collect(),
            demand_refs: facts.demand_refs.clone(),
            is_reply: parsed.is_reply(),
            forwarded: parsed
                .forwarded
                .iter()
                .filter_map(|f| f.message_id.clone())
                .collect(),
            closes,
            document: evidence.document,
            safety_net,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn plan_tasks(
        &self,
        ctx: &RuleContext,
        decision: &Decision,
        client: Option<&Client>,
        demand: Option<&DemandFacts>,
        received: NaiveDate,
        region: Option<&str>,
        parsed: &ParsedMail,
    ) -> Result<Vec<PlannedTask>, String> {
        let cal = &ctx.calendar;
        let calendar_name = region.unwrap_or("federal");
        let client_suffix = client.map(|c| format!(" — {}", c.name)).unwrap_or_default();
        let mut planned = Vec::new();
        if let Some(specs) = &decision.tasks {
            for spec in specs {
                let role: Role = spec
                    .role
                    .parse()
                    .map_err(|e| format!("rule decision: task `{}`: {e}", spec.step))?;
                let (due, provenance) = match spec.due {
                    TaskDue::WorkingDays(n) => (
                        cal.add_working_days(received, n, region)
                            .map_err(|e| e.to_string())?,
                        serde_json::json!({"from": "received", "base": received, "working_days": n, "calendar": calendar_name}),
                    ),
                    TaskDue::Date(d) => (
                        cal.next_working_day(d, region).map_err(|e| e.to_string())?,
                        serde_json::json!({"from": "rule", "base": d, "working_days": 0, "calendar": calendar_name}),
                    ),
                };
                let title = spec
                    .title
                    .clone()
                    .unwrap_or_else(|| default_title(decision, parsed));
                planned.push(PlannedTask {
                    step: spec.step.clone(),
                    title: format!("{title}{client_suffix}"),
                    assignee: ctx.directory.assignee(client, role, received),
                    role,
                    due,
                    priority: spec.priority.clone(),
                    provenance,
                });
            }
            return Ok(planned);
        }
        if decision.category != "tax_demand" {
            return Ok(planned);
        }
        let kind_id = decision.kind.as_deref().unwrap_or("other");
        let kind = ctx.demands.kind(kind_id).ok_or_else(|| {
            format!("rule decision: demand kind `{kind_id}` is not in demands.toml")
        })?;
        let dates = DemandDates {
            sent: demand.and_then(|d| d.sent.or(d.date)),
            received,
            stated: demand.and_then(|d| d.deadline),
            appointment: demand.and_then(|d| d.appointment),
        };
        for spec in &kind.tasks {
            let computed =
                calendar::due_date(cal, spec, &dates, region).map_err(|e| e.to_string())?;
            let (due, provenance) = match computed {
                Some(due) => (
                    due,
                    serde_json::json!({"from": from_name(spec.from), "base": base_date(spec.from, &dates),
                        "working_days": spec.working_days, "calendar": calendar_name, "law": spec.law}),
                ),
                // The mail does not state the date the law counts from: the task still exists, due at once, and
                // says so, rather than the demand being lost.
                None => (
                    cal.next_working_day(received, region)
                        .map_err(|e| e.to_string())?,
                    serde_json::json!({"from": "received", "base": received, "working_days": 0,
                        "calendar": calendar_name, "law": spec.law,
                        "warning": format!("no {} date found in the mail: check the deadline in the document", from_name(spec.from))}),
                ),
            };
            planned.push(PlannedTask {
                step: spec.step.clone(),
                title: format!("{}{client_suffix}", spec.title),
                role: Role::Accountant,
                assignee: ctx.directory.assignee(client, Role::Accountant, received),
                due,
                priority: "high".into(),
                provenance,
            });
        }
        Ok(planned)
    }

    /// Writes one evaluated mail through the open transaction and returns its report.
    pub async fn commit(
        &self,
        conn: &mut AnyConnection,
        incoming_source: &str,
        mailbox: &str,
        raw: &[u8],
        eval: &Evaluation,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Report> {
        let now_s = store::timestamp(now);
        if let Some(seen) = store::message_by_sha(conn, &eval.sha256).await? {
            return Ok(Report {
                id: Some(seen.id),
                ..Report::new(
                    incoming_source,
                    seen.message_id,
                    Status::Duplicate,
                    &eval.ruleset,
                )
            });
        }
        store::put_raw(conn, &eval.sha256, raw, &now_s).await?;
        let mut record = self.record(eval, incoming_source, mailbox, &now_s);
        let report = self
            .write_outcome(conn, None, &mut record, eval, incoming_source, &now_s, None)
            .await?;
        if let Some(id) = report.id {
            store::add_source_ref(conn, incoming_source, id).await?;
            // Task events for the firm's tracker (webhook, Bitrix24), in this same transaction.
            store::queue_task_events_of_message(conn, id, &now_s).await?;
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
        let mailbox = "reprocess";
        let eval = self.evaluate(&raw, mailbox, now);
        let now_s = store::timestamp(now);
        let mut record = self.record(&eval, &seen.source, mailbox, &now_s);
        let existing = store::tasks_of_message(conn, id).await?;
        if !existing.is_empty() && seen.status != store::MessageStatus::Quarantined {
            anyhow::bail!("message {id} already has tasks; only quarantined mail or mail without tasks is reprocessed");
        }
        let report = self
            .write_outcome(
                conn,
                Some(id),
                &mut record,
                &eval,
                &seen.source,
                &now_s,
                Some("mail_reprocessed"),
            )
            .await?;
        store::queue_task_events_of_message(conn, id, &now_s).await?;
        Ok(report)
    }

    fn record(&self, eval: &Evaluation, source: &str, mailbox: &str, now_s: &str) -> MessageRecord {
        MessageRecord {
            sha256: eval.sha256.clone(),
            message_id: eval.message_id.clone(),
            source: source.to_owned(),
            mailbox: mailbox.to_owned(),
            fetched_at: now_s.to_owned(),
            received_date: eval.received.to_string(),
            from_addr: eval.from.clone(),
            subject: eval.subject.clone(),
            ruleset: Some(eval.ruleset.clone()),
            facts: eval.facts.to_string(),
            processed_at: now_s.to_owned(),
            ..MessageRecord::default()
        }
    }

    /// `log_event` replaces the outcome's own event (`mail_processed`, …) in the log: `mail_reprocessed` for
    /// `taxinbox reprocess`, so an auditor tells a second decision from the first (the payload says how it ended).
    #[allow(clippy::too_many_arguments)]
    async fn write_outcome(
        &self,
        conn: &mut AnyConnection,
        existing: Option<i64>,
        record: &mut MessageRecord,
        eval: &Evaluation,
        source: &str,
        now_s: &str,
        log_event: Option<&str>,
    ) -> anyhow::Result<Report> {
        let mut report = Report::new(
            source,
            eval.message_id.clone(),
            Status::Processed,
            &eval.ruleset,
        );
        let resolved = match &eval.outcome {
            Err(error) => {
                record.status = store::MessageStatus::Quarantined;
                record.error = Some(error.clone());
                let id = save(conn, existing, record).await?;
                report.status = Status::Quarantined;
                report.error = Some(error.clone());
                report.id = Some(id);
                self.log(
                    conn,
                    log_event.unwrap_or("mail_quarantined"),
                    id,
                    eval,
                    &report,
                    now_s,
                )
                .await?;
                return Ok(report);
            }
            Ok(r) => r,
        };
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
        report.category = Some(d.category.clone());
        report.kind = d.kind.clone();
        report.client_inn = resolved.client_inn.clone();
        report.rule = resolved.rule.clone();
        report.demand = resolved.demand.as_ref().map(|dm| DemandReport {
            number: dm.number.clone(),
            date: dm.date,
            sent: dm.sent.or(dm.date),
        });

        // The same demand again: join its case, create nothing (FORMAT.md 6; only demands of a known client).
        let case_key = match (&resolved.client_inn, &resolved.demand) {
            (
                Some(inn),
                Some(DemandFacts {
                    number: Some(number),
                    date: Some(date),
                    ..
                }),
            ) => Some((
                inn.clone(),
                number_key(number),
                number.clone(),
                date.to_string(),
            )),
            _ => None,
        };
        if let Some((case, by)) = self
            .joined_case(conn, existing, resolved, case_key.as_ref())
            .await?
        {
            record.status = store::MessageStatus::Linked;
            record.case_id = Some(case.id);
            record.joins = case.first_message_id.clone();
            report.status = Status::Linked;
            report.joins = case.first_message_id.clone();
            // The same demand is the kind its case was opened as (a second copy may carry less: an XML without
            // the article that tells a 93.1 demand from a 93 one).
            if case.kind.is_some() {
                record.kind = case.kind.clone();
                report.kind = case.kind.clone();
            }
            if by != JoinedBy::Demand {
                // A reply, a forward or a quotation is about the case's demand: it is reported as that demand again.
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
                let date = NaiveDate::parse_from_str(&case.demand_date, "%Y-%m-%d").ok();
                report.category = Some("tax_demand".into());
                report.kind = case.kind.clone();
                report.client_inn = Some(case.client_inn.clone());
                report.demand = Some(DemandReport {
                    number: Some(case.number.clone()),
                    date,
                    sent: None,
                });
            }
            let id = save(conn, existing, record).await?;
            report.id = Some(id);
            report.reason = record.reason.clone();
            self.log(
                conn,
                log_event.unwrap_or("mail_linked"),
                id,
                eval,
                &report,
                now_s,
            )
            .await?;
            return Ok(report);
        }

        record.status = store::MessageStatus::Processed;
        // A decision that lifts a freeze, a demand withdrawn: it belongs to the case it names (its number and date
        // are the case's), which it is linked to; it creates no task and is no second copy of the demand.
        if resolved.closes {
            if let Some(case) = self.closed_case(conn, resolved).await? {
                record.case_id = Some(case.id);
                record.reason = Some(format!(
                    "{}; относится к делу: требование № {} от {}",
                    record.reason.clone().unwrap_or_default(),
                    case.number,
                    case.demand_date
                ));
                report.closes = case.first_message_id.clone();
            }
        }
        let id = save(conn, existing, record).await?;
        let case_id = match &case_key {
            Some((inn, key, number, date)) => {
                let case =
                    store::insert_case(conn, inn, key, number, date, d.kind.as_deref(), id, now_s)
                        .await?;
                store::set_message_case(conn, id, case).await?;
                Some(case)
            }
            None => None,
        };
        let mut recipients = Vec::new();
        for t in &resolved.tasks {
            let task_id = store::insert_task(
                conn,
                &NewTask {
                    message: id,
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
                },
            )
            .await?;
            if let Some(person) = &t.assignee {
                store::insert_notification(
                    conn,
                    &new_task_notification(task_id, id, person, t, eval, now_s),
                )
                .await?;
                recipients.push(person.clone());
            }
            report.tasks.push(TaskReport {
                step: t.step.clone(),
                title: t.title.clone(),
                role: t.role.as_str().to_owned(),
                assignee: t.assignee.clone(),
                due: t.due,
            });
        }
        report.id = Some(id);
        report.reason = record.reason.clone();
        self.log(
            conn,
            log_event.unwrap_or("mail_processed"),
            id,
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
        resolved: &Resolved,
    ) -> anyhow::Result<Option<store::CaseRef>> {
        let Some(inn) = &resolved.client_inn else {
            return Ok(None);
        };
        for r in &resolved.demand_refs {
            if let Some(case) =
                store::find_case(conn, inn, &number_key(&r.number), &r.date.to_string()).await?
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
        existing: Option<i64>,
        resolved: &Resolved,
        case_key: Option<&(String, String, String, String)>,
    ) -> anyhow::Result<Option<(store::CaseRef, JoinedBy)>> {
        let other = |case: &store::CaseRef| existing != Some(case.first_message);
        if let Some((inn, key, _, date)) = case_key {
            if let Some(case) = store::find_case(conn, inn, key, date).await? {
                // Reprocessing the case's first mail finds its own case: nothing to join.
                return Ok(other(&case).then_some((case, JoinedBy::Demand)));
            }
        }
        let category = resolved.decision.category.as_str();
        if !joins_by_thread_or_quotation(category) {
            return Ok(None);
        }
        // A forward "as attachment" carries the original's Message-ID: the very mail the case knows.
        if let Some(case) = store::find_case_by_thread(conn, &resolved.forwarded).await? {
            if other(&case) {
                return Ok(Some((case, JoinedBy::Forward)));
            }
        }
        let new_demand = category == "tax_demand" && !resolved.is_reply;
        if case_key.is_none() || !new_demand {
            if let Some(case) = store::find_case_by_thread(conn, &resolved.thread).await? {
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
            if let Some(case) = store::find_case(conn, inn, &number_key(&r.number), &date).await? {
                if other(&case) {
                    return Ok(Some((case, JoinedBy::Quotation)));
                }
            }
        }
        Ok(None)
    }

    async fn log(
        &self,
        conn: &mut AnyConnection,
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
        let payload = serde_json::json!({
            "report": report,
            "reason": reason,
            "received_date": eval.received,
            "deadlines": provenance,
            "trace": trace(eval),
        });
        store::append_log(
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

/// The decision trace of one mail for the log: which rule files returned `()` (in order), which decided, how the
/// client was found, and where each deadline comes from. A mail quarantined by a failing rule has the error only.
pub fn trace(eval: &Evaluation) -> serde_json::Value {
    match &eval.outcome {
        Ok(r) => serde_json::json!({
            "document": r.document,
            "safety_net": r.safety_net,
            "passed": r.ran,
            "decided": r.rule,
            "client": r.client_inn,
            "client_from": r.client_from,
            "deadlines": r.tasks.iter()
                .map(|t| serde_json::json!({"step": t.step, "due": t.due, "provenance": t.provenance}))
                .collect::<Vec<_>>(),
        }),
        Err(e) => serde_json::json!({ "error": e }),
    }
}

async fn save(
    conn: &mut AnyConnection,
    existing: Option<i64>,
    record: &MessageRecord,
) -> anyhow::Result<i64> {
    match existing {
        Some(id) => {
            store::update_message_outcome(conn, id, record).await?;
            Ok(id)
        }
        None => store::insert_message(conn, record).await,
    }
}

/// taxinbox's own notifications (they quote the demands they are about) are never work again.
fn is_own_notification(parsed: &ParsedMail) -> bool {
    parsed.headers.contains_key("x-taxinbox")
}

/// The review task the safety net adds to a mail whose own document is a concrete demand but which the rules filed
/// as something else (a new demand inside a reply, an operator's template nobody wrote a rule for): due when the
/// demand's acknowledgement would be, for the client's accountant (or the unassigned queue).
fn safety_net_task(
    ctx: &RuleContext,
    doc: &crate::evidence::Document,
    facts: &Facts,
    decision: &Decision,
    client: Option<&Client>,
    received: NaiveDate,
    region: Option<&str>,
) -> Result<(PlannedTask, String), String> {
    let cal = &ctx.calendar;
    let calendar_name = region.unwrap_or("federal");
    let sent = facts.demand.as_ref().and_then(|x| x.sent).or(doc.date);
    let (due, provenance) = match sent {
        Some(base) => (
            cal.add_working_days(base, SAFETY_NET_WORKING_DAYS, region)
                .map_err(|e| e.to_string())?,
            serde_json::json!({"from": "sent", "base": base, "working_days": SAFETY_NET_WORKING_DAYS,
                "calendar": calendar_name, "law": "абз. 8 п. 4 ст. 31 НК РФ"}),
        ),
        None => (
            cal.next_working_day(received, region)
                .map_err(|e| e.to_string())?,
            serde_json::json!({"from": "received", "base": received, "working_days": 0, "calendar": calendar_name,
                "warning": "no date of the document found in the mail: check the deadline in the document"}),
        ),
    };
    let what = match (&doc.number, doc.date) {
        (Some(n), Some(d)) => format!(" № {n} от {}", d.format("%d.%m.%Y")),
        (Some(n), None) => format!(" № {n}"),
        (None, Some(d)) => format!(" от {}", d.format("%d.%m.%Y")),
        (None, None) => String::new(),
    };
    let title = format!(
        "Проверить письмо: возможно, внутри документ налогового органа ({}{what}), а правила отнесли письмо к «{}»",
        doc.title, decision.category
    );
    let client_suffix = client.map(|c| format!(" — {}", c.name)).unwrap_or_default();
    let why = format!(
        "safety net: the mail's own document is a demand ({}, from its {}), the rules decided {:?}",
        doc.title,
        doc.source.as_str(),
        decision.category
    );
    Ok((
        PlannedTask {
            step: "review".into(),
            title: format!("{title}{client_suffix}"),
            role: Role::Accountant,
            assignee: ctx.directory.assignee(client, Role::Accountant, received),
            due,
            priority: "high".into(),
            provenance,
        },
        why,
    ))
}

/// The rule's demand facts, completed from the official XML where the rule left a gap.
fn merge_demand(rule: Option<DemandFacts>, facts: &Facts) -> Option<DemandFacts> {
    let xml = facts.demand.as_ref();
    match (rule, xml) {
        (None, None) => None,
        (rule, xml) => {
            let mut d = rule.unwrap_or_default();
            if let Some(x) = xml {
                d.number = d.number.or_else(|| x.number.clone());
                d.date = d.date.or(x.date);
                d.sent = d.sent.or(x.sent);
            }
            Some(d)
        }
    }
}

fn from_name(from: DueFrom) -> &'static str {
    match from {
        DueFrom::Sent => "sent",
        DueFrom::Received => "received",
        DueFrom::Stated => "stated",
        DueFrom::Appointment => "appointment",
    }
}

fn base_date(from: DueFrom, dates: &DemandDates) -> Option<NaiveDate> {
    match from {
        DueFrom::Sent => dates.sent,
        DueFrom::Received => Some(dates.received),
        DueFrom::Stated => dates.stated,
        DueFrom::Appointment => dates.appointment,
    }
}

fn default_title(decision: &Decision, parsed: &ParsedMail) -> String {
    let subject = if parsed.subject.trim().is_empty() {
        "(без темы)"
    } else {
        parsed.subject.trim()
    };
    match decision.category.as_str() {
        "client_request" => format!("Запрос клиента: {subject}"),
        _ => format!("Письмо: {subject}"),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demand_numbers_compare_without_sign_spaces_and_case() {
        assert_eq!(number_key("№ 4521"), "4521");
        assert_eq!(number_key("N 4521"), "4521");
        assert_eq!(number_key("№4521"), "4521");
        assert_eq!(number_key("13-12/8841@"), "13-12/8841@");
        assert_eq!(number_key("2.4-17/1234"), "2.4-17/1234");
        assert_eq!(number_key("ab 12"), "ab12");
    }
}
