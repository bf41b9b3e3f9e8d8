//! The pure half of the pipeline: parse, extract, evidence, classify, resolve the client and the person, plan the
//! tasks with their legal deadlines, and the safety net's review task. No I/O; safe to run outside a transaction and
//! on several threads.

use super::{Evaluation, Pipeline, PlannedTask, Resolved};
use crate::calendar::{self, DemandDates, DueFrom};
use crate::directory::{Client, Role};
use crate::mail::{self, Facts, ParsedMail};
use crate::rules::{ClientChoice, Decision, DemandFacts, RuleContext, Ruleset, TaskDue};
use crate::store;
use chrono::{DateTime, NaiveDate, Utc};

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

/// What a rule that decides nothing gets: a person looks at the mail within this many working days.
const UNCLASSIFIED_REVIEW_DAYS: u32 = 2;

/// The safety net's review falls due when the acknowledgement of a demand would: on the day it counts as received,
/// this many working days after it was sent (абз. 8 п. 4 ст. 31 НК РФ; `demands.toml`).
const SAFETY_NET_WORKING_DAYS: u32 = 6;

/// Categories after which the safety net stands back: the mail is a demand, or it has a review task already.
fn needs_no_safety_net(category: &str) -> bool {
    matches!(category, "tax_demand" | "unclassified")
}

impl Pipeline {
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
        let proves = if decision.category == "notice"
            && evidence
                .document
                .as_ref()
                .is_some_and(|d| d.class == crate::evidence::Class::Notice)
        {
            let text = evidence.sections.new_content();
            let own = crate::evidence::head(&text, crate::evidence::EVIDENCE_TEXT_BYTES);
            ctx.vocabulary.proves(&[&parsed.subject, own])
        } else {
            Vec::new()
        };
        let checklist = match &decision.checklist {
            Some(list) => list.clone(),
            None if decision.category == "tax_demand" => evidence.checklist.clone(),
            None => Vec::new(),
        };
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
            proves,
            checklist,
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
