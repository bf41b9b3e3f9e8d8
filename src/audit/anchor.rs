//! Anchoring the log's head outside the database: once a day the daemon appends one line — the date, the last
//! entry's number, its hash and its MAC — to `[audit] anchor_file`, a file only ever appended to (keep it where the
//! database's writers cannot rewrite it: another host, a WORM share, a log shipper). `audit verify` reads it back: an
//! anchored entry whose stored hash differs, or a log shorter than an anchor, means anchored days were rewritten —
//! which holds even against someone with the database and the key.

use crate::store;
use anyhow::Context as _;
use chrono::NaiveDate;
use sqlx::AnyConnection;
use std::io::Write as _;
use std::path::Path;

/// One line of the anchor file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    pub date: NaiveDate,
    pub seq: i64,
    pub hash: String,
}

/// What an anchor line says: `2026-12-06 entry=1006 hash=… mac=…`.
fn parse_line(line: &str) -> Option<Anchor> {
    let mut parts = line.split_whitespace();
    let date = parts.next()?.parse().ok()?;
    let seq = parts.next()?.strip_prefix("entry=")?.parse().ok()?;
    let hash = parts.next()?.strip_prefix("hash=")?.to_owned();
    Some(Anchor { date, seq, hash })
}

/// Every anchor of the file, in file order; a line that is not one is an error naming its line number.
pub fn read_anchors(path: &Path) -> anyhow::Result<Vec<Anchor>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => {
            return Err(e).with_context(|| format!("read the anchor file {}", path.display()))
        }
    };
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|(i, l)| {
            parse_line(l)
                .with_context(|| format!("{}:{}: not an anchor line", path.display(), i + 1))
        })
        .collect()
}

/// Appends today's anchor when the file has none for `today` and the log has entries; returns the line's entry.
pub async fn anchor_if_due(
    conn: &mut AnyConnection,
    path: &Path,
    today: NaiveDate,
) -> anyhow::Result<Option<i64>> {
    let anchors = read_anchors(path)?;
    if anchors.last().is_some_and(|a| a.date >= today) {
        return Ok(None);
    }
    let (seq, hash) = store::log_head(conn).await?;
    if seq == 0 {
        return Ok(None);
    }
    let mac = store::entry_link(conn, seq)
        .await?
        .and_then(|(_, mac)| mac)
        .unwrap_or_else(|| "-".into());
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .with_context(|| format!("open the anchor file {}", path.display()))?;
    writeln!(file, "{today} entry={seq} hash={hash} mac={mac}")
        .and_then(|()| file.sync_all())
        .with_context(|| format!("append to the anchor file {}", path.display()))?;
    Ok(Some(seq))
}

/// Compares every anchor with the log: the problems found, each with the entry it names.
pub async fn check_anchors(
    conn: &mut AnyConnection,
    anchors: &[Anchor],
) -> anyhow::Result<Vec<(i64, String)>> {
    let mut problems = Vec::new();
    let mut last = 0;
    for a in anchors {
        if a.seq < last {
            problems.push((
                a.seq,
                format!("the anchor of {} goes back from entry {last}", a.date),
            ));
        }
        last = last.max(a.seq);
        match store::entry_link(conn, a.seq).await? {
            None => problems.push((
                a.seq,
                format!(
                    "anchored on {} but missing from the log (anchored days were cut)",
                    a.date
                ),
            )),
            Some((hash, _)) if hash != a.hash => problems.push((
                a.seq,
                format!(
                    "its hash differs from the one anchored on {} (anchored days were rewritten)",
                    a.date
                ),
            )),
            Some(_) => {}
        }
    }
    let (head, _) = store::log_head(conn).await?;
    if head < last {
        problems.push((
            last,
            format!("the log's head names entry {head}, older than the anchored entry {last}"),
        ));
    }
    Ok(problems)
}
