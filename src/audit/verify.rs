//! `audit verify`: the hash chain, every stored raw mail against its SHA-256 (a purged one must be named by a purge
//! entry), and every mail's stored decision against the newest log entry about it; the first bad one is named.

use super::log::text;
use super::story::purged_hashes;
use crate::store::{self};
use std::collections::BTreeSet;

/// One thing `audit verify` found wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The log entry at fault (the first one about the thing at fault), when there is one.
    pub seq: Option<i64>,
    pub problem: String,
}

/// What `audit verify` checked and found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// Entries whose links hold.
    pub entries: i64,
    /// The head of the chain: note it down; a later verify that shows an older head means the log was cut.
    pub head: Option<(i64, String)>,
    pub raw_checked: u64,
    pub raw_purged: u64,
    pub mails_checked: u64,
    /// Everything wrong, the first bad entry first.
    pub findings: Vec<Finding>,
    /// Whether the chain was checked with the key (HMAC) or, without it, as the plain SHA-256 chain only.
    pub keyed: bool,
    /// Anchored heads compared with the log (`[audit] anchor_file`); `None`: no anchor file configured.
    pub anchors_checked: Option<usize>,
}

/// What `verify_with` checks the log against, besides its own content.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    /// The log key: every entry after its `keyed_after` must carry its MAC.
    pub key: Option<store::LogKey>,
    /// Heads anchored outside the database.
    pub anchors: Option<Vec<super::anchor::Anchor>>,
}

impl Verification {
    pub fn is_intact(&self) -> bool {
        self.findings.is_empty()
    }

    /// The first bad entry, or the first problem no entry names.
    pub fn first_bad(&self) -> Option<&Finding> {
        self.findings.first()
    }
}

impl std::fmt::Display for Verification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.first_bad() {
            None => writeln!(f, "processed-mail log intact: {} entries", self.entries)?,
            Some(Finding {
                seq: Some(seq),
                problem,
            }) => writeln!(f, "processed-mail log BROKEN at entry {seq}: {problem}")?,
            Some(Finding { seq: None, problem }) => {
                writeln!(f, "processed-mail log BROKEN: {problem}")?
            }
        }
        if let Some((seq, hash)) = &self.head {
            writeln!(f, "  head: entry {seq}, hash {hash}")?;
        }
        if self.keyed {
            writeln!(
                f,
                "  chain: checked with the key (HMAC-SHA-256 of every entry since the key)"
            )?;
        } else {
            writeln!(
                f,
                "  chain: checked WITHOUT the key — the plain SHA-256 chain only, which anyone able to write the \
                 database could recompute"
            )?;
        }
        match self.anchors_checked {
            Some(n) => writeln!(f, "  anchors: {n} anchored head(s) compared")?,
            None => writeln!(f, "  anchors: no anchor file configured")?,
        }
        writeln!(
            f,
            "  raw mail: {} stored, {} purged after retention",
            self.raw_checked, self.raw_purged
        )?;
        writeln!(
            f,
            "  mail decisions compared with the log: {}",
            self.mails_checked
        )?;
        if self.findings.len() > 1 {
            writeln!(f, "  {} problem(s):", self.findings.len())?;
            for finding in self.findings.iter().take(MAX_FINDINGS_SHOWN) {
                match finding.seq {
                    Some(seq) => writeln!(f, "    entry {seq}: {}", finding.problem)?,
                    None => writeln!(f, "    {}", finding.problem)?,
                }
            }
            if self.findings.len() > MAX_FINDINGS_SHOWN {
                writeln!(
                    f,
                    "    … and {} more",
                    self.findings.len() - MAX_FINDINGS_SHOWN
                )?;
            }
        }
        Ok(())
    }
}

/// Enough problems to see a pattern; a wholesale edit would otherwise print thousands of lines.
const MAX_FINDINGS_SHOWN: usize = 20;

/// Raw mails read per query while checking their hashes.
const RAW_PAGE: i64 = 100;

/// Checks the chain, every stored raw mail against its hash, and every mail's stored decision against the newest
/// entry about it. Reads only.
pub async fn verify(conn: &mut sqlx::AnyConnection) -> anyhow::Result<Verification> {
    verify_with(conn, &Trust::default()).await
}

