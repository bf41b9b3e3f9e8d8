//! Which document a mail carries, decided from what the mail says about itself — never from which rule runs first.
//!
//! The evidence, strongest first:
//! 1. the official FNS envelope attached (`ON_DOCNPNO…`): its `КНД_Док` names the enclosed form (`knd` of a kind in
//!    `demands.toml` or `notices.toml`);
//! 2. the subject (for a forward too, since it carries the original's; not for a reply, whose subject is the
//!    thread's);
//! 3. the names of attached files ("Требование о представлении пояснений №4471 от 03.07.2026.pdf");
//! 4. the new text: the writer's own words and what a forward passes on, never a reply's quoted history.
//!
//! Within one of them the document named first is the mail's own: a receipt says "квитанция о приеме требования
//! № …" (receipt first), an operator's alert says "поступило требование № … ; квитанция о приеме будет отправлена"
//! (demand first). A title right after a mention marker (`notices.toml` `evidence.mention_markers`: "ответ на",
//! "во исполнение", "неисполнени*" …) or after a notice's title in the same sentence is a reference to another
//! document, not the mail's own; a demand's title followed in its sentence by a notice kind's `follows_demand`
//! words ("требование № … отозвано") is that notice. A demand's title with a number or a date next to it is
//! *concrete*: a real document, not talk about demands.

use super::catalog::NoticeCatalog;
use super::phrases::{normalize, PhraseTable};
use crate::mail::XmlDemand;
use chrono::NaiveDate;
use regex::Regex;
use serde::Serialize;
use std::sync::LazyLock;

/// Demand or notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// A document of the tax office that needs a person (`demands.toml`).
    Demand,
    /// A document that needs nobody (`notices.toml`).
    Notice,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Demand => "demand",
            Class::Notice => "notice",
        }
    }
}

/// Where the evidence was found, strongest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Xml,
    Subject,
    Attachment,
    Text,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Xml => "xml",
            Source::Subject => "subject",
            Source::Attachment => "attachment",
            Source::Text => "text",
        }
    }
}

/// The mail's own document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Document {
    pub class: Class,
    /// The kind (`demands.toml` or `notices.toml`); `None` for a demand whose title does not say its kind
    /// ("Требование № 1234", an envelope with an unknown form code).
    pub kind: Option<String>,
    pub source: Source,
    /// The title as the mail writes it (lower case), or `КНД …` for the envelope.
    pub title: String,
    /// The number written with the title (or the envelope's), when there is one.
    pub number: Option<String>,
    /// The date written with the title (or the envelope's), when there is one.
    pub date: Option<NaiveDate>,
    /// A number or date stands with the title, or it comes from the envelope: a real document, not talk.
    pub concrete: bool,
    /// The number stands right at the title ("РЕШЕНИЕ № 2290 / о приостановлении", "… пояснений № 4410"), not
    /// somewhere in the sentence after it, where it may be another document's (the demand a freeze cites).
    #[serde(skip)]
    pub tight: bool,
}

/// What a title stands for.
#[derive(Debug, Clone)]
struct Title {
    class: Class,
    kind: Option<String>,
}

/// One title found in a text: `start..end` its words, `facts_from` where its number and date are looked for,
/// `owner` what it stands for (an index into `DocumentFinder::owners`).
#[derive(Debug, Clone, Copy)]
struct Candidate {
    start: usize,
    end: usize,
    facts_from: usize,
    owner: usize,
}

/// How far after a head word's number (and date) its complement may start, in bytes: "№ 7710 / от 03.03.2026 /
/// о представлении пояснений" across two line breaks.
const TAIL_GAP: usize = 24;

/// How many bytes of words may stand between a head word and its complement: "решение налогового органа о
/// приостановлении", "требование межрайонной инспекции о представлении" (three Cyrillic words).
const FILLER_GAP: usize = 64;

/// What may stand between a head (or its number) and the complement: white space after a number; after a bare head,
/// at most three words and no punctuation, so that a sentence's other noun is never taken for the complement.
fn is_filler(gap: &str, numbered: bool) -> bool {
    if numbered {
        return gap.len() <= TAIL_GAP && gap.trim().is_empty();
    }
    gap.len() <= FILLER_GAP
        && gap.split_whitespace().count() <= 3
        && gap
            .chars()
            .all(|c| c.is_alphabetic() || c == ' ' || c == '№' || c.is_ascii_digit())
}

