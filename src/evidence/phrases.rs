//! Phrases as admins write them in the vocabulary files, compiled once and searched many times.
//!
//! A phrase is lower-case words separated by spaces; `*` at the end of a word stands for any ending
//! (`требовани*` is `требование`, `требования`, `требованию`…), so one line covers the Russian cases. Letter case
//! and `ё`/`е` never matter, any run of white space matches a space, and a phrase matches whole words only:
//! `иск` is not found in `риски`. Everything else (`.`, `(`, digits) is matched as written.
//!
//! Searching returns every place a phrase occurs; where a phrase lies inside a longer phrase's match (`счет` in
//! `счет-фактура`), only the longer one counts, so a specific phrase is never outvoted by the general word it
//! contains.

/// Text as phrases are searched in: lower case, `ё` as `е`, non-breaking spaces as spaces. Offsets of matches refer
/// to this text, never to the original.
pub fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            'ё' | 'Ё' => out.push('е'),
            '\u{a0}' | '\u{2007}' | '\u{202f}' => out.push(' '),
            // Latin and Cyrillic letters, what mail is written in, lowered without the general Unicode tables
            // (which cost more than the rest of a phrase search): the same letters `char::to_lowercase` gives.
            c if c.is_ascii() => out.push(c.to_ascii_lowercase()),
            'а'..='я' => out.push(c),
            'А'..='Я' => out.push(shift(c, 0x20)),
            c => out.extend(c.to_lowercase()),
        }
    }
    out
}

/// The letter `by` code points after `c` (a Cyrillic capital's small letter).
fn shift(c: char, by: u32) -> char {
    char::from_u32(u32::from(c) + by).unwrap_or(c)
}

/// Why a phrase is refused (it would match nothing sensible, or everything).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhraseError {
    #[error("an empty phrase would match every mail")]
    Empty,
    #[error("`*` may only end a word (as in `требовани*`), and a word needs two letters before it: {0:?}")]
    Wildcard(String),
    #[error("the phrases do not compile: {0}")]
    Compile(String),
}

/// One word of a phrase: its letters as written (normalised), and whether `*` lets any ending follow.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Word {
    literal: String,
    open: bool,
}

/// A phrase, compiled: its words. Matching it is a walk along the text — no expression engine, no cache per phrase.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Phrase {
    words: Vec<Word>,
}

/// What a `*` lets follow a word: letters of the scripts mail is written in (text is normalised to lower case with ё
/// as е) and digits. A hyphen ends the word, so `счет*` is not `счет-фактура`.
fn continues_word(c: char) -> bool {
    matches!(c, 'а'..='я' | 'a'..='z' | '0'..='9')
}

impl Phrase {
    fn parse(phrase: &str) -> Result<Phrase, PhraseError> {
        let phrase = normalize(phrase.trim());
        if phrase.is_empty() {
            return Err(PhraseError::Empty);
        }
        let mut words = Vec::new();
        for word in phrase.split_whitespace() {
            let (stem, open) = match word.strip_suffix('*') {
                Some(stem) => (stem, true),
                None => (word, false),
            };
            if stem.contains('*')
                || (open && stem.chars().filter(|c| c.is_alphabetic()).count() < 2)
            {
                return Err(PhraseError::Wildcard(phrase.clone()));
            }
            words.push(Word {
                literal: stem.to_owned(),
                open,
            });
        }
        Ok(Phrase { words })
    }

    /// Where the phrase ends when it starts at the beginning of `text`, if it does: each word's letters, its
    /// ending where `*` allows one, and one or more white-space characters between words.
    fn match_start(&self, text: &str) -> Option<usize> {
        let mut at = 0;
        for (i, w) in self.words.iter().enumerate() {
            if i > 0 {
                let gap = text[at..]
                    .find(|c: char| !matches!(c, ' ' | '\t' | '\r' | '\n'))
                    .unwrap_or(text.len() - at);
                if gap == 0 {
                    return None;
                }
                at += gap;
            }
            if !text[at..].starts_with(w.literal.as_str()) {
                return None;
            }
            at += w.literal.len();
            if w.open {
                at += text[at..]
                    .find(|c: char| !continues_word(c))
                    .unwrap_or(text.len() - at);
            }
        }
        Some(at)
    }
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// `93` followed by `.1` is the start of `93.1`, not the number 93.
fn continues_number(matched: &str, rest: &str) -> bool {
    let mut rest = rest.chars();
    matched.ends_with(|c: char| c.is_ascii_digit())
        && matches!(rest.next(), Some('.' | ','))
        && rest.next().is_some_and(|c| c.is_ascii_digit())
}

/// One place a phrase was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PhraseMatch {
    /// Byte range in the normalised text.
    pub start: usize,
    pub end: usize,
    /// Index of the phrase in the table (as given to [`PhraseTable::new`]).
    pub phrase: usize,
}

