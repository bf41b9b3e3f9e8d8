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

/// Most items in one `INSERT` (two bound values each).
const ITEMS_PER_INSERT: usize = 200;

/// Stores `items` as the checklist of `case` when it has none yet (a second copy of the demand adds nothing to a
/// list already kept); returns whether it stored them. One statement for a list of up to [`ITEMS_PER_INSERT`]
/// items, the look for an existing list included: it runs for every new case of a batch.
pub async fn set_case_checklist(
    conn: &mut AnyConnection,
    case: i64,
    items: &[String],
) -> anyhow::Result<bool> {
    for (n, chunk) in items.chunks(ITEMS_PER_INSERT).enumerate() {
        let first = n * ITEMS_PER_INSERT;
        let rows: Vec<String> = (0..chunk.len())
            .map(|i| format!("SELECT ${} AS position, ${} AS item", 2 * i + 2, 2 * i + 3))
            .collect();
        // The first chunk only when the case has no list; the rest follow it.
        let guard = if n == 0 {
            " WHERE NOT EXISTS (SELECT 1 FROM case_checklist WHERE case_id = $1)"
        } else {
            ""
        };
        let sql = format!(
            "INSERT INTO case_checklist (case_id, position, item) SELECT $1, v.position, v.item FROM ({}) v{guard}",
            rows.join(" UNION ALL ")
        );
        let mut query = sqlx::query(crate::store::composed_sql(sql)).bind(case);
        for (i, item) in chunk.iter().enumerate() {
            query = query.bind((first + i) as i64 + 1).bind(item.as_str());
        }
        let stored = query
            .execute(&mut *conn)
            .await
            .with_context(|| format!("save the checklist of case {case}"))?
            .rows_affected();
        if stored == 0 {
            return Ok(false);
        }
    }
    Ok(!items.is_empty())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store;

    /// A list longer than one statement is stored whole and in order, once: a second copy of the demand, with
    /// another list, leaves the first as it was; an empty list stores nothing.
    #[tokio::test]
    async fn a_case_keeps_the_first_list_it_is_given_however_long() {
        let dir = tempfile::tempdir().unwrap();
        let store = store::test_store(dir.path()).await;
        let mut tx = store.begin().await.unwrap();
        let conn: &mut AnyConnection = &mut tx;
        let message = store::test_message(conn, "s").await;
        let case = store::insert_case(
            conn,
            "7707083893",
            "1",
            "1",
            "2026-03-02",
            None,
            message,
            "",
        )
        .await
        .unwrap();
        assert!(!set_case_checklist(conn, case, &[]).await.unwrap());
        let items: Vec<String> = (1..=450).map(|n| format!("документ {n}")).collect();
        assert!(set_case_checklist(conn, case, &items).await.unwrap());
        let other: Vec<String> = vec!["другой список".into()];
        assert!(!set_case_checklist(conn, case, &other).await.unwrap());
        let kept = case_checklist(conn, case).await.unwrap();
        assert_eq!(
            kept.iter().map(|i| i.item.clone()).collect::<Vec<_>>(),
            items
        );
        assert!(kept
            .iter()
            .enumerate()
            .all(|(n, i)| i.position == n as i64 + 1));
    }
}
