//! The vocabulary files admins edit beside `demands.toml`: `notices.toml` (the documents that need nobody's action
//! — receipts, acceptances, information, decisions that undo — and the words that make a demand's title a mere
//! reference) and `topics.toml` (client-request topics with weighted phrases). Loaded and checked here; a bad file
//! is refused with file:line (TOML errors) or the key and phrase at fault.

use super::phrases::PhraseTable;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Why a vocabulary file is refused. The message names the file, and the line where the TOML parser knows it.
#[derive(Debug, thiserror::Error)]
pub enum VocabularyError {
    #[error("{}: cannot read: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Not valid TOML, or a key or value of the wrong shape.
    #[error("{file}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Parse {
        file: String,
        line: Option<usize>,
        message: String,
    },
    /// Parses, but a phrase, an id or a reference is wrong.
    #[error("{file}: {message}")]
    Invalid { file: String, message: String },
}

impl VocabularyError {
    fn from_toml(file: &str, content: &str, error: &toml::de::Error) -> VocabularyError {
        VocabularyError::Parse {
            file: file.to_owned(),
            line: crate::toml_file::error_line(content, error),
            message: error.message().to_owned(),
        }
    }
}

/// A value written as one string or as a list of strings (`knd = "1166002"` or `knd = ["1166002", "1166007"]`):
/// form codes in `notices.toml` and `demands.toml` alike.
#[derive(Debug, Default, Deserialize)]
#[serde(untagged)]
pub(crate) enum OneOrMany {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub(crate) fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::None => vec![],
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// An id of a kind or topic: lower-case ASCII letters, digits and `_`.
fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// One kind of notice (`[kinds.<id>]` of `notices.toml`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticeKind {
    pub id: String,
    /// What it is, in Russian (shown in traces).
    pub title: String,
    /// Form codes (КНД) of the document, when it has one.
    pub knd: Vec<String>,
    /// How the document names itself.
    pub titles: Vec<String>,
    /// Words that, after a demand's title in the same sentence, make the sentence this notice: "требование …
    /// отозвано", "ответ на требование … доставлен".
    pub follows_demand: Vec<String>,
    /// It undoes or closes a demand (a freeze lifted, a demand withdrawn): it names the case it belongs to.
    pub closes: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNoticeKind {
    title: String,
    #[serde(default)]
    knd: OneOrMany,
    #[serde(default)]
    titles: Vec<String>,
    #[serde(default)]
    follows_demand: Vec<String>,
    #[serde(default)]
    closes: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvidence {
    mention_markers: Vec<String>,
    #[serde(default)]
    numbered_demand_titles: Vec<String>,
    #[serde(default)]
    duty_markers: Vec<String>,
    #[serde(default)]
    checklist_intro: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNotices {
    evidence: RawEvidence,
    kinds: BTreeMap<String, RawNoticeKind>,
    #[serde(default)]
    proves: BTreeMap<String, Vec<String>>,
}

/// `notices.toml`, checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NoticeCatalog {
    /// Words that, right before a document's title, make it a reference to another document.
    pub mention_markers: Vec<String>,
    /// Titles that name a demand of no particular kind, counted only with a number right after them
    /// ("Требование № 1234").
    pub numbered_demand_titles: Vec<String>,
    /// Words that, after a notice's title in the same sentence, say it is still to be done ("квитанция о приеме не
    /// отправлена", "… будет отправлена", "отправьте квитанцию"): a duty about another document, not this one.
    pub duty_markers: Vec<String>,
    /// Phrases of a demand's body after which it lists what it asks for (its checklist).
    pub checklist_intro: Vec<String>,
    pub kinds: Vec<NoticeKind>,
    /// What a receipt or an acceptance proves done in the demand's case it names: step id (`acknowledge`,
    /// `answer`) → the phrases that say so ("квитанция о приеме требования … отправлена", "ответ … доставлен").
    pub proves: BTreeMap<String, Vec<String>>,
}

fn invalid(file: &str, message: String) -> VocabularyError {
    VocabularyError::Invalid {
        file: file.to_owned(),
        message,
    }
}

fn read(path: &Path) -> Result<String, VocabularyError> {
    std::fs::read_to_string(path).map_err(|source| VocabularyError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Every phrase of `list` compiles; the error names `at` and the phrase.
fn check_phrases(file: &str, at: &str, list: &[String]) -> Result<(), VocabularyError> {
    PhraseTable::new(list)
        .map(|_| ())
        .map_err(|(i, e)| invalid(file, format!("{at}[{i}] {:?}: {e}", list[i])))
}

impl NoticeCatalog {
    pub fn load(path: &Path) -> Result<NoticeCatalog, VocabularyError> {
        NoticeCatalog::from_toml_str(&path.display().to_string(), &read(path)?)
    }

    pub fn from_toml_str(name: &str, content: &str) -> Result<NoticeCatalog, VocabularyError> {
        let raw: RawNotices =
            toml::from_str(content).map_err(|e| VocabularyError::from_toml(name, content, &e))?;
        check_phrases(
            name,
            "evidence.mention_markers",
            &raw.evidence.mention_markers,
        )?;
        check_phrases(
            name,
            "evidence.numbered_demand_titles",
            &raw.evidence.numbered_demand_titles,
        )?;
        check_phrases(name, "evidence.duty_markers", &raw.evidence.duty_markers)?;
        check_phrases(
            name,
            "evidence.checklist_intro",
            &raw.evidence.checklist_intro,
        )?;
        let mut kinds = Vec::with_capacity(raw.kinds.len());
        for (id, k) in raw.kinds {
            let at = format!("kinds.{id}");
            if !is_identifier(&id) {
                return Err(invalid(
                    name,
                    format!("{at}: a kind id is lower-case ASCII letters, digits and `_`"),
                ));
            }
            if k.title.trim().is_empty() {
                return Err(invalid(name, format!("{at}.title: must not be empty")));
            }
            check_phrases(name, &format!("{at}.titles"), &k.titles)?;
            check_phrases(name, &format!("{at}.follows_demand"), &k.follows_demand)?;
            let knd = k.knd.into_vec();
            if knd.iter().any(|x| x.trim().is_empty()) {
                return Err(invalid(
                    name,
                    format!("{at}.knd: empty; leave the key out instead"),
                ));
            }
            if k.titles.is_empty() && knd.is_empty() && k.follows_demand.is_empty() {
                return Err(invalid(
                    name,
                    format!("{at}: a notice kind needs `titles`, `knd` or `follows_demand` to be recognised by"),
                ));
            }
            kinds.push(NoticeKind {
                id,
                title: k.title,
                knd,
                titles: k.titles,
                follows_demand: k.follows_demand,
                closes: k.closes,
            });
        }
        for (step, phrases) in &raw.proves {
            if !is_identifier(step) {
                return Err(invalid(
                    name,
                    format!("proves.{step}: a step id is lower-case ASCII letters, digits and `_`"),
                ));
            }
            check_phrases(name, &format!("proves.{step}"), phrases)?;
        }
        Ok(NoticeCatalog {
            proves: raw.proves,
            mention_markers: raw.evidence.mention_markers,
            numbered_demand_titles: raw.evidence.numbered_demand_titles,
            duty_markers: raw.evidence.duty_markers,
            checklist_intro: raw.evidence.checklist_intro,
            kinds,
        })
    }
}

/// One client-request topic of `topics.toml`.
#[derive(Debug, Clone, PartialEq)]
pub struct Topic {
    pub id: String,
    /// The role that works it (`accountant`, `payroll`, `hr`, `lawyer`, `manager`).
    pub role: String,
    /// Phrase → weight.
    pub phrases: Vec<(String, f64)>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTopic {
    role: String,
    phrases: BTreeMap<String, f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScoring {
    subject_weight: f64,
    reply_subject_weight: f64,
    forwarded_weight: f64,
    min_score: f64,
    fallback: String,
    tie_order: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTopics {
    scoring: RawScoring,
    topics: BTreeMap<String, RawTopic>,
}

/// `topics.toml`, checked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TopicCatalog {
    /// A phrase found in the subject counts this many times its weight.
    pub subject_weight: f64,
    /// … and this many times in a reply's subject, which names the thread rather than the new question.
    pub reply_subject_weight: f64,
    /// A phrase found in what a forward passes on (not the writer's own words) counts this share of its weight.
    pub forwarded_weight: f64,
    /// Below this best score the topic is `fallback`.
    pub min_score: f64,
    pub fallback: String,
    /// Topics in this order win a tie.
    pub tie_order: Vec<String>,
    pub topics: Vec<Topic>,
}

/// The roles a topic may name (`directory::Role`).
const ROLES: [&str; 5] = ["accountant", "payroll", "hr", "lawyer", "manager"];

impl TopicCatalog {
    pub fn load(path: &Path) -> Result<TopicCatalog, VocabularyError> {
        TopicCatalog::from_toml_str(&path.display().to_string(), &read(path)?)
    }

    pub fn from_toml_str(name: &str, content: &str) -> Result<TopicCatalog, VocabularyError> {
        let raw: RawTopics =
            toml::from_str(content).map_err(|e| VocabularyError::from_toml(name, content, &e))?;
        let s = raw.scoring;
        for (key, v) in [
            ("subject_weight", s.subject_weight),
            ("reply_subject_weight", s.reply_subject_weight),
            ("forwarded_weight", s.forwarded_weight),
            ("min_score", s.min_score),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(invalid(
                    name,
                    format!("scoring.{key}: must be a number ≥ 0"),
                ));
            }
        }
        let mut topics = Vec::with_capacity(raw.topics.len());
        for (id, t) in raw.topics {
            let at = format!("topics.{id}");
            if !is_identifier(&id) {
                return Err(invalid(
                    name,
                    format!("{at}: a topic id is lower-case ASCII letters, digits and `_`"),
                ));
            }
            if !ROLES.contains(&t.role.as_str()) {
                return Err(invalid(
                    name,
                    format!("{at}.role: {:?} is not one of {}", t.role, ROLES.join(", ")),
                ));
            }
            let phrases: Vec<(String, f64)> = t.phrases.into_iter().collect();
            for (p, w) in &phrases {
                if !(w.is_finite() && *w > 0.0) {
                    return Err(invalid(
                        name,
                        format!("{at}.phrases.{p:?}: the weight must be a number > 0"),
                    ));
                }
            }
            let list: Vec<String> = phrases.iter().map(|(p, _)| p.clone()).collect();
            check_phrases(name, &format!("{at}.phrases"), &list)?;
            topics.push(Topic {
                id,
                role: t.role,
                phrases,
            });
        }
        let known = |id: &str| topics.iter().any(|t| t.id == id);
        if !known(&s.fallback) {
            return Err(invalid(
                name,
                format!(
                    "scoring.fallback: {:?} is not a topic of this file",
                    s.fallback
                ),
            ));
        }
        if let Some(t) = s.tie_order.iter().find(|t| !known(t)) {
            return Err(invalid(
                name,
                format!("scoring.tie_order: {t:?} is not a topic of this file"),
            ));
        }
        Ok(TopicCatalog {
            subject_weight: s.subject_weight,
            reply_subject_weight: s.reply_subject_weight,
            forwarded_weight: s.forwarded_weight,
            min_score: s.min_score,
            fallback: s.fallback,
            tie_order: s.tie_order,
            topics,
        })
    }
}
