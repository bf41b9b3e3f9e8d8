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

use regex::{Regex, RegexSet, RegexSetBuilder};

/// Text as phrases are searched in: lower case, `ё` as `е`, non-breaking spaces as spaces. Offsets of matches refer
/// to this text, never to the original.
pub fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            'ё' | 'Ё' => out.push('е'),
            '\u{a0}' | '\u{2007}' | '\u{202f}' => out.push(' '),
            c => out.extend(c.to_lowercase()),
        }
    }
    out
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

/// The regular expression of one phrase (without the word-boundary checks, which are done by hand: the regex crate
/// has no look-around, and consuming a boundary character would hide an adjacent match).
fn pattern(phrase: &str) -> Result<String, PhraseError> {
    let phrase = normalize(phrase.trim());
    if phrase.is_empty() {
        return Err(PhraseError::Empty);
    }
    let mut out = String::new();
    for (i, word) in phrase.split_whitespace().enumerate() {
        if i > 0 {
            out.push_str(r"[ \t\r\n]+");
        }
        let (stem, open) = match word.strip_suffix('*') {
            Some(stem) => (stem, true),
            None => (word, false),
        };
        if stem.contains('*') || (open && stem.chars().filter(|c| c.is_alphabetic()).count() < 2) {
            return Err(PhraseError::Wildcard(phrase.clone()));
        }
        out.push_str(&regex::escape(stem));
        if open {
            // Text is normalised to lower case with ё as е; a class of the scripts mail is written in keeps the
            // compiled set small (a Unicode `\p{L}` per phrase would weigh megabytes).
            out.push_str(r"[а-яa-z0-9]*");
        }
    }
    Ok(out)
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

/// Compiled phrases. Each is its own regular expression; a [`RegexSet`] over all of them says in one pass which
/// ones occur at all, so a mail that holds none of a table's phrases costs one scan.
#[derive(Debug, Clone)]
pub struct PhraseTable {
    set: RegexSet,
    each: Vec<Regex>,
    /// As written, for traces and lint messages.
    written: Vec<String>,
}

/// Largest compiled size of one table: phrases are short words, so this is far above any real table and only
/// bounds a pathological one.
const SIZE_LIMIT: usize = 8 << 20;

impl PhraseTable {
    /// Compiles `phrases`; the first bad one is the error, with its index.
    pub fn new<S: AsRef<str>>(phrases: &[S]) -> Result<PhraseTable, (usize, PhraseError)> {
        let mut patterns = Vec::with_capacity(phrases.len());
        for (i, p) in phrases.iter().enumerate() {
            patterns.push(pattern(p.as_ref()).map_err(|e| (i, e))?);
        }
        // Patterns built from escaped words and fixed classes always compile within the limit; an error here would
        // be a bug in `pattern`, reported against the first phrase rather than panicking.
        let set = RegexSetBuilder::new(&patterns)
            .size_limit(SIZE_LIMIT)
            .build()
            .map_err(|e| (0, PhraseError::Compile(e.to_string())))?;
        let each = patterns
            .iter()
            .enumerate()
            .map(|(i, p)| Regex::new(p).map_err(|e| (i, PhraseError::Compile(e.to_string()))))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(PhraseTable {
            set,
            each,
            written: phrases
                .iter()
                .map(|p| p.as_ref().trim().to_owned())
                .collect(),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.each.is_empty()
    }

    /// The phrase as written.
    pub fn phrase(&self, index: usize) -> &str {
        self.written.get(index).map_or("", String::as_str)
    }

    /// Every whole-word occurrence of every phrase in `text` (already [`normalize`]d), in text order; a match that
    /// lies inside a longer match of another phrase is left out.
    pub fn find_all(&self, text: &str) -> Vec<PhraseMatch> {
        let mut found = Vec::new();
        for index in self.set.matches(text).iter() {
            let re = &self.each[index];
            let mut at = 0;
            while let Some(m) = re.find_at(text, at) {
                let before = text[..m.start()].chars().next_back();
                let after = text[m.end()..].chars().next();
                let starts_word = before.map_or(true, |c| !is_word_char(c));
                let ends_word = (after.map_or(true, |c| !is_word_char(c))
                    && !continues_number(m.as_str(), &text[m.end()..]))
                    || m.as_str().ends_with(|c: char| !is_word_char(c));
                if starts_word && ends_word && !m.as_str().is_empty() {
                    found.push(PhraseMatch {
                        start: m.start(),
                        end: m.end(),
                        phrase: index,
                    });
                    at = m.end();
                } else {
                    // Try again one character further: a later, properly bounded match may overlap this one.
                    at = m.start() + text[m.start()..].chars().next().map_or(1, char::len_utf8);
                }
                if at >= text.len() {
                    break;
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
                if furthest.map_or(true, |k| m.end > k.end) {
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
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
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
    fn punctuation_and_digits_are_matched_as_written() {
        assert_eq!(
            found(&["ст. 93.1"], "согласно ст. 93.1 НК РФ"),
            ["ст. 93.1"]
        );
        assert!(found(&["ст. 93"], "согласно ст. 93.1 НК РФ").is_empty());
    }
}
