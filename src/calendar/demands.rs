//! The demand catalogue (`rules/demands.toml`): the kinds of tax-office documents that need a person, how to
//! recognise each, and the tasks each creates with the date it counts from and its number of working days; plus
//! [`due_date`], which turns one task spec and a demand's dates into a deadline.
//!
//! The legal reasoning behind each number lives in the TOML file's comments and the README, not here: this
//! module only loads, checks and applies it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use chrono::NaiveDate;
use serde::Deserialize;

use super::{CalendarError, ProductionCalendar};

/// Which date of a demand a task's term counts from.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum DueFrom {
    /// The date the tax office sent the document (FORMAT.md convention 3).
    Sent,
    /// The date the mail reached the firm (its `Date:` header in Europe/Moscow).
    Received,
    /// A deadline written in the document itself (e.g. "срок исполнения требования").
    Stated,
    /// The date of a summons (уведомление о вызове).
    Appointment,
}

impl DueFrom {
    /// The name used in `demands.toml`.
    pub fn as_str(self) -> &'static str {
        match self {
            DueFrom::Sent => "sent",
            DueFrom::Received => "received",
            DueFrom::Stated => "stated",
            DueFrom::Appointment => "appointment",
        }
    }
}

/// One task a demand kind creates.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemandTaskSpec {
    /// Short stable name of the step (`acknowledge`, `answer`, `pay`, …), unique within the kind.
    pub step: String,
    /// The date the term counts from.
    pub from: DueFrom,
    /// The N-th working day after `from`; 0 = that date itself, moved to the next working day if off.
    pub working_days: u32,
    /// What the person has to do, in Russian.
    pub title: String,
    /// The article(s) of law behind the term.
    pub law: String,
}

/// One kind of tax-office document (`[kinds.<id>]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemandKind {
    /// The key under `[kinds]` (`documents`, `explanations`, …).
    pub id: String,
    /// The document's official title.
    pub title: String,
    /// The article of law it is issued under.
    pub law: String,
    /// The form's КНД codes (the `КНД_Док` of the FNS envelope names the enclosed document by it).
    pub knd: Vec<String>,
    /// How the document names itself (`требовани* о представлени* пояснений`): the phrases that, as the mail's
    /// own document, decide that the mail IS this kind (the `evidence` module; `*` ends a word with any ending).
    pub titles: Vec<String>,
    /// A kind that is a special case of another with the same title and form: `counterparty_documents` refines
    /// `documents`, and a `documents` title becomes this kind when one of its `recognise` phrases is in the mail.
    pub refines: Option<String>,
    /// Phrases whose presence suggests this kind (used by the classification rules).
    pub recognise: Vec<String>,
    /// How people name this kind in their own words (a client's note over a forwarded screenshot).
    pub informal: Vec<String>,
    /// The tasks it creates, in file order.
    pub tasks: Vec<DemandTaskSpec>,
}

/// `[kinds.<id>]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKind {
    title: String,
    law: String,
    #[serde(default)]
    knd: crate::evidence::catalog::OneOrMany,
    #[serde(default)]
    titles: Vec<String>,
    #[serde(default)]
    refines: Option<String>,
    #[serde(default)]
    recognise: Vec<String>,
    #[serde(default)]
    informal: Vec<String>,
    tasks: Vec<DemandTaskSpec>,
}

/// The whole file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCatalog {
    kinds: BTreeMap<String, RawKind>,
}

/// All demand kinds, by id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DemandCatalog {
    kinds: BTreeMap<String, DemandKind>,
}