/// The compiled title vocabulary of `demands.toml` and `notices.toml`.
#[derive(Debug, Clone)]
pub struct DocumentFinder {
    /// Whole titles; phrase `i` stands for `owners[i]`.
    titles: PhraseTable,
    owners: Vec<Title>,
    /// The first words of titles ("требовани*", "уведомлени*", "решени*"), for forms that put the number after
    /// the head word; and the rest of each title ("о представлени* пояснений"), with the title it completes.
    heads: PhraseTable,
    tails: PhraseTable,
    tail_owner: Vec<usize>,
    tail_head: Vec<usize>,
    /// For each head: the owner a numbered head stands for without a complement (`numbered_demand_titles`).
    numbered_generic: Vec<Option<usize>>,
    markers: PhraseTable,
    duties: PhraseTable,
    follows: PhraseTable,
    follows_kind: Vec<String>,
    /// Form code → (class, kind).
    knd: Vec<(String, Class, String)>,
    /// Refinements: base kind → (refined kind, its phrases, normalised).
    refinements: Vec<(String, String, Vec<String>)>,
}

/// A phrase list that does not compile, with where it comes from.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{at}: {message}")]
pub struct TitleError {
    pub at: String,
    pub message: String,
}

fn table(at: &str, list: &[String]) -> Result<PhraseTable, TitleError> {
    PhraseTable::new(list).map_err(|(i, e)| TitleError {
        at: format!("{at}[{i}]"),
        message: format!("{:?}: {e}", list.get(i).map_or("", String::as_str)),
    })
}

/// What the finder needs of a demand kind of `demands.toml` (the catalogue itself belongs to the deadlines; the
/// caller hands its titles over).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DemandTitles {
    pub id: String,
    /// How the document names itself.
    pub titles: Vec<String>,
    /// Its form codes.
    pub knd: Vec<String>,
    /// The kind it refines (`counterparty_documents` refines `documents`).
    pub refines: Option<String>,
    /// Its `recognise` and `informal` phrases: what tells a refinement from its base.
    pub phrases: Vec<String>,
}

impl DocumentFinder {
    pub fn new(
        demands: &[DemandTitles],
        notices: &NoticeCatalog,
    ) -> Result<DocumentFinder, TitleError> {
        let mut phrases: Vec<String> = Vec::new();
        let mut owners = Vec::new();
        let mut knd = Vec::new();
        let mut refinements = Vec::new();
        for k in demands {
            // A refining kind shares its base's title and form; the base's title is found, then refined.
            if let Some(base) = &k.refines {
                refinements.push((
                    base.clone(),
                    k.id.clone(),
                    k.phrases
                        .iter()
                        .map(|p| normalize(p.trim()))
                        .filter(|p| !p.is_empty())
                        .collect(),
                ));
                continue;
            }
            for t in &k.titles {
                phrases.push(t.clone());
                owners.push(Title {
                    class: Class::Demand,
                    kind: Some(k.id.clone()),
                });
            }
            for code in &k.knd {
                knd.push((code.trim().to_owned(), Class::Demand, k.id.clone()));
            }
        }
        let mut follows = Vec::new();
        let mut follows_kind = Vec::new();
        for k in &notices.kinds {
            for t in &k.titles {
                phrases.push(t.clone());
                owners.push(Title {
                    class: Class::Notice,
                    kind: Some(k.id.clone()),
                });
            }
            for f in &k.follows_demand {
                follows.push(f.clone());
                follows_kind.push(k.id.clone());
            }
            for code in &k.knd {
                knd.push((code.trim().to_owned(), Class::Notice, k.id.clone()));
            }
        }
        // Heads and tails of every title of two words or more.
        let mut heads: Vec<String> = Vec::new();
        let mut tails = Vec::new();
        let mut tail_owner = Vec::new();
        let mut tail_head = Vec::new();
        for (owner, title) in phrases.iter().enumerate() {
            let normal = normalize(title);
            let mut words = normal.split_whitespace();
            let (Some(head), rest) = (words.next(), words.collect::<Vec<_>>().join(" ")) else {
                continue;
            };
            if rest.is_empty() {
                continue;
            }
            let h = match heads.iter().position(|x| x == head) {
                Some(h) => h,
                None => {
                    heads.push(head.to_owned());
                    heads.len() - 1
                }
            };
            tails.push(rest);
            tail_owner.push(owner);
            tail_head.push(h);
        }
        let generic = owners.len();
        owners.push(Title {
            class: Class::Demand,
            kind: None,
        });
        let mut numbered_generic = vec![None; heads.len()];
        for t in &notices.numbered_demand_titles {
            let t = normalize(t.trim());
            match heads.iter().position(|x| *x == t) {
                Some(h) => numbered_generic[h] = Some(generic),
                None => {
                    heads.push(t);
                    numbered_generic.push(Some(generic));
                }
            }
        }
        Ok(DocumentFinder {
            titles: table("titles", &phrases)?,
            owners,
            heads: table("title heads", &heads)?,
            tails: table("title tails", &tails)?,
            tail_owner,
            tail_head,
            numbered_generic,
            markers: table(
                "notices.toml evidence.mention_markers",
                &notices.mention_markers,
            )?,
            duties: table("notices.toml evidence.duty_markers", &notices.duty_markers)?,
            follows: table("notices.toml follows_demand", &follows)?,
            follows_kind,
            knd,
            refinements,
        })
    }

