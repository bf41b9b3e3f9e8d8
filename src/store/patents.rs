//! Patents of clients on the patent system (ПСН), part of the directory.

use crate::directory::Patent;
use crate::ids::Inn;
use anyhow::Context as _;
use sqlx::AnyConnection;

/// Replaces the patents of every holder `patents` names with those listed (a file is the whole truth about its
/// holders' patents, as an absences file is about its people's absences).
pub async fn save_patents(
    conn: &mut AnyConnection,
    patents: &[Patent],
    now: &str,
) -> anyhow::Result<()> {
    let holders: std::collections::BTreeSet<&str> =
        patents.iter().map(|p| p.inn.as_str()).collect();
    for inn in holders {
        sqlx::query("DELETE FROM patents WHERE client_inn = $1")
            .bind(inn)
            .execute(&mut *conn)
            .await
            .with_context(|| format!("replace the patents of {inn}"))?;
    }
    for p in patents {
        sqlx::query(
            "INSERT INTO patents (client_inn, number, date_from, date_to, region, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(p.inn.as_str())
        .bind(&p.number)
        .bind(p.from.to_string())
        .bind(p.to.to_string())
        .bind(&p.region)
        .bind(now)
        .execute(&mut *conn)
        .await
        .with_context(|| format!("save patent {} of {}", p.number, p.inn))?;
    }
    Ok(())
}

/// A stored patent as read.
#[derive(sqlx::FromRow)]
struct PatentRow {
    client_inn: String,
    number: String,
    date_from: String,
    date_to: String,
    region: Option<String>,
}

/// Every stored patent.
pub async fn load_patents(conn: &mut AnyConnection) -> anyhow::Result<Vec<Patent>> {
    let rows: Vec<PatentRow> = sqlx::query_as(
        "SELECT client_inn, number, date_from, date_to, region FROM patents ORDER BY client_inn, date_from, number",
    )
    .fetch_all(&mut *conn)
    .await
    .context("read patents")?;
    let date = |text: &str| {
        chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .with_context(|| format!("a stored patent date {text:?}"))
    };
    rows.into_iter()
        .map(|r| {
            Ok(Patent {
                inn: Inn::parse(&r.client_inn)
                    .with_context(|| format!("a stored patent holder {:?}", r.client_inn))?,
                from: date(&r.date_from)?,
                to: date(&r.date_to)?,
                number: r.number,
                region: r.region,
            })
        })
        .collect()
}
