//! `[notify]`: how notifications reach people (an outbox folder or SMTP), who may receive them and how many, the
//! daily digest, and the escalation ladders (`[notify.escalation]`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::check::{normalize, port_number, required, take};
use super::mailboxes::{password_source, PasswordSource, Tls};

/// Notifications as `.eml` files until someone configures SMTP: nothing leaves the machine by accident.
const DEFAULT_NOTIFY_DIR: &str = "data/outbox";
/// Sender of notifications until configured.
const DEFAULT_NOTIFY_FROM: &str = "taxinbox@localhost";
/// Far more than a person's real notifications in a day (tasks, a digest, escalations), few enough that a mail
/// loop is stopped after minutes rather than flooding a mailbox.
const DEFAULT_DAILY_CAP_PER_RECIPIENT: u32 = 200;
/// An SMTP server that has not answered in this long is treated as down; the notification waits for a later pass.
const DEFAULT_NOTIFY_TIMEOUT_SECS: u64 = 30;
/// The daily digest goes out from 08:00 in the firm's zone: in the inbox before the working day starts.
const DEFAULT_DIGEST_TIME: &str = "08:00";

/// How notifications reach people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifySettings {
    /// The delivery mechanism.
    pub transport: NotifyTransport,
    /// `From:` address of notifications.
    pub from: String,
    /// Addresses (lower-case) told about quarantined mail and unassigned tasks; always allowed recipients.
    pub admins: Vec<String>,
    /// Further allowed recipients besides the directory's staff and the admins: addresses or `@domain`
    /// (lower-case). Anyone else is refused, whatever a rule or the directory says.
    pub allowed_recipients: Vec<String>,
    /// Notifications one recipient may get in 24 hours; beyond, they are held (a loop guard).
    pub daily_cap_per_recipient: u32,
    /// Connect and command timeout of the SMTP conversation.
    pub timeout: Duration,
    /// Who is reminded of an open task, how many working days before its due date.
    pub escalation: EscalationSettings,
    /// The firm's time of day (in `general.timezone`) before which no daily digest is queued.
    pub digest_time: chrono::NaiveTime,
    /// Staff (lower-case addresses) who get no daily digest.
    pub digest_opt_out: Vec<String>,
}

/// Who is told about an open task and when: a ladder of rungs per demand kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EscalationSettings {
    /// The ladder of every kind without its own.
    pub default: Vec<EscalationRung>,
    /// Ladders by demand kind (`demands.toml` id, or `calendar` for tax-calendar tasks).
    pub kinds: std::collections::BTreeMap<String, Vec<EscalationRung>>,
}

impl EscalationSettings {
    /// The ladder for tasks of `kind`.
    pub fn ladder(&self, kind: &str) -> &[EscalationRung] {
        self.kinds.get(kind).unwrap_or(&self.default)
    }
}

/// One rung: tell `who` when `working_days_before` working days are left until the due date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EscalationRung {
    /// Whom to tell.
    pub who: EscalationTarget,
    /// Working days before the due date (0 = on the due date).
    pub working_days_before: u32,
}

/// Whom an escalation rung tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum EscalationTarget {
    /// The task's assignee.
    Assignee,
    /// Whoever works the client's tasks when the assignee is away (the substitute, else the backup accountant).
    Substitute,
    /// The assignee's manager in the directory.
    Manager,
    /// The configured admins.
    Admins,
}

impl EscalationTarget {
    /// The name used in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            EscalationTarget::Assignee => "assignee",
            EscalationTarget::Substitute => "substitute",
            EscalationTarget::Manager => "manager",
            EscalationTarget::Admins => "admins",
        }
    }
}

/// The ladder used when the configuration gives none: the assignee three working days ahead, the substitute two,
/// the manager one and on the day itself.
fn default_ladder() -> Vec<EscalationRung> {
    [
        (EscalationTarget::Assignee, 3),
        (EscalationTarget::Substitute, 2),
        (EscalationTarget::Manager, 1),
        (EscalationTarget::Manager, 0),
    ]
    .into_iter()
    .map(|(who, working_days_before)| EscalationRung {
        who,
        working_days_before,
    })
    .collect()
}

