//! `[audit]`: how long the processed-mail log keeps raw mail, where its key lives, where its head is anchored.

use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Five years: the period Russian tax law lets the authority look back (NK RF art. 23: keep documents 5 years).
const DEFAULT_RETENTION_DAYS: i64 = 1825;

/// The processed-mail log's retention of raw mail. The log itself and every hash are kept forever.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSettings {
    /// Days after which a raw mail's content may be purged (its SHA-256 and size stay); `None` keeps it forever
    /// (`retention_days = 0` in the file).
    pub retention_days: Option<u32>,
    /// The file holding the log's HMAC key, made (mode 0600) at the first start; outside the database on purpose.
    /// Default `data/audit.key`.
    pub key_file: PathBuf,
    /// The append-only file the daemon anchors the log's head to once a day; `None`: no anchoring.
    pub anchor_file: Option<PathBuf>,
}

/// Where the key file is unless configured (beside the default database).
const DEFAULT_KEY_FILE: &str = "data/audit.key";

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawAudit {
    /// Wider than `u32` so a negative or huge value is reported by name rather than as a type error.
    retention_days: Option<i64>,
    key_file: Option<PathBuf>,
    anchor_file: Option<PathBuf>,
}

/// Validates `[audit]`.
pub(super) fn validate(problems: &mut Vec<String>, raw: RawAudit, base: &Path) -> AuditSettings {
    let retention_days = raw.retention_days.unwrap_or(DEFAULT_RETENTION_DAYS);
    let retention_days = match u32::try_from(retention_days) {
        Ok(0) => None,
        Ok(days) => Some(days),
        Err(_) => {
            problems.push(format!(
                "audit.retention_days: {retention_days} is not a number of days (0 keeps raw mail forever)"
            ));
            None
        }
    };
    let key_file = raw
        .key_file
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from(DEFAULT_KEY_FILE));
    AuditSettings {
        retention_days,
        key_file: base.join(key_file),
        anchor_file: raw
            .anchor_file
            .filter(|p| !p.as_os_str().is_empty())
            .map(|p| base.join(p)),
    }
}

#[cfg(test)]
mod tests {
    use crate::settings::tests::{error_text, load};

    #[test]
    fn raw_mail_is_kept_five_years_unless_configured_and_zero_keeps_it_forever() {
        let (_dir, settings) = load("", &[]);
        assert_eq!(settings.expect("valid").audit.retention_days, Some(1825));
        let (_dir, settings) = load("[audit]\nretention_days = 30\n", &[]);
        assert_eq!(settings.expect("valid").audit.retention_days, Some(30));
        let (_dir, settings) = load("", &[("TAXINBOX__AUDIT__RETENTION_DAYS", "0")]);
        assert_eq!(settings.expect("valid").audit.retention_days, None);
        let error = error_text("[audit]\nretention_days = -1\n", &[]);
        assert!(error.contains("audit.retention_days: -1"), "{error}");
        let (dir, settings) = load("[audit]\nanchor_file = \"anchors/log-heads.txt\"\n", &[]);
        let audit = settings.expect("valid").audit;
        assert_eq!(audit.key_file, dir.path().join("data/audit.key"));
        assert_eq!(
            audit.anchor_file,
            Some(dir.path().join("anchors/log-heads.txt"))
        );
    }
}
