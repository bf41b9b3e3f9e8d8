//! The topic of a client's request, by score rather than by the first pattern that matches.
//!
//! Every phrase of `topics.toml` found adds its weight to its topic: once per place it occurs in — the subject
//! (times `subject_weight`: clients name what they want there), the writer's own words, and what a forward passes
//! on (times `forwarded_weight`). A reply's quoted history adds nothing: it is what was asked before. The best score
//! wins; a tie goes to the topic listed first in `tie_order`; below `min_score` the topic is the `fallback`.

use super::catalog::TopicCatalog;
use super::phrases::{normalize, PhraseTable};
use serde::Serialize;

/// One topic's score, with the phrases that made it (for the decision trace).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopicScore {
    pub topic: String,
    pub score: f64,
    pub phrases: Vec<String>,
}

/// `topics.toml`, compiled.
#[derive(Debug, Clone)]
pub struct TopicScorer {
    catalog: TopicCatalog,
    table: PhraseTable,
    /// For each phrase of `table`: its topic (index into `catalog.topics`) and weight.
    owner: Vec<(usize, f64)>,
}

impl TopicScorer {
    /// Compiles the catalogue (whose phrases [`TopicCatalog::from_toml_str`] already checked).
    pub fn new(catalog: TopicCatalog) -> Result<TopicScorer, String> {
        let mut phrases = Vec::new();
        let mut owner = Vec::new();
        for (i, t) in catalog.topics.iter().enumerate() {
            for (p, w) in &t.phrases {
                phrases.push(p.clone());
                owner.push((i, *w));
            }
        }
        let table = PhraseTable::new(&phrases)
            .map_err(|(i, e)| format!("topics.toml phrase {:?}: {e}", phrases[i]))?;
        Ok(TopicScorer {
            catalog,
            table,
            owner,
        })
    }

    pub fn catalog(&self) -> &TopicCatalog {
        &self.catalog
    }

    /// The role that works `topic`, if it is a topic of the file.
    pub fn role(&self, topic: &str) -> Option<&str> {
        self.catalog
            .topics
            .iter()
            .find(|t| t.id == topic)
            .map(|t| t.role.as_str())
    }

    /// Every topic with a score above zero, best first.
    pub fn scores(
        &self,
        subject: &str,
        own: &str,
        forwarded: &str,
        is_reply: bool,
    ) -> Vec<TopicScore> {
        let mut total = vec![0.0_f64; self.catalog.topics.len()];
        let mut hits: Vec<Vec<String>> = vec![Vec::new(); self.catalog.topics.len()];
        let places = [
            (
                subject,
                if is_reply {
                    self.catalog.reply_subject_weight
                } else {
                    self.catalog.subject_weight
                },
            ),
            (own, 1.0),
            (forwarded, self.catalog.forwarded_weight),
        ];
        for (text, factor) in places {
            if text.trim().is_empty() || factor == 0.0 {
                continue;
            }
            // The request is in the first lines; a pasted directory below would only cost time.
            let text = normalize(super::head(text, super::EVIDENCE_TEXT_BYTES / 4));
            let mut seen = std::collections::BTreeSet::new();
            for m in self.table.find_all(&text) {
                if !seen.insert(m.phrase) {
                    continue;
                }
                let (topic, weight) = self.owner[m.phrase];
                total[topic] += weight * factor;
                let phrase = self.table.phrase(m.phrase).to_owned();
                if !hits[topic].contains(&phrase) {
                    hits[topic].push(phrase);
                }
            }
        }
        let rank = |id: &str| {
            self.catalog
                .tie_order
                .iter()
                .position(|t| t == id)
                .unwrap_or(usize::MAX)
        };
        let mut out: Vec<TopicScore> = self
            .catalog
            .topics
            .iter()
            .zip(total)
            .zip(hits)
            .filter(|((_, s), _)| *s > 0.0)
            .map(|((t, score), phrases)| TopicScore {
                topic: t.id.clone(),
                score,
                phrases,
            })
            .collect();
        out.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then_with(|| rank(&a.topic).cmp(&rank(&b.topic)))
        });
        out
    }

    /// The topic of a request: the best score, or the fallback when nothing reaches `min_score`.
    pub fn best(&self, subject: &str, own: &str, forwarded: &str, is_reply: bool) -> String {
        match self.scores(subject, own, forwarded, is_reply).first() {
            Some(s) if s.score >= self.catalog.min_score => s.topic.clone(),
            _ => self.catalog.fallback.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a failed unwrap is a failed test
    use super::*;

    fn scorer() -> TopicScorer {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/topics.toml");
        TopicScorer::new(TopicCatalog::load(&path).unwrap()).unwrap()
    }

    #[test]
    fn the_subject_outweighs_a_word_in_the_body() {
        let s = scorer();
        assert_eq!(
            s.best(
                "Больничный сотрудника",
                "приложили счет от клиники",
                "",
                false
            ),
            "payroll"
        );
    }

    #[test]
    fn quoted_history_is_not_scored_and_nothing_found_is_the_fallback() {
        let s = scorer();
        assert_eq!(s.best("", "Добрый день, как дела?", "", false), "other");
    }

    #[test]
    fn hiring_is_hr_and_a_contract_dispute_is_legal() {
        let s = scorer();
        assert_eq!(
            s.best(
                "Новый сотрудник",
                "Оформите, пожалуйста, прием на работу с 1 числа",
                "",
                false
            ),
            "hr"
        );
        assert_eq!(
            s.best(
                "Претензия от поставщика",
                "Прислали претензию по договору поставки",
                "",
                false
            ),
            "legal"
        );
    }
}
