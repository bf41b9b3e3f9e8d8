//! What a mail *is*, from what it says about itself: the document it carries (its official XML, its subject, its
//! attachments' names, its own title line, the number and date written with it), which part of its text is new
//! and which is quoted history, and — for a client's request — its topic by weighted phrases.
//!
//! The vocabulary is data admins edit (`rules/demands.toml` titles and form codes, `rules/notices.toml`,
//! `rules/topics.toml`); this module compiles it once per load and assesses every mail before the rules run. The
//! rules read the result as `mail.document`, `mail.own_text`, `mail.new_text`, `mail.quoted_text` and
//! `request_topic(mail)`; the pipeline reads it for its safety net (a mail whose own document is a concrete demand
//! never ends without a person looking at it, whatever the rules decided). Pure: no I/O after loading.

pub mod catalog;
pub mod checklist;
pub mod document;
pub mod phrases;
pub mod sections;
pub mod topics;

pub use catalog::{NoticeCatalog, TopicCatalog, VocabularyError};
pub use document::{Class, DemandTitles, Document, DocumentFinder, Source};
pub use sections::Sections;
pub use topics::{TopicScore, TopicScorer};

use crate::mail::{Facts, ParsedMail};
use phrases::PhraseTable;
use std::path::Path;

/// The files of a rules folder this module reads, besides `demands.toml`.
pub const FILES: [&str; 2] = ["notices.toml", "topics.toml"];

/// Everything the assessment needs, compiled.
#[derive(Debug, Clone)]
pub struct Vocabulary {
    pub documents: DocumentFinder,
    pub topics: TopicScorer,
    pub notices: NoticeCatalog,
    /// `notices.toml` `proves`, compiled: step → its phrases.
    proofs: Vec<(String, PhraseTable)>,
    /// `checklist_intro`, compiled.
    checklist_intro: PhraseTable,
}

impl Vocabulary {
    /// Compiles the vocabulary; `demands` provides the demands' titles and form codes.
    pub fn new(
        demands: &[DemandTitles],
        notices: NoticeCatalog,
        topics: TopicCatalog,
    ) -> Result<Vocabulary, VocabularyError> {
        let documents =
            DocumentFinder::new(demands, &notices).map_err(|e| VocabularyError::Invalid {
                file: "demands.toml / notices.toml".into(),
                message: e.to_string(),
            })?;
        let topics = TopicScorer::new(topics).map_err(|message| VocabularyError::Invalid {
            file: "topics.toml".into(),
            message,
        })?;
        let proofs = notices
            .proves
            .iter()
            .map(|(step, phrases)| {
                PhraseTable::new(phrases)
                    .map(|table| (step.clone(), table))
                    .map_err(|(i, e)| VocabularyError::Invalid {
                        file: "notices.toml".into(),
                        message: format!("proves.{step}[{i}] {:?}: {e}", phrases[i]),
                    })
            })
            .collect::<Result<_, _>>()?;
        let checklist_intro = PhraseTable::new(&notices.checklist_intro).map_err(|(i, e)| {
            VocabularyError::Invalid {
                file: "notices.toml".into(),
                message: format!(
                    "evidence.checklist_intro[{i}] {:?}: {e}",
                    notices.checklist_intro[i]
                ),
            }
        })?;
        Ok(Vocabulary {
            documents,
            topics,
            notices,
            proofs,
            checklist_intro,
        })
    }

    /// The steps of a demand's case that `texts` (a receipt's subject and own words) say are done, in
    /// `notices.toml` order (`proves`).
    pub fn proves(&self, texts: &[&str]) -> Vec<String> {
        let texts: Vec<String> = texts.iter().map(|t| phrases::normalize(t)).collect();
        self.proofs
            .iter()
            .filter(|(_, table)| texts.iter().any(|t| table.first(t).is_some()))
            .map(|(step, _)| step.clone())
            .collect()
    }

    /// Whether notices of `kind` undo or close a demand (`closes = true` in `notices.toml`).
    pub fn closes(&self, kind: &str) -> bool {
        self.notices.kinds.iter().any(|k| k.id == kind && k.closes)
    }

    /// Reads `notices.toml` and `topics.toml` of `rules_dir` and compiles them with `demands`.
    pub fn load(rules_dir: &Path, demands: &[DemandTitles]) -> Result<Vocabulary, VocabularyError> {
        let notices = NoticeCatalog::load(&rules_dir.join("notices.toml"))?;
        let topics = TopicCatalog::load(&rules_dir.join("topics.toml"))?;
        Vocabulary::new(demands, notices, topics)
    }
}

/// What one mail says about itself.
#[derive(Debug, Clone, Default)]
pub struct Evidence {
    pub sections: Sections,
    /// The mail's own document, when it names one.
    pub document: Option<Document>,
    /// What the mail's new text lists after a demand's "представить следующие документы:" ([`checklist`]).
    pub checklist: Vec<String>,
}

impl Evidence {
    /// The demand the mail itself carries, when the evidence says so firmly: the official XML, or a demand's title
    /// of a named kind with its number as the mail's own document. The pipeline's safety net acts on this. A title
    /// that does not say its kind ("пришло требование № 123"), or one with a date alone (a webinar's announcement
    /// of "требования об уплате" on 22 October), is not firm enough on its own: newsletters and clients' questions
    /// write so.
    pub fn demand(&self) -> Option<&Document> {
        self.document.as_ref().filter(|d| {
            d.class == Class::Demand
                && (d.source == Source::Xml || (d.number.is_some() && d.kind.is_some()))
        })
    }
}

/// How much of a mail's new text is searched for the document it carries. A document names itself at its top (an
/// operator's alert, a form's title, a client's note over a forward); a mail that pastes a whole directory below
/// would otherwise cost a search of a megabyte for nothing.
pub const EVIDENCE_TEXT_BYTES: usize = 64 * 1024;

/// The first `max` bytes of `s`, cut at a character boundary.
pub fn head(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Assesses one parsed mail.
pub fn assess(vocabulary: &Vocabulary, mail: &ParsedMail, facts: &Facts) -> Evidence {
    let is_reply = mail.is_reply();
    let sections = sections::split(&mail.text, is_reply);
    // An auto-reply's subject is the subject of the mail it answers: no evidence of what the auto-reply is.
    let subject_is_history = is_reply || mail.is_auto_reply();
    let names: Vec<&str> = mail
        .attachments
        .iter()
        .map(|a| a.name.as_str())
        .filter(|n| !n.is_empty())
        .collect();
    let new_content = sections.new_content();
    let new_text = head(&new_content, EVIDENCE_TEXT_BYTES);
    // Normalised once: the document finder and the checklist search the same text.
    let normalized = phrases::normalize(new_text);
    let document = vocabulary.documents.find(
        facts.demand.as_ref(),
        &mail.subject,
        &names,
        &normalized,
        subject_is_history,
    );
    let checklist = checklist::extract(&vocabulary.checklist_intro, new_text, &normalized);
    Evidence {
        sections,
        document,
        checklist,
    }
}