impl DemandCatalog {
    /// Loads and checks `demands.toml`.
    pub fn load(path: &Path) -> Result<DemandCatalog, CalendarError> {
        let content = std::fs::read_to_string(path).map_err(|source| CalendarError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        DemandCatalog::from_toml_str(&path.display().to_string(), &content)
    }

    /// Parses and checks a catalogue; `name` only appears in error messages.
    ///
    /// Checked: every kind has a title, a law and at least one task; steps are unique within a kind and named
    /// in lower-case ASCII; recognise phrases and the КНД code are not blank.
    pub fn from_toml_str(name: &str, content: &str) -> Result<DemandCatalog, CalendarError> {
        let raw: RawCatalog = toml::from_str(content)
            .map_err(|error| CalendarError::from_toml(name, content, &error))?;
        let invalid = |message: String| CalendarError::Invalid {
            file: name.to_owned(),
            message,
        };
        let mut kinds = BTreeMap::new();
        for (id, kind) in raw.kinds {
            let at = format!("kinds.{id}");
            if !is_identifier(&id) {
                return Err(invalid(format!(
                    "{at}: a kind id is lower-case ASCII letters, digits and `_`"
                )));
            }
            if kind.title.trim().is_empty() || kind.law.trim().is_empty() {
                return Err(invalid(format!(
                    "{at}: `title` and `law` must not be empty"
                )));
            }
            let knd = kind.knd.into_vec();
            if knd.iter().any(|k| k.trim().is_empty()) {
                return Err(invalid(format!(
                    "{at}.knd: empty; leave the key out instead"
                )));
            }
            if kind
                .recognise
                .iter()
                .chain(&kind.informal)
                .chain(&kind.titles)
                .any(|phrase| phrase.trim().is_empty())
            {
                // An empty phrase is contained in every text and would match every mail.
                return Err(invalid(format!("{at}.recognise: holds an empty phrase")));
            }
            if kind.tasks.is_empty() {
                return Err(invalid(format!(
                    "{at}.tasks: a kind needs at least one task (use `other` for documents without one)"
                )));
            }
            let mut steps = BTreeSet::new();
            for (index, task) in kind.tasks.iter().enumerate() {
                if !is_identifier(&task.step) {
                    return Err(invalid(format!(
                        "{at}.tasks[{index}].step: {:?} is not lower-case ASCII letters, digits and `_`",
                        task.step
                    )));
                }
                if !steps.insert(task.step.as_str()) {
                    return Err(invalid(format!(
                        "{at}.tasks[{index}].step: {:?} appears twice in this kind",
                        task.step
                    )));
                }
                if task.title.trim().is_empty() || task.law.trim().is_empty() {
                    return Err(invalid(format!(
                        "{at}.tasks[{index}]: `title` and `law` must not be empty"
                    )));
                }
            }
            kinds.insert(
                id.clone(),
                DemandKind {
                    id,
                    title: kind.title,
                    law: kind.law,
                    knd,
                    titles: kind.titles,
                    refines: kind.refines,
                    recognise: kind.recognise,
                    informal: kind.informal,
                    tasks: kind.tasks,
                },
            );
        }
        for kind in kinds.values() {
            if let Some(base) = &kind.refines {
                if base == &kind.id || !kinds.contains_key(base) {
                    return Err(invalid(format!(
                        "kinds.{}.refines: {base:?} is not another kind of this file",
                        kind.id
                    )));
                }
            }
        }
        Ok(DemandCatalog { kinds })
    }

    /// The kind with this id.
    pub fn kind(&self, id: &str) -> Option<&DemandKind> {
        self.kinds.get(id)
    }

    /// All kinds, by id.
    pub fn kinds(&self) -> impl Iterator<Item = &DemandKind> {
        self.kinds.values()
    }
}

/// An id of a kind, step or topic: lower-case ASCII letters, digits and `_`.
fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// The dates a demand's tasks count from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DemandDates {
    /// When the tax office sent it (FORMAT.md convention 3), when known.
    pub sent: Option<NaiveDate>,
    /// When the mail reached the firm; always known.
    pub received: NaiveDate,
    /// The deadline written in the document, when there is one.
    pub stated: Option<NaiveDate>,
    /// The date of a summons, when there is one.
    pub appointment: Option<NaiveDate>,
}

impl DemandDates {
    /// The date `from` names, if the demand has it.
    pub fn base(&self, from: DueFrom) -> Option<NaiveDate> {
        match from {
            DueFrom::Sent => self.sent,
            DueFrom::Received => Some(self.received),
            DueFrom::Stated => self.stated,
            DueFrom::Appointment => self.appointment,
        }
    }
}