    /// The mail's own document, from its envelope, subject (unless `is_reply`), attachment names (as written) and new
    /// text, given [`normalize`]d: the assessment normalises it once for the finder and the checklist.
    pub fn find(
        &self,
        xml: Option<&XmlDemand>,
        subject: &str,
        attachment_names: &[&str],
        text: &str,
        is_reply: bool,
    ) -> Option<Document> {
        if let Some(x) = xml {
            let code = x.knd.as_deref().map(str::trim).unwrap_or_default();
            let (class, kind) = match self.knd.iter().find(|(k, _, _)| k == code) {
                Some((_, class, kind)) => (*class, Some(kind.clone())),
                // An envelope of the tax office with a form we do not know: still a document of the tax office.
                None => (Class::Demand, None),
            };
            let kind = kind.map(|k| self.refine(k, text));
            return Some(Document {
                class,
                kind,
                source: Source::Xml,
                title: format!("КНД {code}"),
                number: x.number.clone(),
                date: x.date,
                concrete: true,
                tight: true,
            });
        }
        let names = normalize(&attachment_names.join("\n").replace('_', " "));
        let subject = normalize(&strip_prefixes(subject));
        let sources = [
            (
                Source::Subject,
                if is_reply { "" } else { subject.as_str() },
            ),
            (Source::Attachment, names.as_str()),
            (Source::Text, text),
        ];
        for (source, hay) in sources {
            if hay.is_empty() {
                continue;
            }
            // Every title of this source, found once: the first is the mail's own, the others may lend it facts.
            let found = self.documents(hay, source);
            if let Some(mut doc) = found.first().cloned() {
                // "… поступило решение налогового органа о приостановлении операций …, основание: требование
                // № 1744 …" and below it the form "РЕШЕНИЕ № 2290 / о приостановлении операций": the number that
                // stands right at a title of the same kind is the document's.
                if doc.class == Class::Demand && source == Source::Text && !doc.tight {
                    let kind = doc.kind.clone();
                    let tight = found
                        .into_iter()
                        .find(|t| t.class == Class::Demand && t.tight && t.kind == kind);
                    if let Some(t) = tight {
                        doc.number = t.number;
                        doc.date = t.date.or(doc.date);
                        doc.concrete = true;
                        doc.tight = true;
                    }
                }
                if doc.class == Class::Demand {
                    doc.kind = doc.kind.map(|k| self.refine(k, &format!("{hay}\n{text}")));
                    // A subject or a file name without the number or the date: the text names the same document
                    // with them ("Вид документа: Требование …; Номер документа: 10-21/5533; Дата документа:
                    // 14.09.2026"); a number of the subject's own is kept, and then only a date of that number is
                    // taken.
                    if source != Source::Text && (doc.number.is_none() || doc.date.is_none()) {
                        // The text with its white space folded, once for every title compared below.
                        let folded = fold_white_space(text);
                        let same = |t: &Document| {
                            t.class == Class::Demand
                                && t.concrete
                                && (t.kind.is_none()
                                    || t.kind.clone().map(|k| self.refine_folded(k, &folded))
                                        == doc.kind)
                                && (doc.number.is_none() || doc.number == t.number)
                        };
                        if let Some(t) = self.documents(text, Source::Text).into_iter().find(same) {
                            doc.number = doc.number.or(t.number);
                            doc.date = doc.date.or(t.date);
                            doc.concrete = true;
                        }
                    }
                }
                return Some(doc);
            }
        }
        None
    }

