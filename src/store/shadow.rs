//! Shadow decisions: what a candidate ruleset would have decided on live mail (`rules.shadow_dir`), stored beside
//! the mail in the transaction that commits it, and read back by `taxinbox rules shadow`. Nothing here acts on them.

use super::messages::clean;
use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row as _};

/// A task a decision plans, as shadow mode compares it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ShadowTask {
    pub step: String,
    /// ISO date.
    pub due: String,
    /// `None`: the unassigned queue.
    pub assignee: Option<String>,
}

/// One side (live or shadow) of a mail's decision.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ShadowSide {
    /// `sha256:…` of the ruleset that decided.
    pub ruleset: String,
    pub rule: Option<String>,
    pub category: Option<String>,
    pub kind: Option<String>,
    pub client_inn: Option<String>,
    /// Sorted.
    pub tasks: Vec<ShadowTask>,
    /// Why the mail is (or would be) quarantined.
    pub error: Option<String>,
}

impl ShadowSide {
    /// The same decision, whichever ruleset made it.
    pub fn same_decision(&self, other: &ShadowSide) -> bool {
        (
            &self.rule,
            &self.category,
            &self.kind,
            &self.client_inn,
            &self.tasks,
            &self.error,
        ) == (
            &other.rule,
            &other.category,
            &other.kind,
            &other.client_inn,
            &other.tasks,
            &other.error,
        )
    }
}

/// One stored shadow decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShadowDecision {
    /// Row id (0 before it is stored).
    pub id: i64,
    /// The stored message (`audit show ID`).
    pub message: i64,
    pub sha256: String,
    pub message_id: Option<String>,
    /// When the mail was committed (RFC 3339).
    pub at: String,
    pub differs: bool,
    pub live: ShadowSide,
    pub shadow: ShadowSide,
}

/// Stores one shadow decision (in the transaction that commits its mail); returns its row id.
pub async fn insert_shadow_decision(
    conn: &mut AnyConnection,
    d: &ShadowDecision,
) -> anyhow::Result<i64> {
    let o = |s: &Option<String>| s.as_deref().map(clean);
    let live_tasks = serde_json::to_string(&d.live.tasks)?;
    let shadow_tasks = serde_json::to_string(&d.shadow.tasks)?;
    sqlx::query_scalar(
        "INSERT INTO shadow_decisions (message, sha256, message_id, at, differs, \
         live_ruleset, live_rule, live_category, live_kind, live_client_inn, live_tasks, live_error, \
         shadow_ruleset, shadow_rule, shadow_category, shadow_kind, shadow_client_inn, shadow_tasks, shadow_error) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19) RETURNING id",
    )
    .bind(d.message)
    .bind(&d.sha256)
    .bind(o(&d.message_id))
    .bind(&d.at)
    .bind(i64::from(d.differs))
    .bind(&d.live.ruleset)
    .bind(o(&d.live.rule))
    .bind(o(&d.live.category))
    .bind(o(&d.live.kind))
    .bind(o(&d.live.client_inn))
    .bind(clean(&live_tasks))
    .bind(o(&d.live.error))
    .bind(&d.shadow.ruleset)
    .bind(o(&d.shadow.rule))
    .bind(o(&d.shadow.category))
    .bind(o(&d.shadow.kind))
    .bind(o(&d.shadow.client_inn))
    .bind(clean(&shadow_tasks))
    .bind(o(&d.shadow.error))
    .fetch_one(&mut *conn)
    .await
    .context("store the shadow decision")
}

/// Shadow decisions committed at or after `since` (an RFC 3339 instant or an ISO date, compared as text), oldest
/// first; only those that differ from the live decision unless `all`.
pub async fn shadow_decisions_since(
    conn: &mut AnyConnection,
    since: &str,
    all: bool,
) -> anyhow::Result<Vec<ShadowDecision>> {
    let rows = sqlx::query(
        "SELECT id, message, sha256, message_id, at, differs, \
         live_ruleset, live_rule, live_category, live_kind, live_client_inn, live_tasks, live_error, \
         shadow_ruleset, shadow_rule, shadow_category, shadow_kind, shadow_client_inn, shadow_tasks, shadow_error \
         FROM shadow_decisions WHERE at >= $1 AND (differs = 1 OR $2 = 1) ORDER BY id",
    )
    .bind(since)
    .bind(i64::from(all))
    .fetch_all(&mut *conn)
    .await
    .context("list shadow decisions")?;
    // Mapped by hand: each side's columns share a prefix, and its tasks are a JSON list parsed here.
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let side = |p: &str| -> anyhow::Result<ShadowSide> {
            let tasks: String = row.try_get(format!("{p}_tasks").as_str())?;
            Ok(ShadowSide {
                ruleset: row.try_get(format!("{p}_ruleset").as_str())?,
                rule: row.try_get(format!("{p}_rule").as_str())?,
                category: row.try_get(format!("{p}_category").as_str())?,
                kind: row.try_get(format!("{p}_kind").as_str())?,
                client_inn: row.try_get(format!("{p}_client_inn").as_str())?,
                tasks: serde_json::from_str(&tasks)
                    .with_context(|| format!("shadow decision: {p}_tasks is not a task list"))?,
                error: row.try_get(format!("{p}_error").as_str())?,
            })
        };
        let differs: i64 = row.try_get("differs")?;
        out.push(ShadowDecision {
            id: row.try_get("id")?,
            message: row.try_get("message")?,
            sha256: row.try_get("sha256")?,
            message_id: row.try_get("message_id")?,
            at: row.try_get("at")?,
            differs: differs != 0,
            live: side("live")?,
            shadow: side("shadow")?,
        });
    }
    Ok(out)
}