/// Compiled phrases. Every phrase starts with a literal (its first word's letters before any `*`); one
/// Aho-Corasick automaton over the first [`AUTOMATON_CHARS`] characters of those literals finds in a single pass where
/// a phrase may start, and a walk along the phrase's words from there (its first word whole) says whether it does. A
/// mail that holds none of a table's first words costs one automaton scan; no regular expression is compiled or run.
///
/// The automaton holds the beginnings of the first words, not the words whole: it is the walk that decides, and an
/// automaton of whole Cyrillic words (two bytes a letter) is a table of 20–390 KB that the scan reads at a cache miss
/// a byte; of three letters, 4–113 KB (the shipped vocabulary's tables).
#[derive(Debug, Clone)]
pub struct PhraseTable {
    /// The distinct beginnings of the first literals.
    starts: aho_corasick::AhoCorasick,
    /// For each beginning of `starts`, the phrases whose first literal begins so (shorter first literal first).
    starting_with: Vec<Vec<usize>>,
    /// Each phrase, matched where its first literal was found.
    phrases: Vec<Phrase>,
    /// As written, for traces and lint messages.
    written: Vec<String>,
}

/// How many characters of each first literal the automaton holds: with two, as many places of the text begin one
/// that their walks cost more than the smaller automaton saves; with four or more, the automaton grows again.
const AUTOMATON_CHARS: usize = 3;

/// The literal a phrase starts with: its first word up to a `*`, normalised.
fn first_literal(phrase: &str) -> String {
    let normal = normalize(phrase.trim());
    let word = normal.split_whitespace().next().unwrap_or_default();
    word.trim_end_matches('*').to_owned()
}