    /// A base kind becomes its refinement when one of the refinement's phrases (`recognise`, `informal`: matched
    /// as written, the way the rules' `demand_kind` matches them) is in the text.
    fn refine(&self, kind: String, text: &str) -> String {
        // Most kinds have no refinement: the text is then not folded at all.
        if !self.refinements.iter().any(|(base, _, _)| *base == kind) {
            return kind;
        }
        self.refine_folded(kind, &fold_white_space(text))
    }

    /// [`DocumentFinder::refine`] of a text whose white space is already folded ([`fold_white_space`]).
    fn refine_folded(&self, kind: String, text: &str) -> String {
        for (base, refined, phrases) in &self.refinements {
            if *base == kind && phrases.iter().any(|p| text.contains(p.as_str())) {
                return refined.clone();
            }
        }
        kind
    }

    /// The titles of `hay` in text order: whole titles ("требование о представлении пояснений"), and titles whose
    /// head word carries the number, as the statutory forms are laid out ("ТРЕБОВАНИЕ № 7710 / о представлении
    /// пояснений", "УВЕДОМЛЕНИЕ № 77 о вызове в налоговый орган").
    fn candidates(&self, hay: &str) -> Vec<Candidate> {
        let mut out: Vec<Candidate> = Vec::new();
        for m in self.titles.find_all(hay) {
            // Another phrase matching the same words is the same title.
            if out
                .last()
                .is_some_and(|c| c.start == m.start && c.end == m.end)
            {
                continue;
            }
            out.push(Candidate {
                start: m.start,
                end: m.end,
                facts_from: m.end,
                owner: m.phrase,
            });
        }
        let heads = self.heads.find_all(hay);
        // Tails only ever complete a head.
        let tails = if heads.is_empty() {
            Vec::new()
        } else {
            self.tails.find_all(hay)
        };
        for h in heads {
            // The complement follows the number (and the date) — "№ 7710 от 03.03.2026 о представлении пояснений" —
            // or a few words naming who issued it: "решение налогового органа о приостановлении операций".
            let numbered = number_right_after(hay, h.end);
            let after = numbered.unwrap_or(h.end);
            let tail = tails.iter().find(|t| {
                self.tail_head[t.phrase] == h.phrase
                    && t.start >= after
                    && t.start <= after + TAIL_GAP.max(FILLER_GAP)
                    && is_filler(&hay[after..t.start], numbered.is_some())
            });
            let (owner, end) = match (tail, numbered) {
                (Some(t), _) => (self.tail_owner[t.phrase], t.end),
                (None, Some(_)) => match self.numbered_generic.get(h.phrase).copied().flatten() {
                    Some(owner) => (owner, h.end),
                    None => continue,
                },
                (None, None) => continue,
            };
            if out.iter().any(|c| c.start <= h.start && h.start < c.end) {
                continue;
            }
            out.push(Candidate {
                start: h.start,
                end,
                facts_from: h.end,
                owner,
            });
        }
        out.sort_by_key(|c| (c.start, std::cmp::Reverse(c.end)));
        out
    }

    /// Every title in `hay` (normalised) that names a document rather than refers to one, in text order.
    fn documents(&self, hay: &str, source: Source) -> Vec<Document> {
        let mut found = Vec::new();
        let candidates = self.candidates(hay);
        if candidates.is_empty() {
            // Most mail names no document: the sentences around a title are not searched without one.
            return found;
        }
        // What follows a demand's title, and the duties that unmake a notice's: searched only when a title of that
        // class is there to read them.
        let has = |class: Class| {
            candidates
                .iter()
                .any(|c| self.owners[c.owner].class == class)
        };
        let follows = if has(Class::Demand) {
            self.follows.find_all(hay)
        } else {
            Vec::new()
        };
        let duties = if has(Class::Notice) {
            self.duties.find_all(hay)
        } else {
            Vec::new()
        };
        for (i, c) in candidates.iter().enumerate() {
            let owner = &self.owners[c.owner];
            let next_title = candidates[i + 1..]
                .iter()
                .find(|n| n.start >= c.end)
                .map_or(hay.len(), |n| n.start);
            let (number, number_at, date) = facts_after(hay, c.facts_from, next_title);
            let tight = number.is_some()
                && (c.end > c.facts_from || number_at.is_some_and(|at| at <= TIGHT_NUMBER));
            let sentence = sentence_end(hay, c.end);
            let sentence_from = sentence_start(hay, c.start);
            // "Требование № … отозвано", "ответ на требование № … доставлен": the sentence says what became of
            // the demand, whether it names the demand as its subject or as a reference.
            let became = (owner.class == Class::Demand)
                .then(|| {
                    follows.iter().find(|f| {
                        f.start >= c.end
                            && f.start < sentence
                            && f.start - c.end <= FOLLOWS_WINDOW
                            && !negated(hay, f.start)
                    })
                })
                .flatten();
            if let Some(f) = became {
                found.push(Document {
                    class: Class::Notice,
                    kind: self.follows_kind.get(f.phrase).cloned(),
                    source,
                    title: hay[c.start..f.end].to_owned(),
                    number,
                    date,
                    concrete: false,
                    tight,
                });
                continue;
            }
            if self.is_reference(hay, c.start) {
                continue;
            }
            if owner.class == Class::Notice {
                // "Квитанция о приеме не отправлена — требование № …": a receipt still to be sent is a duty about
                // the demand, not a receipt.
                if duties.iter().any(|d| {
                    d.start >= sentence_from
                        && d.start < sentence
                        && (d.end <= c.start || d.start >= c.end)
                }) {
                    continue;
                }
                found.push(Document {
                    class: Class::Notice,
                    kind: owner.kind.clone(),
                    source,
                    title: hay[c.start..c.end].to_owned(),
                    number,
                    date,
                    concrete: false,
                    tight,
                });
                continue;
            }
            let concrete = number.is_some() || date.is_some();
            found.push(Document {
                class: Class::Demand,
                kind: owner.kind.clone(),
                source,
                title: hay[c.start..c.end].to_owned(),
                number,
                date,
                concrete,
                tight,
            });
        }
        found
    }

