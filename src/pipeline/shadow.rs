//! Shadow mode: a candidate ruleset (`rules.shadow_dir`) decides every live mail beside the live ruleset, and what
//! it would have decided is stored — never acted on: no task, no notification, no case, no change to the mail.
//!
//! The sources that commit live mail (`ingest`, the Maildirs, IMAP; never a dry run, never `reprocess`) call
//! [`evaluate`] before their transaction (rules may take their whole time budget; the write lock is not held
//! meanwhile) and [`record`] after `Pipeline::commit`, in the same transaction. The two decisions are compared as
//! evaluated (rule, category, kind, client, planned tasks with due date and assignee, error): a mail that joined a
//! known case is compared on what its decision plans. Invariant: nothing the shadow set does — a failing rule, a
//! bad decision, even a panic — changes or fails the live path; it is stored as the shadow side's error.

use crate::pipeline::{Evaluation, Pipeline, Report, Status};
use crate::store::{ShadowDecision, ShadowSide, ShadowTask};
use chrono::{DateTime, Utc};
use sqlx::AnyConnection;
use std::sync::Arc;

/// What the shadow set decided on one mail, before the transaction.
#[derive(Debug, Clone)]
pub struct ShadowEval {
    side: ShadowSide,
    record_equal: bool,
}

/// The shadow set's decision on one mail, or `None` when shadow mode is off.
pub fn evaluate(
    pipeline: &Pipeline,
    raw: &[u8],
    mailbox: &str,
    now: DateTime<Utc>,
) -> Option<ShadowEval> {
    let shadow = pipeline.rules.shadow()?;
    let version = shadow.rules.version().to_owned();
    let mut candidate = pipeline.clone();
    candidate.rules = crate::rules::LiveRules::from_arc(Arc::clone(&shadow.rules));
    let evaluated = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        candidate.evaluate(raw, mailbox, now)
    }));
    let side = match evaluated {
        Ok(eval) => side(&eval),
        Err(_) => ShadowSide {
            ruleset: version,
            error: Some(
                "shadow rules: evaluation panicked (a bug; the live decision stands)".into(),
            ),
            ..ShadowSide::default()
        },
    };
    Some(ShadowEval {
        side,
        record_equal: shadow.record_equal,
    })
}

/// One side of a decision as shadow mode compares it.
pub fn side(eval: &Evaluation) -> ShadowSide {
    match &eval.outcome {
        Err(e) => ShadowSide {
            ruleset: eval.ruleset.clone(),
            error: Some(e.clone()),
            ..ShadowSide::default()
        },
        Ok(r) => {
            let mut tasks: Vec<ShadowTask> = r
                .tasks
                .iter()
                .map(|t| ShadowTask {
                    step: t.step.clone(),
                    due: t.due.to_string(),
                    assignee: t.assignee.clone(),
                })
                .collect();
            tasks.sort();
            ShadowSide {
                ruleset: eval.ruleset.clone(),
                rule: r.rule.clone(),
                category: Some(r.decision.category.clone()),
                kind: r.decision.kind.clone(),
                client_inn: r.client_inn.clone(),
                tasks,
                error: None,
            }
        }
    }
}

/// Stores the shadow decision of a mail just committed (`report`) through the same open transaction: when it differs
/// from the live decision, or always with `rules.shadow_record_equal`. A duplicate (nothing committed) stores nothing.
pub async fn record(
    conn: &mut AnyConnection,
    shadow: Option<&ShadowEval>,
    live: &Evaluation,
    report: &Report,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let (Some(shadow), Some(message)) = (shadow, report.id) else {
        return Ok(());
    };
    if report.status == Status::Duplicate {
        return Ok(());
    }
    let live_side = side(live);
    let differs = !live_side.same_decision(&shadow.side);
    if !differs && !shadow.record_equal {
        return Ok(());
    }
    crate::store::insert_shadow_decision(
        conn,
        &ShadowDecision {
            id: 0,
            message,
            sha256: live.sha256.clone(),
            message_id: live.message_id.clone(),
            at: crate::store::timestamp(now),
            differs,
            live: live_side,
            shadow: shadow.side.clone(),
        },
    )
    .await?;
    Ok(())
}

/// What `taxinbox rules shadow` prints: the stored differences, oldest first.
#[derive(Debug, Clone, Default)]
pub struct ShadowDifferences {
    pub since: Option<chrono::NaiveDate>,
    pub decisions: Vec<ShadowDecision>,
}

/// The stored shadow decisions that differ from the live ones, committed on or after `since` (UTC date). Reads only:
/// pass a store opened with `Store::connect_read_only`.
pub async fn differences(
    store: &crate::store::Store,
    since: Option<chrono::NaiveDate>,
) -> anyhow::Result<ShadowDifferences> {
    let mut conn = store.acquire().await?;
    let from = since.map(|d| d.to_string()).unwrap_or_default();
    let decisions = crate::store::shadow_decisions_since(&mut conn, &from, false).await?;
    Ok(ShadowDifferences { since, decisions })
}

/// A side as `rules replay` shows decisions; a task reads `step due assignee` (`-` for the unassigned queue).
fn view(side: &ShadowSide) -> super::replay::DecisionView {
    super::replay::DecisionView {
        category: side.category.clone(),
        kind: side.kind.clone(),
        client_inn: side.client_inn.clone(),
        rule: side.rule.clone(),
        tasks: side
            .tasks
            .iter()
            .map(|t| {
                (
                    t.step.clone(),
                    format!("{} {}", t.due, t.assignee.as_deref().unwrap_or("-")),
                )
            })
            .collect(),
        error: side.error.clone(),
    }
}

impl std::fmt::Display for ShadowDifferences {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for d in &self.decisions {
            writeln!(
                f,
                "#{} at {}  {}  live {} → shadow {}",
                d.message,
                d.at,
                d.message_id.as_deref().unwrap_or("(no Message-ID)"),
                d.live.ruleset,
                d.shadow.ruleset
            )?;
            super::replay::write_changes(f, &view(&d.live), &view(&d.shadow))?;
        }
        let since = self
            .since
            .map(|d| format!(" since {d}"))
            .unwrap_or_default();
        writeln!(
            f,
            "{} mail(s){since} decided differently by the shadow rules (live → shadow; nothing was acted on)",
            self.decisions.len()
        )
    }
}
