//! A demand's checklist: the items it asks for, kept with its case, ticked by the accountant.

use anyhow::Context as _;
use sqlx::AnyConnection;

/// One item of a case's checklist.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct ChecklistItem {
    pub case_id: i64,
    /// 1-based, in the demand's order.
    pub position: i64,
    pub item: String,
    /// When and by whom it was ticked; `None` while open.
    pub done_at: Option<String>,
    pub done_by: Option<String>,
}

/// Stores `items` as the checklist of `case` when it has none yet (a second copy of the demand adds nothing to a
/// list already kept); returns whether it stored them.
pub async fn set_case_checklist(
    conn: &mut AnyConnection,
    case: i64,
    items: &[String],
) -> anyhow::Result<bool> {
    if items.is_empty() || !case_checklist(conn, case).await?.is_empty() {
        return Ok(false);
    }
    for (i, item) in items.iter().enumerate() {
        sqlx::query("INSERT INTO case_checklist (case_id, position, item) VALUES ($1, $2, $3)")
            .bind(case)
            .bind(i as i64 + 1)
            .bind(item)
            .execute(&mut *conn)
            .await
            .with_context(|| format!("save item {} of the checklist of case {case}", i + 1))?;
    }
    Ok(true)
}

/// The checklist of `case`, in order.
pub async fn case_checklist(
    conn: &mut AnyConnection,
    case: i64,
) -> anyhow::Result<Vec<ChecklistItem>> {
    sqlx::query_as(
        "SELECT case_id, position, item, done_at, done_by FROM case_checklist WHERE case_id = $1 ORDER BY position",
    )
    .bind(case)
    .fetch_all(&mut *conn)
    .await
    .context("read a checklist")
}

/// Ticks (`done = true`) or unticks an item; `false` when there is no such item or it already was so.
pub async fn tick_checklist_item(
    conn: &mut AnyConnection,
    case: i64,
    position: i64,
    done: bool,
    by: &str,
    at: &str,
) -> anyhow::Result<bool> {
    let changed = if done {
        sqlx::query(
            "UPDATE case_checklist SET done_at = $1, done_by = $2 \
             WHERE case_id = $3 AND position = $4 AND done_at IS NULL",
        )
        .bind(at)
        .bind(by)
        .bind(case)
        .bind(position)
        .execute(&mut *conn)
        .await
    } else {
        sqlx::query(
            "UPDATE case_checklist SET done_at = NULL, done_by = NULL \
             WHERE case_id = $1 AND position = $2 AND done_at IS NOT NULL",
        )
        .bind(case)
        .bind(position)
        .execute(&mut *conn)
        .await
    }
    .context("tick a checklist item")?;
    Ok(changed.rows_affected() == 1)
}

/// The checklist items of the case task `task` answers (its `answer` step); empty for any other task.
pub async fn checklist_of_task(conn: &mut AnyConnection, task: i64) -> anyhow::Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT c.item FROM case_checklist c JOIN tasks t ON t.case_id = c.case_id \
         WHERE t.id = $1 AND t.step = 'answer' ORDER BY c.position",
    )
    .bind(task)
    .fetch_all(&mut *conn)
    .await
    .context("read the checklist of a task")
}