    /// A title right after a mention marker ("ответ на требование", "во исполнение требования") names another
    /// document.
    fn is_reference(&self, hay: &str, at: usize) -> bool {
        let mut from = at.saturating_sub(48);
        while !hay.is_char_boundary(from) {
            from += 1;
        }
        let mut before =
            hay[from..at].trim_end_matches(|c: char| c.is_whitespace() || "«\"'(:,".contains(c));
        // "Запросите, пожалуйста, акт сверки": courtesy words between the verb and its object.
        loop {
            let word_start = before
                .char_indices()
                .rev()
                .take_while(|(_, c)| c.is_alphabetic())
                .last()
                .map_or(before.len(), |(i, _)| i);
            if !COURTESY.contains(&&before[word_start..]) || word_start == before.len() {
                break;
            }
            before = before[..word_start].trim_end_matches(|c: char| c.is_whitespace() || c == ',');
        }
        self.markers
            .find_all(before)
            .iter()
            .any(|k| k.end == before.len())
    }
}

/// `text` with every run of white space one space, and none at either end: how refinements' phrases are matched.
fn fold_white_space(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Words that may stand between a verb and the document it names: "запросите, пожалуйста, акт сверки".
const COURTESY: [&str; 12] = [
    "пожалуйста",
    "пожалуйста",
    "плиз",
    "пжл",
    "срочно",
    "нам",
    "мне",
    "нас",
    "еще",
    "также",
    "тоже",
    "всё",
];

/// The subject without `Re:`/`Fwd:`/`Пересл:`/`[External]`-style prefixes.
pub fn strip_prefixes(subject: &str) -> String {
    static PREFIX: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?i)^\s*(?:(?:re|fw|fwd|aw|wg|ответ|отв|пересл|переслано|на)\s*(?:\[\d+\]|\(\d+\))?\s*:\s*|\[[^\]]{0,40}\]\s*)+")
            .unwrap_or_else(|e| unreachable!("literal pattern: {e}"))
    });
    PREFIX.replace(subject, "").into_owned()
}

/// Where the sentence that holds `at` starts (the byte after the previous sentence's end), looked for at most
/// [`SENTENCE_LOOKBACK`] bytes back.
fn sentence_start(hay: &str, at: usize) -> usize {
    let mut from = at.saturating_sub(SENTENCE_LOOKBACK);
    while !hay.is_char_boundary(from) {
        from += 1;
    }
    let before = &hay[from..at];
    let mut start = from;
    for (i, c) in before.char_indices() {
        let ends = match c {
            '!' | '?' | ';' | '\n' => true,
            '.' => {
                before[i + 1..].starts_with(char::is_whitespace)
                    && before[..i]
                        .chars()
                        .rev()
                        .take_while(|c| c.is_alphabetic())
                        .count()
                        >= 4
            }
            _ => false,
        };
        if ends {
            start = from + i + c.len_utf8();
        }
    }
    start
}

/// How far back a sentence's start is looked for, in bytes (a long sentence of an operator's alert is about 300).
const SENTENCE_LOOKBACK: usize = 600;

