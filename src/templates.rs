//! Notification texts an admin can change without recompiling: `rules/templates/<kind>.txt`, a `Subject:` line,
//! an empty line and the body, with `{placeholder}` substitution (`{{`/`}}` for literal braces).
//!
//! Each kind knows its placeholders; a template naming any other is refused when it is loaded, so a typo is seen
//! at start rather than as a literal `{clent}` in a mail. A missing file falls back to the built-in text, the same
//! one shipped in `rules/templates/`. Substitution is deliberately this small: no logic, no loops — lists (the
//! digest's tasks) arrive as ready lines.

use anyhow::Context as _;
use std::collections::BTreeMap;
use std::path::Path;

/// The kinds of notification, their file names and the placeholders each may use.
const KINDS: &[(Kind, &str, &[&str], &str)] = &[
    (
        Kind::TaskAssigned,
        "task_assigned",
        &[
            "task",
            "client",
            "client_inn",
            "due",
            "subject",
            "from",
            "received",
            "excerpt",
            "checklist",
            "link",
            "attachments",
        ],
        include_str!("../rules/templates/task_assigned.txt"),
    ),
    (
        Kind::Digest,
        "digest",
        &[
            "name",
            "date",
            "overdue",
            "due_today",
            "upcoming",
            "overdue_count",
            "today_count",
            "upcoming_count",
        ],
        include_str!("../rules/templates/digest.txt"),
    ),
    (
        Kind::Escalation,
        "escalation",
        &["task", "client", "due", "days_left", "assignee", "link"],
        include_str!("../rules/templates/escalation.txt"),
    ),
    (
        Kind::AdminQuarantined,
        "admin_quarantined",
        &["subject", "from", "reason", "message"],
        include_str!("../rules/templates/admin_quarantined.txt"),
    ),
    (
        Kind::AdminUnassigned,
        "admin_unassigned",
        &["task", "client", "role", "due"],
        include_str!("../rules/templates/admin_unassigned.txt"),
    ),
    (
        Kind::AdminCalendar,
        "admin_calendar",
        &["year", "region", "missing", "clients"],
        include_str!("../rules/templates/admin_calendar.txt"),
    ),
    (
        Kind::AbsenceHandover,
        "absence_handover",
        &["task", "client", "due", "absent", "from", "to"],
        include_str!("../rules/templates/absence_handover.txt"),
    ),
    (
        Kind::AdminMailbox,
        "admin_mailbox",
        &["mailbox", "problem"],
        include_str!("../rules/templates/admin_mailbox.txt"),
    ),
];

/// A kind of notification; its name is the outbox `kind` and the template's file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    TaskAssigned,
    Digest,
    Escalation,
    AdminQuarantined,
    AdminUnassigned,
    /// A region's production calendar for the coming year is missing days (`pending`, no section): told to the
    /// admins once, before the year starts.
    AdminCalendar,
    /// An absence started: whoever now works the absent person's open task is told.
    AbsenceHandover,
    /// An IMAP mailbox's alarm is raised: it cannot acknowledge, or cannot be worked, for several passes.
    AdminMailbox,
}

impl Kind {
    /// The outbox `kind` and template name.
    pub fn as_str(self) -> &'static str {
        KINDS
            .iter()
            .find(|(kind, ..)| *kind == self)
            .map_or("", |(_, name, ..)| name)
    }
}

/// One template: the subject line and the body, both with placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Template {
    subject: String,
    body: String,
}

/// Every kind's template, checked.
#[derive(Debug, Clone)]
pub struct Templates {
    by_kind: BTreeMap<Kind, Template>,
}

/// A rendered notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub body: String,
}

impl Templates {
    /// The built-in texts (Russian), as shipped in `rules/templates/`.
    pub fn builtin() -> Templates {
        let mut by_kind = BTreeMap::new();
        for (kind, name, allowed, text) in KINDS {
            // The shipped texts are checked by a unit test, so this never falls back in practice; an empty
            // template is still better than a panic on a daemon path.
            let template = parse(name, text, allowed).unwrap_or(Template {
                subject: String::new(),
                body: String::new(),
            });
            by_kind.insert(*kind, template);
        }
        Templates { by_kind }
    }

    /// The built-in texts, parsed once per process.
    pub fn builtin_shared() -> &'static Templates {
        static BUILTIN: std::sync::LazyLock<Templates> =
            std::sync::LazyLock::new(Templates::builtin);
        &BUILTIN
    }

    /// Reads `dir/<kind>.txt` for every kind, the built-in text where a file is missing.
    pub fn load(dir: &Path) -> anyhow::Result<Templates> {
        let mut by_kind = BTreeMap::new();
        for (kind, name, allowed, builtin) in KINDS {
            let path = dir.join(format!("{name}.txt"));
            let text = match std::fs::read_to_string(&path) {
                Ok(text) => text,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => (*builtin).to_owned(),
                Err(e) => return Err(e).with_context(|| format!("read {}", path.display())),
            };
            let template = parse(&path.display().to_string(), &text, allowed)?;
            by_kind.insert(*kind, template);
        }
        Ok(Templates { by_kind })
    }

    /// Fills in the template of `kind`; a placeholder without a value becomes empty.
    pub fn render(&self, kind: Kind, values: &BTreeMap<&str, String>) -> Rendered {
        let Some(template) = self.by_kind.get(&kind) else {
            return Rendered {
                subject: String::new(),
                body: String::new(),
            };
        };
        let subject = substitute(&template.subject, values);
        // A value with a line break must not split the subject header.
        let subject = subject.split_whitespace().collect::<Vec<_>>().join(" ");
        Rendered {
            subject,
            body: substitute(&template.body, values),
        }
    }
}

