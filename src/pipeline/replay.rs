//! `taxinbox rules replay`: what a candidate ruleset would decide differently on past mail, read through a read-only
//! connection. Writes nothing.

use super::{number_key, Pipeline};
use crate::directory::Directory;
use crate::rules::live::LiveRules;
use crate::rules::{Limits, Ruleset};
use chrono::{DateTime, NaiveDate, Utc};
use std::fmt;
use std::path::Path;

/// A decision as replay compares it: what a person would notice changing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DecisionView {
    pub category: Option<String>,
    pub kind: Option<String>,
    pub client_inn: Option<String>,
    pub rule: Option<String>,
    /// `(step, due)`, sorted.
    pub tasks: Vec<(String, String)>,
    /// Why the mail was (or would be) quarantined.
    pub error: Option<String>,
}

/// One stored mail whose decision would change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayChange {
    pub id: i64,
    pub source: String,
    pub received: String,
    pub old: DecisionView,
    pub new: DecisionView,
}

/// What replay found.
#[derive(Debug, Clone, Default)]
pub struct ReplayOutcome {
    pub examined: usize,
    /// Mail whose raw bytes were purged after retention: it cannot be replayed.
    pub purged: Vec<i64>,
    pub changes: Vec<ReplayChange>,
    pub ruleset: String,
}

impl fmt::Display for ReplayOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in &self.changes {
            writeln!(f, "#{} received {}  {}", c.id, c.received, c.source)?;
            write_changes(f, &c.old, &c.new)?;
        }
        if !self.purged.is_empty() {
            writeln!(
                f,
                "not replayed (raw mail purged after retention): {}",
                self.purged
                    .iter()
                    .map(|id| format!("#{id}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )?;
        }
        writeln!(
            f,
            "{} of {} mail(s) would be decided differently by ruleset {} (nothing was written)",
            self.changes.len(),
            self.examined,
            self.ruleset
        )
    }
}

/// The lines of what changes between two decisions (`    category  old → new`), one per field that differs: the
/// one layout of `rules replay` and `rules shadow`.
pub fn write_changes(
    f: &mut impl fmt::Write,
    old: &DecisionView,
    new: &DecisionView,
) -> fmt::Result {
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let tasks = |t: &[(String, String)]| {
        if t.is_empty() {
            "none".to_owned()
        } else {
            t.iter()
                .map(|(s, d)| format!("{s} {d}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    let mut line = |what: &str, old: String, new: String| {
        if old != new {
            writeln!(f, "    {what:<9} {old} → {new}")
        } else {
            Ok(())
        }
    };
    line("category", opt(&old.category), opt(&new.category))?;
    line("kind", opt(&old.kind), opt(&new.kind))?;
    line("client", opt(&old.client_inn), opt(&new.client_inn))?;
    line("rule", opt(&old.rule), opt(&new.rule))?;
    line("tasks", tasks(&old.tasks), tasks(&new.tasks))?;
    line("error", opt(&old.error), opt(&new.error))
}

/// The pipeline of a candidate ruleset: `candidate` is a rules folder (with `mail/`) or a folder of `*.rhai`
/// alone, which then runs with the demand catalogue and calendars of the configured `root`.
pub fn candidate_pipeline(
    root: &Path,
    candidate: Option<&Path>,
    limits: &Limits,
    directory: Directory,
    timezone: chrono_tz::Tz,
) -> anyhow::Result<Pipeline> {
    let (root, mail_dir) = match candidate {
        None => (root.to_path_buf(), root.join("mail")),
        Some(c) if c.join("mail").is_dir() => (c.to_path_buf(), c.join("mail")),
        Some(c) => (root.to_path_buf(), c.to_path_buf()),
    };
    let mut pipeline = Pipeline::load(&root, limits, directory, timezone)?;
    if mail_dir != root.join("mail") {
        let rules = Ruleset::load(&mail_dir, limits, &pipeline.ctx())?;
        pipeline.rules = LiveRules::new(rules);
    }
    Ok(pipeline)
}

/// Runs stored mail received on or after `since` through `pipeline` and lists the decisions that would change.
/// Reads only: pass a store opened with `Store::connect_read_only`.
pub async fn replay(
    store: &crate::store::Store,
    pipeline: &Pipeline,
    since: NaiveDate,
) -> anyhow::Result<ReplayOutcome> {
    let mut conn = store.acquire().await?;
    let stored = crate::store::decisions_since(&mut conn, &since.to_string()).await?;
    let mut outcome = ReplayOutcome {
        ruleset: pipeline.rules.version(),
        ..ReplayOutcome::default()
    };
    for old in stored {
        let Some(raw) = crate::store::raw_mail(&mut conn, &old.sha256).await? else {
            outcome.purged.push(old.id);
            continue;
        };
        outcome.examined += 1;
        // The clock only matters for a mail without a Date: header; its first processing time is what it had.
        let now = DateTime::parse_from_rfc3339(&old.processed_at)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(|_| Utc::now());
        let eval = pipeline.evaluate(&raw, &old.mailbox, now);
        let old_view = DecisionView {
            category: old.category.clone(),
            kind: old.kind.clone(),
            client_inn: old.client_inn.clone(),
            rule: old.rule.clone(),
            tasks: old.tasks.clone(),
            error: old.error.clone(),
        };
        let new_view = match &eval.outcome {
            Err(e) => DecisionView {
                error: Some(e.clone()),
                ..DecisionView::default()
            },
            Ok(r) => {
                // A mail that joined an earlier case created no tasks; if the new decision names the same demand
                // of the same client it would join that case again, so it still creates none.
                let joins_again = old.status == crate::store::MessageStatus::Linked
                    && r.client_inn == old.client_inn
                    && r.demand.as_ref().is_some_and(|d| {
                        d.number.as_deref().map(number_key)
                            == old.demand_number.as_deref().map(number_key)
                            && d.date.map(|x| x.to_string()) == old.demand_date
                    });
                let mut tasks: Vec<(String, String)> = if joins_again {
                    Vec::new()
                } else {
                    r.tasks
                        .iter()
                        .map(|t| (t.step.clone(), t.due.to_string()))
                        .collect()
                };
                tasks.sort();
                DecisionView {
                    category: Some(r.decision.category.clone()),
                    kind: r.decision.kind.clone(),
                    client_inn: r.client_inn.clone(),
                    rule: r.rule.clone(),
                    tasks,
                    error: None,
                }
            }
        };
        if old_view != new_view {
            outcome.changes.push(ReplayChange {
                id: old.id,
                source: old.source,
                received: old.received_date,
                old: old_view,
                new: new_view,
            });
        }
    }
    Ok(outcome)
}