/// [`verify`] with the key and the anchors: the keyed chain, then every anchored head against the log.
pub async fn verify_with(
    conn: &mut sqlx::AnyConnection,
    trust: &Trust,
) -> anyhow::Result<Verification> {
    let mut v = Verification {
        keyed: trust.key.is_some(),
        anchors_checked: trust.anchors.as_ref().map(Vec::len),
        entries: 0,
        head: None,
        raw_checked: 0,
        raw_purged: 0,
        mails_checked: 0,
        findings: vec![],
    };
    match store::verify_log_keyed(conn, trust.key.as_ref()).await? {
        store::VerifyOutcome::Intact { entries } => {
            v.entries = entries;
            v.head = Some(store::log_head(conn).await?);
        }
        store::VerifyOutcome::Broken { seq, reason } => {
            v.entries = seq - 1;
            v.findings.push(Finding {
                seq: Some(seq),
                problem: reason,
            });
        }
    }
    if let Some(anchors) = &trust.anchors {
        for (seq, problem) in super::anchor::check_anchors(conn, anchors).await? {
            v.findings.push(Finding {
                seq: Some(seq),
                problem,
            });
        }
    }
    check_raw_mail(conn, &mut v).await?;
    check_decisions(conn, &mut v).await?;
    // Stable: among problems of one entry the chain's own comes first.
    v.findings.sort_by_key(|f| f.seq.unwrap_or(i64::MAX));
    Ok(v)
}

async fn check_raw_mail(
    conn: &mut sqlx::AnyConnection,
    v: &mut Verification,
) -> anyhow::Result<()> {
    let purges = store::entries_with_event(conn, store::RAW_MAIL_PURGED).await?;
    let purge_payloads: Vec<serde_json::Value> = purges
        .iter()
        .map(|e| serde_json::from_str(&e.payload).unwrap_or_default())
        .collect();
    let purged: BTreeSet<&str> = purge_payloads.iter().flat_map(purged_hashes).collect();
    let mut bad: Vec<(String, String)> = Vec::new();
    let mut after = String::new();
    loop {
        let page = store::raw_mail_page(conn, &after, RAW_PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.sha256.clone();
        for raw in page {
            v.raw_checked += 1;
            match &raw.content {
                None if purged.contains(raw.sha256.as_str()) => v.raw_purged += 1,
                None => bad.push((
                    raw.sha256,
                    "its raw mail's content is gone, but no purge entry names it".into(),
                )),
                Some(bytes) => {
                    let actual = crate::store::sha256_hex(bytes);
                    if actual != raw.sha256 {
                        bad.push((
                            raw.sha256,
                            "its raw mail was altered: the stored bytes do not match their SHA-256"
                                .into(),
                        ));
                    } else if i64::try_from(bytes.len()).ok() != Some(raw.size) {
                        bad.push((
                            raw.sha256,
                            format!(
                                "its raw mail's recorded size {} is not its {} bytes",
                                raw.size,
                                bytes.len()
                            ),
                        ));
                    }
                }
            }
        }
    }
    for sha in store::logged_hashes_without_raw_mail(conn).await? {
        bad.push((sha, "its raw mail was removed from the store".into()));
    }
    for (sha, problem) in bad {
        let seq = store::first_entry_with_sha(conn, &sha).await?;
        v.findings.push(Finding {
            seq,
            problem: format!("{problem} (sha256 {sha})"),
        });
    }
    Ok(())
}

async fn check_decisions(
    conn: &mut sqlx::AnyConnection,
    v: &mut Verification,
) -> anyhow::Result<()> {
    let latest = store::latest_mail_entries(conn).await?;
    for m in store::mails(conn, &store::MailFilter::default()).await? {
        v.mails_checked += 1;
        let Some(entry) = latest.get(&m.id) else {
            v.findings.push(Finding {
                seq: None,
                problem: format!("mail {} has no entry in the log", m.id),
            });
            continue;
        };
        let payload: serde_json::Value = serde_json::from_str(&entry.payload).unwrap_or_default();
        let report = &payload["report"];
        let logged = |field: &str| text(&report[field]);
        let mut differs = Vec::new();
        if entry.sha256.as_deref() != Some(m.sha256.as_str()) {
            differs.push(format!(
                "raw mail {} (the log says {})",
                m.sha256,
                entry.sha256.as_deref().unwrap_or("none")
            ));
        }
        for (field, stored) in [
            ("status", Some(m.status.as_str().to_owned())),
            ("category", m.category.clone()),
            ("kind", m.kind.clone()),
            ("client_inn", m.client_inn.clone()),
            ("rule", m.rule.clone()),
            ("ruleset", m.ruleset.clone()),
        ] {
            let said = logged(field);
            if said != stored {
                differs.push(format!(
                    "{field} {} (the log says {})",
                    stored.as_deref().unwrap_or("none"),
                    said.as_deref().unwrap_or("none")
                ));
            }
        }
        if !differs.is_empty() {
            v.findings.push(Finding {
                seq: Some(entry.seq),
                problem: format!(
                    "mail {} in the database disagrees with its entry: {}",
                    m.id,
                    differs.join(", ")
                ),
            });
        }
    }
    Ok(())
}