/// Where the sentence that goes on at `from` ends: a line break (operators list one fact a line), `!`, `?`, `;`,
/// or a full stop after a word of four letters or more (`ст.`, `г.`, `п.` are abbreviations, `02.03.2026` a date).
fn sentence_end(hay: &str, from: usize) -> usize {
    let bytes = hay.as_bytes();
    let limit = bytes.len().min(from + SENTENCE_LOOKBACK);
    let mut i = from;
    while i < limit {
        match bytes[i] {
            b'!' | b'?' | b';' | b'\n' => return i,
            // "… 09.10.2026. Срок …", "… (пени). Срок …": a full stop after a digit or a bracket ends a sentence.
            b'.' if bytes.get(i + 1).is_some_and(|c| c.is_ascii_whitespace())
                && i > from
                && matches!(bytes[i - 1], b'0'..=b'9' | b')' | b'"') =>
            {
                return i
            }
            b'.' if bytes.get(i + 1).is_some_and(|c| c.is_ascii_whitespace()) => {
                let word: String = hay[from..i]
                    .chars()
                    .rev()
                    .take_while(|c| c.is_alphabetic())
                    .collect();
                if word.chars().count() >= 4 {
                    return i;
                }
            }
            _ => {}
        }
        i += 1;
    }
    limit
}

/// How close to a title's end its number must start to be the title's own beyond doubt, in bytes ("… пояснений
/// № 4410", "… (информации) № 2587").
const TIGHT_NUMBER: usize = 32;

/// How far after a demand's title the words that say what became of it may stand, in bytes ("требование № 12-09/771
/// от 05.03.2026 о представлении пояснений отозвано").
const FOLLOWS_WINDOW: usize = 160;

/// "не принята", "будет принято": the word right before says it did not (yet) happen.
fn negated(hay: &str, at: usize) -> bool {
    let before = hay[..at].trim_end();
    let word: String = before
        .chars()
        .rev()
        .take_while(|c| c.is_alphabetic())
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    matches!(word.as_str(), "не" | "будет" | "будут" | "быть" | "ни")
}

/// How far after a title its number and date are looked for, in bytes of the normalised text (about 180 Cyrillic
/// letters: "о представлении документов (информации) № 12-09/771 от «05» марта 2026 г.").
const FACTS_WINDOW: usize = 360;

static NUMBER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:№|(?:^|[^\p{L}\p{N}])n\s|номер(?:\s+(?:документа|требования|решения|уведомления))?(?:\s*(?:и|/)\s*дата(?:\s+документа)?)?[\s.:]*)\s*([0-9](?:[0-9a-zа-я.\-@]|/\s?[0-9a-zа-я])*[0-9a-zа-я@]|[0-9])")
        .unwrap_or_else(|e| unreachable!("literal pattern: {e}"))
});
/// A number without a sign, right before "от <date>": "Требование об уплате задолженности 1102 от 22.01.2026".
static BARE_NUMBER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:^|\s)([0-9](?:[0-9.\-/]*[0-9])?)\s+от\s")
        .unwrap_or_else(|e| unreachable!("literal pattern: {e}"))
});

/// Where the words after a head word's number (and its date, "от 03.03.2026") start, when a number follows the head
/// word at once ("требование № 7710", "уведомление n 77").
fn number_right_after(hay: &str, from: usize) -> Option<usize> {
    static HEAD_NUMBER: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^[ \t]*(?:№|n)[ \t]*[0-9](?:[0-9a-zа-я.\-@]|/\s?)*(?:[ \t\r\n]+от[ \t]+[^\n]{6,30}?(?:года|г\.|\d{4}))?")
            .unwrap_or_else(|e| unreachable!("literal pattern: {e}"))
    });
    HEAD_NUMBER.find(&hay[from..]).map(|m| from + m.end())
}

