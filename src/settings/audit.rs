//! `[audit]`: how long the processed-mail log keeps raw mail.

use serde::Deserialize;

/// Five years: the period Russian tax law lets the authority look back (NK RF art. 23: keep documents 5 years).
const DEFAULT_RETENTION_DAYS: i64 = 1825;

/// The processed-mail log's retention of raw mail. The log itself and every hash are kept forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditSettings {
    /// Days after which a raw mail's content may be purged (its SHA-256 and size stay); `None` keeps it forever
    /// (`retention_days = 0` in the file).
    pub retention_days: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawAudit {
    /// Wider than `u32` so a negative or huge value is reported by name rather than as a type error.
    retention_days: Option<i64>,
}

/// Validates `[audit]`.
pub(super) fn validate(problems: &mut Vec<String>, raw: RawAudit) -> AuditSettings {
    let retention_days = raw.retention_days.unwrap_or(DEFAULT_RETENTION_DAYS);
    match u32::try_from(retention_days) {
        Ok(0) => AuditSettings {
            retention_days: None,
        },
        Ok(days) => AuditSettings {
            retention_days: Some(days),
        },
        Err(_) => {
            problems.push(format!(
                "audit.retention_days: {retention_days} is not a number of days (0 keeps raw mail forever)"
            ));
            AuditSettings {
                retention_days: None,
            }
        }
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
    }
}
