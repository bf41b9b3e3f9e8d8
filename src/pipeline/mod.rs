//! The path of one mail: parse → extract → classify → resolve → deadlines → commit.
//!
//! [`Pipeline::evaluate`] does everything that needs no database (and so can run outside a transaction);
//! [`Pipeline::commit`] writes the outcome — message, case, tasks, notifications, log entry — through one open
//! transaction. Callers batch several mails per transaction and acknowledge them at the source only after the
//! commit returned. Invariant: every mail ends as a committed `processed`, `linked` or `quarantined` message, or
//! is recognised as a `duplicate` of one; nothing is dropped.

pub mod batch;
pub mod budget;
mod commit;
mod evaluate;
pub mod fixtures;
pub mod reload;
pub mod replay;
pub mod shadow;

use crate::directory::Role;
use crate::mail::{self};
use crate::rules::{Decision, DemandFacts, RuleContext, Ruleset};
use chrono::NaiveDate;
use serde::Serialize;
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

/// The `ingest --format jsonl` contract: one per mail (docs/formats.md). Its own type, never a database row.
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
    /// Taken in archive mode (history): its tasks were stored done, nobody was notified, nothing was pushed.
    /// Written only when true.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub archived: bool,
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
            archived: false,
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
    /// Every `№ … от …` the mail writes, quoted text included (`Facts::demand_refs`).
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
    /// The steps of the case it names that this notice proves done (a receipt sent proves `acknowledge`, an answer
    /// delivered or accepted proves `answer`: `proves` in `notices.toml`).
    pub proves: Vec<String>,
    /// What a demand asks for (its documents or questions), from the rule or read from its text: the answer
    /// task's checklist.
    pub checklist: Vec<String>,
}

/// Everything one run needs: rules, directory, calendars, the store.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// The live ruleset with the directory, calendars and demand catalogue it decides with (`Ruleset::ctx`),
    /// swappable while the service runs (hot reload); shared by every clone of the pipeline. A mail is decided under
    /// one snapshot of both, so it never mixes versions.
    pub rules: crate::rules::LiveRules,
    pub timezone: chrono_tz::Tz,
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
    /// (`calendar/production/*.toml`, `demands.toml`, `mail/*.rhai`) around a directory snapshot.
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

    /// The directory, calendars and demand catalogue in force now (with the live rules).
    pub fn ctx(&self) -> RuleContext {
        self.rules.snapshot().ctx().clone()
    }
}

/// The decision trace of one mail for the log: which rule files returned `()` (in order), which decided, how the
/// client was found, and where each deadline comes from. A mail quarantined by a failing rule has the error only.
pub fn trace(eval: &Evaluation) -> serde_json::Value {
    match &eval.outcome {
        Ok(r) => serde_json::json!({
            "document": r.document,
            "safety_net": r.safety_net,
            "proves": r.proves,
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