/// The number and date written just after a title (before `limit`, the next title).
fn facts_after(
    hay: &str,
    from: usize,
    limit: usize,
) -> (Option<String>, Option<usize>, Option<NaiveDate>) {
    // Titles may overlap (`limit` before `from`); the window is then empty, never inverted.
    let mut end = (from + FACTS_WINDOW).min(limit).min(hay.len()).max(from);
    while end > from && !hay.is_char_boundary(end) {
        end -= 1;
    }
    let window = &hay[from..end];
    // Not a bank account or a registration number (long digit runs), not a date written after a sign.
    let plausible = |n: &str| {
        !(n.len() >= 15 && n.bytes().all(|b| b.is_ascii_digit()))
            && crate::mail::dates::parse_date(n).is_none()
    };
    // Not the number of the tax office that issued it ("Межрайонная ИФНС России № 9").
    let of_an_office = |at: usize| {
        let mut from = at.saturating_sub(48);
        while !window.is_char_boundary(from) {
            from += 1;
        }
        let before = &window[from..at];
        ["ифнс", "инспекц", "россии", "уфнс", "фнс"]
            .iter()
            .any(|w| before.contains(w))
    };
    let numbers: Vec<(usize, String)> = NUMBER
        .captures_iter(window)
        .chain(BARE_NUMBER.captures_iter(window))
        .filter_map(|c| Some((c.get(0)?.start(), c.get(1)?)))
        .map(|(at, m)| (at, m.as_str().split_whitespace().collect::<String>()))
        .filter(|(at, n)| plausible(n) && !of_an_office(*at))
        .collect();
    let number_at = numbers.first().map(|(at, _)| *at);
    let number = numbers.first().map(|(_, n)| n.clone());
    // The document's own date is the one written as its date: "от 02.03.2026", "Дата документа: 14.09.2026", or
    // alone on its line under the title as the statutory forms print it ("ТРЕБОВАНИЕ № 19-07/2240 / о представлении
    // документов (информации) / 20 ноября 2026 г."). A balance date ("по состоянию на 15.01.2026"), a deadline, a
    // sending date or the day it arrived stand near the title too, and are not its date. A line break inside a
    // date ("«26»\nмая 2026") is read as a space (the same byte length, so offsets hold).
    let flat = window.replace('\n', " ");
    let dates = crate::mail::dates::find_dates(&flat);
    let before = |at: usize| {
        window[..at].trim_end_matches(|c: char| c.is_whitespace() || ".:-—–«".contains(c))
    };
    let labelled = |at: usize| {
        let b = before(at);
        // "Номер / дата: 77 / 18.03.2026": the date after the number's slash.
        let numbered_pair = b.ends_with('/') && window[..at].contains("дата");
        numbered_pair
            || [
                "от",
                "дата",
                "дата документа",
                "дата требования",
                "дата решения",
                "дата уведомления",
                "датой",
            ]
            .iter()
            .any(|w| {
                b.ends_with(w) && !b[..b.len() - w.len()].ends_with(|c: char| c.is_alphabetic())
            })
    };
    let alone_on_its_line = |at: usize| {
        let line_start = window[..at].rfind('\n').map_or(0, |i| i + 1);
        let line_end = window[at..].find('\n').map_or(window.len(), |i| at + i);
        let line = &window[line_start..line_end];
        line_start > 0
            && !line.contains(':')
            && line.chars().filter(|c| c.is_alphabetic()).count() <= 12
            && !before(at).ends_with("на")
    };
    let date = dates
        .iter()
        .find(|(at, _)| labelled(*at) || alone_on_its_line(*at))
        .map(|(_, d)| *d);
    (number, number_at, date)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a failed unwrap is a failed test
    use super::*;

    /// The shipped vocabulary: the demand titles read straight from `demands.toml` (as `rules::demand_titles`
    /// hands them over from the catalogue, which lives above this module) and `notices.toml`.
    fn finder() -> DocumentFinder {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
        let text = std::fs::read_to_string(root.join("demands.toml")).unwrap();
        let demands: toml::Table = toml::from_str(&text).unwrap();
        let strings = |kind: &toml::Table, key: &str| -> Vec<String> {
            match kind.get(key) {
                Some(toml::Value::String(s)) => vec![s.clone()],
                Some(toml::Value::Array(a)) => {
                    a.iter().map(|v| v.as_str().unwrap().to_owned()).collect()
                }
                _ => Vec::new(),
            }
        };
        let titles: Vec<DemandTitles> = demands["kinds"]
            .as_table()
            .unwrap()
            .iter()
            .map(|(id, kind)| {
                let kind = kind.as_table().unwrap();
                DemandTitles {
                    id: id.clone(),
                    titles: strings(kind, "titles"),
                    knd: strings(kind, "knd"),
                    refines: kind.get("refines").map(|r| r.as_str().unwrap().to_owned()),
                    phrases: [strings(kind, "recognise"), strings(kind, "informal")].concat(),
                }
            })
            .collect();
        let notices = NoticeCatalog::load(&root.join("notices.toml")).unwrap();
        DocumentFinder::new(&titles, &notices).unwrap()
    }

    fn doc(subject: &str, text: &str) -> Option<(Class, Option<String>, bool)> {
        finder()
            .find(None, subject, &[], &normalize(text), false)
            .map(|d| (d.class, d.kind, d.concrete))
    }

    #[test]
    fn an_alert_that_a_demand_came_is_the_demand_whatever_it_says_of_receipts() {
        let d = doc(
            "Новый документ от налогового органа",
            "Поступило требование о представлении пояснений № 4410 от 15.04.2026.\n\
             Квитанция о приеме будет сформирована и отправлена автоматически.",
        );
        assert_eq!(d, Some((Class::Demand, Some("explanations".into()), true)));
    }

    #[test]
    fn a_receipt_that_names_a_demand_is_the_receipt() {
        let d = doc(
            "Квитанция о приеме требования № 4410 от 15.04.2026",
            "Квитанция о приеме требования о представлении пояснений отправлена в налоговый орган.",
        );
        assert_eq!(
            d.map(|d| (d.0, d.1)),
            Some((Class::Notice, Some("receipt".into())))
        );
    }

    #[test]
    fn a_receipt_still_to_be_sent_is_no_receipt() {
        let d = doc(
            "Напоминание: квитанция о приеме не отправлена — требование № 3390",
            "Напоминаем, что поступило требование о представлении документов № 3390 от 06.04.2026.",
        );
        assert_eq!(d, Some((Class::Demand, None, true)));
    }

    #[test]
    fn a_title_after_a_mention_marker_is_a_reference() {
        let d = doc(
            "",
            "Во исполнение требования о представлении документов № 5 от 02.03.2026 направляем…",
        );
        assert_eq!(d, None);
        let d = doc(
            "",
            "Решение о приостановлении операций по счетам № 77 от 10.03.2026 в связи с неисполнением \
             требования об уплате задолженности № 778 от 01.02.2026",
        );
        assert_eq!(d.map(|d| d.1), Some(Some("freeze".into())));
    }

    #[test]
    fn a_freeze_lifted_is_a_notice_not_a_freeze() {
        let d = doc(
            "Решение об отмене приостановления операций по счетам",
            "Решение № 12 от 05.03.2026 об отмене приостановления операций по счетам налогоплательщика в банке",
        );
        assert_eq!(
            d.map(|d| (d.0, d.1)),
            Some((Class::Notice, Some("cancellation".into())))
        );
    }

    #[test]
    fn a_reply_s_subject_is_not_evidence_but_its_own_words_are() {
        let f = finder();
        assert_eq!(
            f.find(
                None,
                "Re: Требование № 5 от 02.03.2026 о представлении документов",
                &[],
                &normalize("Спасибо, получили."),
                true
            ),
            None
        );
        let d = f
            .find(
                None,
                "Re: зарплата за март",
                &[],
                &normalize(
                    "Пришло новое: ТРЕБОВАНИЕ № 7710 о представлении пояснений от 03.03.2026",
                ),
                true,
            )
            .unwrap();
        assert_eq!(
            (d.class, d.kind.as_deref(), d.number.as_deref()),
            (Class::Demand, Some("explanations"), Some("7710"))
        );
    }

    #[test]
    fn a_numbered_demand_of_no_named_kind_is_a_demand_of_unclear_kind() {
        assert_eq!(
            doc("Требование № 1234 от 02.03.2026", ""),
            Some((Class::Demand, None, true))
        );
        assert_eq!(doc("Требования к оформлению счетов", ""), None);
    }

    #[test]
    fn the_envelope_decides_the_kind_and_a_counterparty_demand_is_refined_by_its_article() {
        let f = finder();
        let x = XmlDemand {
            knd: Some("1165013".into()),
            number: Some("2817".into()),
            ..XmlDemand::default()
        };
        let d = f
            .find(
                Some(&x),
                "",
                &[],
                &normalize("в соответствии со статьей 93.1 Налогового кодекса"),
                false,
            )
            .unwrap();
        assert_eq!(
            (d.source, d.kind.as_deref()),
            (Source::Xml, Some("counterparty_documents"))
        );
        let d = f.find(Some(&x), "", &[], "", false).unwrap();
        assert_eq!(d.kind.as_deref(), Some("documents"));
    }

    #[test]
    fn prefixes_are_stripped_from_subjects() {
        assert_eq!(
            strip_prefixes("RE: Fwd: [EXT] Пересл: Требование"),
            "Требование"
        );
        assert_eq!(strip_prefixes("Ответ [2]: вопрос"), "вопрос");
    }
}