/// Due date of one task: the date its `from` names plus its working days in `region`'s calendar (0 = that date,
/// moved to the next working day if off).
///
/// `Ok(None)` when the demand lacks the date the task needs (no stated deadline, no appointment, no sent date):
/// nothing is substituted here, because which fallback is right (the demand's own date, the received date, a
/// task without a deadline) is the caller's decision.
pub fn due_date(
    cal: &ProductionCalendar,
    spec: &DemandTaskSpec,
    dates: &DemandDates,
    region: Option<&str>,
) -> Result<Option<NaiveDate>, CalendarError> {
    match dates.base(spec.from) {
        Some(base) => cal
            .add_working_days(base, spec.working_days, region)
            .map(Some),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn calendar() -> ProductionCalendar {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/calendar/production");
        ProductionCalendar::load_dir(&dir).expect("the shipped production calendar loads")
    }

    fn catalog() -> DemandCatalog {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/demands.toml");
        DemandCatalog::load(&path).expect("the shipped demand catalogue loads")
    }

    fn d(s: &str) -> NaiveDate {
        s.parse().expect("test date")
    }

    /// `(step, due)` of every task of `kind` for a demand sent (and received) on `sent`.
    fn dues(kind: &str, sent: &str, region: Option<&str>) -> Vec<(String, NaiveDate)> {
        let (cal, catalog) = (calendar(), catalog());
        let dates = DemandDates {
            sent: Some(d(sent)),
            received: d(sent),
            ..DemandDates::default()
        };
        let kind = catalog.kind(kind).expect("kind exists");
        kind.tasks
            .iter()
            .map(|spec| {
                let due = due_date(&cal, spec, &dates, region)
                    .expect("in range")
                    .expect("has a date");
                (spec.step.clone(), due)
            })
            .collect()
    }

    #[test]
    fn the_shipped_catalogue_has_the_seven_kinds() {
        let catalog = catalog();
        let ids: Vec<&str> = catalog.kinds().map(|kind| kind.id.as_str()).collect();
        let mut expected = vec![
            "documents",
            "counterparty_documents",
            "explanations",
            "payment",
            "summons",
            "freeze",
            "other",
        ];
        expected.sort_unstable();
        assert_eq!(ids, expected);
    }

    #[test]
    fn a_documents_demand_sent_on_3_march_2026_is_acknowledged_on_12_and_answered_on_26_march() {
        assert_eq!(
            dues("documents", "2026-03-03", None),
            vec![
                ("acknowledge".to_owned(), d("2026-03-12")),
                ("answer".to_owned(), d("2026-03-26"))
            ]
        );
    }

    #[test]
    fn an_explanations_demand_sent_on_3_march_2026_is_due_on_12_and_19_march() {
        assert_eq!(
            dues("explanations", "2026-03-03", None),
            vec![
                ("acknowledge".to_owned(), d("2026-03-12")),
                ("answer".to_owned(), d("2026-03-19"))
            ]
        );
    }

    #[test]
    fn fns_own_example_sent_10_march_2025_is_due_1_april_2025() {
        let due = dues("documents", "2025-03-10", None);
        assert_eq!(due[1], ("answer".to_owned(), d("2025-04-01")));
    }

    #[test]
    fn a_demand_sent_16_april_2026_is_acknowledged_24_april_and_answered_after_the_may_holidays() {
        assert_eq!(
            dues("explanations", "2026-04-16", None),
            vec![
                ("acknowledge".to_owned(), d("2026-04-24")),
                ("answer".to_owned(), d("2026-05-04"))
            ]
        );
    }

    #[test]
    fn a_stated_payment_deadline_on_a_day_off_moves_to_the_next_working_day() {
        let (cal, catalog) = (calendar(), catalog());
        let pay = &catalog.kind("payment").expect("payment").tasks[0];
        let dates = DemandDates {
            received: d("2026-03-02"),
            stated: Some(d("2026-03-07")),
            ..DemandDates::default()
        };
        assert_eq!(
            due_date(&cal, pay, &dates, None).expect("in range"),
            Some(d("2026-03-10"))
        );
    }

    #[test]
    fn a_missing_base_date_gives_no_due_date_rather_than_a_guess() {
        let (cal, catalog) = (calendar(), catalog());
        let dates = DemandDates {
            received: d("2026-03-02"),
            ..DemandDates::default()
        };
        for kind in ["documents", "payment", "summons"] {
            let spec = &catalog.kind(kind).expect("kind").tasks[0];
            assert_eq!(
                due_date(&cal, spec, &dates, None).expect("in range"),
                None,
                "{kind}"
            );
        }
    }

    #[test]
    fn a_task_counted_from_receipt_uses_the_received_date() {
        let (cal, catalog) = (calendar(), catalog());
        let review = &catalog.kind("other").expect("other").tasks[0];
        let dates = DemandDates {
            received: d("2026-03-06"),
            ..DemandDates::default()
        };
        // Fri 06.03 + 2 working days: Tue 10.03 (1), Wed 11.03 (2).
        assert_eq!(
            due_date(&cal, review, &dates, None).expect("in range"),
            Some(d("2026-03-11"))
        );
    }

    #[test]
    fn a_regional_holiday_moves_a_demand_deadline_for_a_client_in_that_region() {
        // Sent Fri 13.03.2026: +6 is Mon 23.03 federally; Fri 20.03 is off in Tatarstan, so there it is Tue 24.03.
        assert_eq!(dues("documents", "2026-03-13", None)[0].1, d("2026-03-23"));
        assert_eq!(
            dues("documents", "2026-03-13", Some("16"))[0].1,
            d("2026-03-24")
        );
    }

    #[test]
    fn a_kind_without_tasks_is_rejected() {
        let error = DemandCatalog::from_toml_str(
            "demands.toml",
            "[kinds.x]\ntitle = \"t\"\nlaw = \"l\"\ntasks = []\n",
        )
        .expect_err("no tasks");
        assert!(error.to_string().contains("kinds.x.tasks"), "{error}");
    }

    #[test]
    fn a_repeated_step_is_rejected() {
        let toml = r#"
[kinds.x]
title = "t"
law = "l"
tasks = [
  { step = "a", from = "sent", working_days = 1, title = "t", law = "l" },
  { step = "a", from = "sent", working_days = 2, title = "t", law = "l" },
]
"#;
        let error = DemandCatalog::from_toml_str("demands.toml", toml).expect_err("repeated step");
        assert!(error.to_string().contains("appears twice"), "{error}");
    }

    #[test]
    fn an_unknown_from_is_reported_with_its_line() {
        let toml = "[kinds.x]\ntitle = \"t\"\nlaw = \"l\"\ntasks = [\n  { step = \"a\", from = \"issued\", working_days = 1, title = \"t\", law = \"l\" },\n]\n";
        let error = DemandCatalog::from_toml_str("demands.toml", toml).expect_err("unknown from");
        assert!(error.to_string().starts_with("demands.toml:5:"), "{error}");
        assert!(error.to_string().contains("issued"), "{error}");
    }
}