impl PhraseTable {
    /// Compiles `phrases`; the first bad one is the error, with its index.
    pub fn new<S: AsRef<str>>(phrases: &[S]) -> Result<PhraseTable, (usize, PhraseError)> {
        let mut compiled = Vec::with_capacity(phrases.len());
        let mut literals: Vec<String> = Vec::new();
        let mut starting_with: Vec<Vec<(usize, usize)>> = Vec::new();
        for (i, p) in phrases.iter().enumerate() {
            compiled.push(Phrase::parse(p.as_ref()).map_err(|e| (i, e))?);
            let whole = first_literal(p.as_ref());
            let literal: String = whole.chars().take(AUTOMATON_CHARS).collect();
            match literals.iter().position(|l| *l == literal) {
                Some(k) => starting_with[k].push((whole.len(), i)),
                None => {
                    literals.push(literal);
                    starting_with.push(vec![(whole.len(), i)]);
                }
            }
        }
        // In the order the phrases were found in when the automaton held whole first words: shorter first word
        // first, then the table's order. A title that two phrases match is the first one's (`DocumentFinder`).
        let starting_with: Vec<Vec<usize>> = starting_with
            .into_iter()
            .map(|mut list| {
                list.sort_unstable();
                list.into_iter().map(|(_, i)| i).collect()
            })
            .collect();
        let starts = aho_corasick::AhoCorasick::builder()
            .match_kind(aho_corasick::MatchKind::Standard)
            .build(&literals)
            .map_err(|e| (0, PhraseError::Compile(e.to_string())))?;
        Ok(PhraseTable {
            starts,
            starting_with,
            phrases: compiled,
            written: phrases
                .iter()
                .map(|p| p.as_ref().trim().to_owned())
                .collect(),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.phrases.is_empty()
    }

    /// The phrase as written.
    pub fn phrase(&self, index: usize) -> &str {
        self.written.get(index).map_or("", String::as_str)
    }

    /// Every whole-word occurrence of every phrase in `text` (already [`normalize`]d), in text order; a match that
    /// lies inside a longer match of another phrase is left out.
    pub fn find_all(&self, text: &str) -> Vec<PhraseMatch> {
        let mut found = Vec::new();
        for m in self.starts.find_overlapping_iter(text) {
            let start = m.start();
            let before = text[..start].chars().next_back();
            if before.is_some_and(is_word_char) {
                continue;
            }
            let rest = &text[start..];
            for &index in &self.starting_with[m.pattern().as_usize()] {
                let Some(len) = self.phrases[index].match_start(rest) else {
                    continue;
                };
                let end = start + len;
                let matched = &text[start..end];
                let after = text[end..].chars().next();
                let ends_word = (after.is_none_or(|c| !is_word_char(c))
                    && !continues_number(matched, &text[end..]))
                    || matched.ends_with(|c: char| !is_word_char(c));
                if ends_word && !matched.is_empty() {
                    found.push(PhraseMatch {
                        start,
                        end,
                        phrase: index,
                    });
                }
            }
        }
        found.sort_by_key(|m| (m.start, std::cmp::Reverse(m.end)));
        // In start order, a match lies inside a longer kept one exactly when it lies inside the kept match that
        // reaches furthest so far: one sweep, however many matches a long text holds.
        let mut kept: Vec<PhraseMatch> = Vec::with_capacity(found.len());
        let mut furthest: Option<PhraseMatch> = None;
        for m in found {
            let inside =
                furthest.is_some_and(|k| m.end <= k.end && (k.end - k.start) > (m.end - m.start));
            if !inside {
                kept.push(m);
                if furthest.is_none_or(|k| m.end > k.end) {
                    furthest = Some(m);
                }
            }
        }
        kept
    }

    /// The first match in `text` (already normalised), the longest one where several start at the same place.
    pub fn first(&self, text: &str) -> Option<PhraseMatch> {
        self.find_all(text).into_iter().next()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a failed unwrap is a failed test
    use super::*;

    fn found(phrases: &[&str], text: &str) -> Vec<String> {
        let t = PhraseTable::new(phrases).unwrap();
        let text = normalize(text);
        t.find_all(&text)
            .into_iter()
            .map(|m| text[m.start..m.end].to_owned())
            .collect()
    }

    #[test]
    fn a_star_ends_a_word_in_any_case_and_white_space_is_any_run() {
        assert_eq!(
            found(
                &["требовани* о представлени* пояснений"],
                "Поступило ТРЕБОВАНИЯ о\n  представлении пояснений"
            ),
            ["требования о\n  представлении пояснений"]
        );
        assert_eq!(found(&["отчет принят"], "Отчёт принят"), ["отчет принят"]);
    }

    #[test]
    fn phrases_match_whole_words_only() {
        assert!(found(&["иск"], "риски и искра").is_empty());
        assert_eq!(found(&["иск"], "подали иск."), ["иск"]);
        assert!(found(&["счет"], "расчетный").is_empty());
    }

    #[test]
    fn a_phrase_inside_a_longer_match_does_not_count() {
        assert_eq!(
            found(&["счет", "счет-фактур*"], "пришлите счет-фактуру и счет"),
            ["счет-фактуру", "счет"]
        );
    }

    #[test]
    fn empty_phrases_and_stray_stars_are_refused() {
        assert_eq!(
            PhraseTable::new(&["ok", " "]).unwrap_err(),
            (1, PhraseError::Empty)
        );
        assert!(matches!(
            PhraseTable::new(&["a*b"]).unwrap_err(),
            (0, PhraseError::Wildcard(_))
        ));
        assert!(matches!(
            PhraseTable::new(&["*"]).unwrap_err(),
            (0, PhraseError::Wildcard(_))
        ));
    }

    #[test]
    fn normalize_lowers_as_the_unicode_tables_do() {
        let all: String = ('\0'..='\u{52f}').chain(['\u{1e9e}', 'İ', 'Σ']).collect();
        let by_tables: String = all
            .chars()
            .map(|c| match c {
                'ё' | 'Ё' => "е".to_owned(),
                '\u{a0}' => " ".to_owned(),
                c => c.to_lowercase().collect(),
            })
            .collect();
        assert_eq!(normalize(&all), by_tables);
    }

    #[test]
    fn punctuation_and_digits_are_matched_as_written() {
        assert_eq!(
            found(&["ст. 93.1"], "согласно ст. 93.1 НК РФ"),
            ["ст. 93.1"]
        );
        assert!(found(&["ст. 93"], "согласно ст. 93.1 НК РФ").is_empty());
    }
}