/// Splits `Subject: …` / empty line / body and checks every placeholder against `allowed`.
fn parse(name: &str, text: &str, allowed: &[&str]) -> anyhow::Result<Template> {
    let text = text.replace("\r\n", "\n");
    let (first, body) = text.split_once('\n').unwrap_or((text.as_str(), ""));
    let Some(subject) = first.strip_prefix("Subject:") else {
        anyhow::bail!("{name}: the first line must be \"Subject: …\"");
    };
    let body = body.strip_prefix('\n').unwrap_or(body);
    for part in [subject, body] {
        for placeholder in placeholders(part).with_context(|| name.to_owned())? {
            if !allowed.contains(&placeholder.as_str()) {
                anyhow::bail!(
                    "{name}: unknown placeholder {{{placeholder}}} (known: {})",
                    allowed.join(", ")
                );
            }
        }
    }
    Ok(Template {
        subject: subject.trim().to_owned(),
        body: body.to_owned(),
    })
}

/// The placeholder names in `text`, or why the braces do not pair.
fn placeholders(text: &str) -> anyhow::Result<Vec<String>> {
    let mut found = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
            }
            '{' => {
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(c) if c.is_ascii_alphanumeric() || c == '_' => name.push(c),
                        _ => anyhow::bail!("an unclosed or malformed placeholder after {{{name}"),
                    }
                }
                found.push(name);
            }
            '}' => anyhow::bail!("a lone '}}' (write '}}}}' for a brace)"),
            _ => {}
        }
    }
    Ok(found)
}

fn substitute(text: &str, values: &BTreeMap<&str, String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                out.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                out.push('}');
            }
            '{' => {
                let mut name = String::new();
                for c in chars.by_ref() {
                    if c == '}' {
                        break;
                    }
                    name.push(c);
                }
                if let Some(value) = values.get(name.as_str()) {
                    out.push_str(value);
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// `YYYY-MM-DD` → `DD.MM.YYYY`, as people read dates; anything else unchanged.
pub fn russian_date(iso: &str) -> String {
    chrono::NaiveDate::parse_from_str(iso, "%Y-%m-%d")
        .map(|d| d.format("%d.%m.%Y").to_string())
        .unwrap_or_else(|_| iso.to_owned())
}

/// "Name (ИНН x)", the INN alone, or a dash.
pub fn client_label(name: Option<&str>, inn: Option<&str>) -> String {
    match (name.filter(|n| !n.is_empty()), inn) {
        (Some(name), Some(inn)) => format!("{name} (ИНН {inn})"),
        (None, Some(inn)) => format!("ИНН {inn}"),
        (Some(name), None) => name.to_owned(),
        (None, None) => "—".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_template_parses_with_its_own_placeholders() {
        for (_, name, allowed, text) in KINDS {
            parse(name, text, allowed).unwrap();
        }
    }

    #[test]
    fn placeholders_are_filled_and_doubled_braces_stay_literal() {
        let t = parse("t", "Subject: {a} {{x}}\n\nbody {b}!", &["a", "b"]).unwrap();
        let values = BTreeMap::from([("a", "Один".to_owned()), ("b", "два".to_owned())]);
        assert_eq!(substitute(&t.subject, &values), "Один {x}");
        assert_eq!(substitute(&t.body, &values), "body два!");
    }

    #[test]
    fn a_placeholder_the_kind_does_not_know_is_refused_with_its_name() {
        let error = parse("digest.txt", "Subject: x\n\n{clent}", &["client"])
            .unwrap_err()
            .to_string();
        assert!(error.contains("{clent}"), "{error}");
        assert!(parse("t", "no subject line", &[]).is_err());
        assert!(parse("t", "Subject: {open", &["open"]).is_err());
    }

    #[test]
    fn an_admin_template_replaces_the_builtin_and_a_missing_one_falls_back() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("escalation.txt"),
            "Subject: Горит: {task}\n\nСрок {due}\n",
        )
        .unwrap();
        let templates = Templates::load(dir.path()).unwrap();
        let values = BTreeMap::from([("task", "Ответ".to_owned()), ("due", "01.04".to_owned())]);
        let r = templates.render(Kind::Escalation, &values);
        assert_eq!(r.subject, "Горит: Ответ");
        assert_eq!(r.body, "Срок 01.04\n");
        let digest = templates.render(Kind::Digest, &BTreeMap::new());
        assert!(
            digest.subject.starts_with("Задачи на"),
            "{}",
            digest.subject
        );
    }
}