/// The delivery mechanism of notifications.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyTransport {
    /// Write each message as an `.eml` file into `dir` (resolved) — for trying things out and for tests.
    File {
        /// The outbox folder.
        dir: PathBuf,
    },
    /// Send through an SMTP server.
    Smtp {
        /// Server host name.
        host: String,
        /// Port (default 587 with `starttls`, 465 with `tls`, 25 with `none`).
        port: u16,
        /// Transport security (default `starttls`).
        tls: Tls,
        /// Login, when the server wants one.
        user: Option<String>,
        /// Where the password is, when there is a login.
        password: Option<PasswordSource>,
        /// PEM file of CA certificates to trust besides the public roots (a relay with the firm's own CA).
        tls_ca_file: Option<PathBuf>,
    },
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawNotify {
    transport: Option<String>,
    dir: Option<PathBuf>,
    from: Option<String>,
    host: Option<String>,
    port: Option<i64>,
    tls: Option<String>,
    user: Option<String>,
    password_file: Option<PathBuf>,
    password_env: Option<String>,
    tls_ca_file: Option<PathBuf>,
    admins: Option<Vec<String>>,
    allowed_recipients: Option<Vec<String>>,
    /// Wider than `u32` so a negative value is reported by name rather than as a type error.
    daily_cap_per_recipient: Option<i64>,
    timeout_secs: Option<i64>,
    escalation: RawEscalation,
    digest_time: Option<String>,
    digest_opt_out: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawEscalation {
    default: Option<Vec<RawRung>>,
    kinds: std::collections::BTreeMap<String, Vec<RawRung>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawRung {
    who: Option<String>,
    working_days_before: Option<i64>,
}

/// Validates `[notify]`; `None` when the transport cannot be built (the problems are recorded).
pub(super) fn validate(
    problems: &mut Vec<String>,
    raw: RawNotify,
    base: &Path,
) -> Option<NotifySettings> {
    let from = raw
        .from
        .unwrap_or_else(|| DEFAULT_NOTIFY_FROM.to_owned())
        .trim()
        .to_owned();
    if !from.contains('@') {
        problems.push(format!("notify.from: {from:?} is not an e-mail address"));
    }
    let transport = match raw.transport.as_deref().map(str::trim).unwrap_or("file") {
        "file" => {
            // SMTP keys under a file transport mean the administrator thinks mail is being sent; it is not.
            let smtp_keys = [
                ("host", raw.host.is_some()),
                ("port", raw.port.is_some()),
                ("tls", raw.tls.is_some()),
                ("user", raw.user.is_some()),
                ("password_file", raw.password_file.is_some()),
                ("password_env", raw.password_env.is_some()),
                ("tls_ca_file", raw.tls_ca_file.is_some()),
            ];
            for (key, _) in smtp_keys.iter().filter(|(_, written)| *written) {
                problems.push(format!("notify.{key}: only used with transport = \"smtp\""));
            }
            let dir = raw.dir.unwrap_or_else(|| PathBuf::from(DEFAULT_NOTIFY_DIR));
            Some(NotifyTransport::File {
                dir: normalize(&base.join(dir)),
            })
        }
        "smtp" => {
            if raw.dir.is_some() {
                problems.push("notify.dir: only used with transport = \"file\"".to_owned());
            }
            let host = required(problems, "notify.host", raw.host);
            let tls = match raw.tls.as_deref().map(str::trim) {
                None => Some(Tls::Starttls),
                Some(value) => take(problems, Tls::parse("notify.tls", value)),
            };
            let port = match (raw.port, tls) {
                (Some(port), _) => take(problems, port_number("notify.port", port)),
                (None, Some(Tls::Tls)) => Some(465),
                (None, Some(Tls::None)) => Some(25),
                (None, _) => Some(587),
            };
            let user = raw
                .user
                .map(|user| user.trim().to_owned())
                .filter(|user| !user.is_empty());
            let password = password_source(
                problems,
                "notify",
                raw.password_file,
                raw.password_env,
                base,
                false,
            );
            // A login without a password (or the reverse) cannot authenticate; say so now, not at the first send.
            if let Some(password) = &password {
                if user.is_some() != password.is_some() {
                    problems.push(
                        "notify: `user` and a password (password_file or password_env) go together"
                            .to_owned(),
                    );
                }
            }
            if raw.tls_ca_file.is_some() && tls == Some(Tls::None) {
                problems.push(
                    "notify.tls_ca_file: only used with tls = \"tls\" or \"starttls\"".to_owned(),
                );
            }
            let tls_ca_file = raw.tls_ca_file.map(|file| normalize(&base.join(file)));
            match (host, tls, port, password) {
                (Some(host), Some(tls), Some(port), Some(password)) => {
                    Some(NotifyTransport::Smtp {
                        host,
                        port,
                        tls,
                        user,
                        password,
                        tls_ca_file,
                    })
                }
                _ => None,
            }
        }
        other => {
            problems.push(format!(
                "notify.transport: {other:?} is not one of file, smtp"
            ));
            None
        }
    };
    let addresses = |key: &str, list: Option<Vec<String>>, problems: &mut Vec<String>| {
        let mut valid = Vec::new();
        for entry in list.unwrap_or_default() {
            let entry = entry.trim().to_lowercase();
            match entry.split_once('@') {
                Some((_, domain)) if !domain.is_empty() && !domain.contains('@') => {
                    valid.push(entry)
                }
                _ => problems.push(format!(
                    "notify.{key}: {entry:?} is not an e-mail address or @domain"
                )),
            }
        }
        valid
    };
    let admins = addresses("admins", raw.admins, problems);
    if let Some(domain_only) = admins.iter().find(|a| a.starts_with('@')) {
        problems.push(format!(
            "notify.admins: {domain_only:?} is a domain; admins are addresses"
        ));
    }
    let allowed_recipients = addresses("allowed_recipients", raw.allowed_recipients, problems);
    let daily_cap_per_recipient = match raw.daily_cap_per_recipient {
        None => DEFAULT_DAILY_CAP_PER_RECIPIENT,
        Some(cap) => match u32::try_from(cap) {
            Ok(cap) if cap > 0 => cap,
            _ => {
                problems.push(format!(
                    "notify.daily_cap_per_recipient: {cap} is not a positive number"
                ));
                DEFAULT_DAILY_CAP_PER_RECIPIENT
            }
        },
    };
    let timeout = match raw.timeout_secs {
        None => Duration::from_secs(DEFAULT_NOTIFY_TIMEOUT_SECS),
        Some(secs) if (1..=600).contains(&secs) => Duration::from_secs(secs.unsigned_abs()),
        Some(secs) => {
            problems.push(format!(
                "notify.timeout_secs: {secs} is not between 1 and 600 seconds"
            ));
            Duration::from_secs(DEFAULT_NOTIFY_TIMEOUT_SECS)
        }
    };
    let ladder = |at: &str, rungs: Vec<RawRung>, problems: &mut Vec<String>| {
        let mut valid = Vec::new();
        for (index, rung) in rungs.into_iter().enumerate() {
            let at = format!("{at}[{index}]");
            let who = match rung.who.as_deref().map(str::trim) {
                Some("assignee") => Some(EscalationTarget::Assignee),
                Some("substitute") => Some(EscalationTarget::Substitute),
                Some("manager") => Some(EscalationTarget::Manager),
                Some("admins") => Some(EscalationTarget::Admins),
                Some(other) => {
                    problems.push(format!(
                        "{at}.who: {other:?} is not one of assignee, substitute, manager, admins"
                    ));
                    None
                }
                None => {
                    problems.push(format!("{at}.who: missing"));
                    None
                }
            };
            let days = match rung.working_days_before.map(u32::try_from) {
                Some(Ok(days)) if days <= 60 => Some(days),
                Some(_) => {
                    problems.push(format!(
                        "{at}.working_days_before: not a number of working days from 0 to 60"
                    ));
                    None
                }
                None => {
                    problems.push(format!("{at}.working_days_before: missing"));
                    None
                }
            };
            if let (Some(who), Some(working_days_before)) = (who, days) {
                valid.push(EscalationRung {
                    who,
                    working_days_before,
                });
            }
        }
        valid
    };
    let escalation = EscalationSettings {
        default: match raw.escalation.default {
            Some(rungs) => ladder("notify.escalation.default", rungs, problems),
            None => default_ladder(),
        },
        kinds: raw
            .escalation
            .kinds
            .into_iter()
            .map(|(kind, rungs)| {
                let rungs = ladder(&format!("notify.escalation.kinds.{kind}"), rungs, problems);
                (kind, rungs)
            })
            .collect(),
    };
    let digest_time_text = raw
        .digest_time
        .unwrap_or_else(|| DEFAULT_DIGEST_TIME.to_owned());
    let digest_time = chrono::NaiveTime::parse_from_str(digest_time_text.trim(), "%H:%M")
        .unwrap_or_else(|_| {
            problems.push(format!(
                "notify.digest_time: {digest_time_text:?} is not a time of day such as 08:00"
            ));
            chrono::NaiveTime::MIN
        });
    let digest_opt_out = addresses("digest_opt_out", raw.digest_opt_out, problems);
    Some(NotifySettings {
        transport: transport?,
        from,
        admins,
        allowed_recipients,
        daily_cap_per_recipient,
        timeout,
        escalation,
        digest_time,
        digest_opt_out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::tests::{error_text, load};

    #[test]
    fn smtp_notification_defaults_to_starttls_on_587_and_needs_a_host() {
        let (_dir, settings) = load(
            "[notify]\ntransport = \"smtp\"\nhost = \"smtp.firm.example\"\nuser = \"t@firm.example\"\npassword_env = \"SMTP_PASSWORD\"\n",
            &[],
        );
        assert_eq!(
            settings.expect("valid").notify.transport,
            NotifyTransport::Smtp {
                host: "smtp.firm.example".to_owned(),
                port: 587,
                tls: Tls::Starttls,
                user: Some("t@firm.example".to_owned()),
                password: Some(PasswordSource::Env("SMTP_PASSWORD".to_owned())),
                tls_ca_file: None,
            }
        );
        let message = error_text("[notify]\ntransport = \"smtp\"\n", &[]);
        assert!(message.contains("notify.host: missing"), "{message}");
    }

    #[test]
    fn an_smtp_ca_file_is_resolved_against_the_config_folder_and_needs_tls() {
        let smtp = "[notify]\ntransport = \"smtp\"\nhost = \"smtp.firm.example\"\ntls_ca_file = \"certs/ca.pem\"\n";
        let (dir, settings) = load(smtp, &[]);
        match settings.expect("valid").notify.transport {
            NotifyTransport::Smtp { tls_ca_file, .. } => {
                assert_eq!(tls_ca_file, Some(dir.path().join("certs/ca.pem")));
            }
            other => panic!("{other:?}"),
        }
        let message = error_text(&format!("{smtp}tls = \"none\"\n"), &[]);
        assert!(message.contains("notify.tls_ca_file"), "{message}");
    }

    #[test]
    fn smtp_keys_under_the_file_transport_are_an_error() {
        let message = error_text("[notify]\nhost = \"smtp.firm.example\"\n", &[]);
        assert!(
            message.contains("notify.host: only used with transport = \"smtp\""),
            "{message}"
        );
    }
}
