//! Which part of a mail's text is whose: the writer's own words, what they pass on (a forward), and the history a
//! reply quotes. A demand the client forwards is new; a demand a reply quotes is history; a forward header's
//! `Дата:` is the date of the forward, never a date of the document (FORMAT.md convention 3).
//!
//! Mail clients mark these parts in a handful of ways, all recognised here line by line: `> ` quote markers;
//! "… написал(а):" / "… wrote:" lines (Gmail, Thunderbird, Apple Mail, Mail.ru); Yandex's
//! `03.03.2026, 10:15, "Имя" <адрес>:`; the separators of Gmail (`---------- Forwarded message ---------`), Yandex
//! and Mail.ru (`-------- Пересылаемое сообщение --------`), Thunderbird, Apple Mail (`Начало переадресованного
//! сообщения:`), The Bat! and Outlook (`-----Original Message-----`); and Outlook's header block (`От:` followed by
//! `Отправлено:`/`Sent:`/`Дата:`). Whether what follows the first mark is quoted history or passed-on content
//! depends on the mail: a reply quotes, a forward passes on.

use regex::Regex;
use std::sync::LazyLock;

/// The parts of a mail's text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sections {
    /// The writer's own words: everything before the first quotation or forward mark.
    pub own: String,
    /// What a forward passes on (its headers' date lines left out).
    pub forwarded: String,
    /// The history a reply quotes.
    pub quoted: String,
    /// The whole text with the date lines of forward and quotation headers left out — what is searched for a
    /// document's dates.
    pub clean: String,
}

impl Sections {
    /// What the mail brings that is new: the own words and, for a forward, what it passes on.
    pub fn new_content(&self) -> String {
        if self.forwarded.is_empty() {
            return self.own.clone();
        }
        let mut s = String::with_capacity(self.own.len() + self.forwarded.len() + 1);
        s.push_str(&self.own);
        s.push('\n');
        s.push_str(&self.forwarded);
        s
    }
}

fn re(p: &str) -> Regex {
    // The patterns are literals: tests compile every one of them.
    Regex::new(p).unwrap_or_else(|e| unreachable!("literal pattern {p:?}: {e}"))
}

/// A separator line that opens a forwarded or quoted message.
static SEPARATOR: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)^\s*(?:-{2,}|_{2,}|={2,})?\s*(?:forwarded message|original message|пересылаемое сообщение|перенаправленное сообщение|переадресованное сообщение|исходное сообщение|переслано|пересланное сообщение)\s*(?:-{2,}|_{2,}|={2,})?\s*:?\s*$|^\s*(?:begin forwarded message|начало переадресованного сообщения|начало пересылаемого сообщения)\s*:?\s*$",
    )
});

/// Separators that certainly open a forward (whatever the subject says).
static FORWARD_SEPARATOR: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)forwarded|пересыла|переслан|перенаправлен|переадресован"));

/// "… написал(а):", "… wrote:", Yandex's `03.03.2026, 10:15, "Имя" <адрес>:`.
static QUOTE_HEADER: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)^.{0,300}(?:\bwrote|писал|написал|написала|написал\(а\)|пишет)\s*:\s*$|^.{0,200}<?[^<>\s]+@[^<>\s]+>?\s*:\s*$",
    )
});

/// The signature a phone's mail app adds under the writer's words; whatever follows is the mail answered.
static MOBILE_SIGNATURE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)^\s*(?:отправлено (?:с|из) (?:iphone|ipad|android|мобильного|моего|мобильной)|sent from my (?:iphone|ipad|android|phone|mobile)|get outlook for (?:ios|android)|отправлено из мобильной почты)",
    )
});

/// A header line of a forwarded or quoted message as mail clients print it.
static HEADER_LINE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)^\s*\*?\s*(от кого|от|from|дата|date|sent|отправлено|кому|to|копия|cc|тема|subject|reply-to)\s*\*?\s*:",
    )
});

/// Whether a line ends with `:` before trailing white space, as every [`QUOTE_HEADER`] does: checked first, because
/// the pattern's word boundary keeps it off the fast regex engines and most lines of a mail end otherwise.
fn ends_with_colon(line: &str) -> bool {
    line.trim_end().ends_with(':')
}

/// Header keys whose value is the date of the forward or of the quoted mail.
fn is_date_key(key: &str) -> bool {
    matches!(
        key.to_lowercase().as_str(),
        "дата" | "date" | "sent" | "отправлено"
    )
}

fn is_from_key(key: &str) -> bool {
    matches!(key.to_lowercase().as_str(), "от" | "from" | "от кого")
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Part {
    Own,
    Forwarded,
    Quoted,
}

/// Splits `text` (a mail's readable text) into its parts. `is_reply` says whether the mail answers another
/// (`Re:`, `In-Reply-To`), in which case what follows the first mark is quoted history; otherwise it is passed on.
pub fn split(text: &str, is_reply: bool) -> Sections {
    let lines: Vec<&str> = text.lines().collect();
    let after_mark = if is_reply {
        Part::Quoted
    } else {
        Part::Forwarded
    };
    let mut out = Sections::default();
    let mut part = Part::Own;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if let Some(block) = header_block(&lines, i) {
            // A block of `Key: value` lines: a forward's or a quotation's header.
            if part == Part::Own {
                part = after_mark;
            }
            for l in &lines[i..i + block] {
                let dated = HEADER_LINE
                    .captures(l)
                    .and_then(|c| c.get(1))
                    .is_some_and(|k| is_date_key(k.as_str()));
                if !dated {
                    push_line(&mut out, part, l);
                    push(&mut out.clean, l);
                }
            }
            i += block;
            continue;
        }
        if SEPARATOR.is_match(line) {
            if part == Part::Own {
                part = if FORWARD_SEPARATOR.is_match(line) && !is_reply {
                    Part::Forwarded
                } else {
                    after_mark
                };
            }
        } else if ends_with_colon(line) && QUOTE_HEADER.is_match(line) {
            if part == Part::Own {
                part = after_mark;
            }
            // "В пн, 2 мар. 2026 г. в 10:15, Контур <…> написал:" holds the quoted mail's date, nothing else.
            i += 1;
            continue;
        } else if MOBILE_SIGNATURE.is_match(line) {
            // "Отправлено с iPhone": the own words end here, without any header for what follows.
            push_line(&mut out, part, line);
            push(&mut out.clean, line);
            if part == Part::Own {
                part = after_mark;
            }
            i += 1;
            continue;
        } else if line.trim_start().starts_with('>') {
            let unquoted = line.trim_start_matches(|c: char| c == '>' || c.is_whitespace());
            let p = if part == Part::Own { after_mark } else { part };
            push_line(&mut out, p, unquoted);
            push(&mut out.clean, line);
            i += 1;
            continue;
        }
        push_line(&mut out, part, line);
        push(&mut out.clean, line);
        i += 1;
    }
    for s in [
        &mut out.own,
        &mut out.forwarded,
        &mut out.quoted,
        &mut out.clean,
    ] {
        let trimmed = s.trim_end().len();
        s.truncate(trimmed);
    }
    out
}

fn push(s: &mut String, line: &str) {
    s.push_str(line);
    s.push('\n');
}

fn push_line(out: &mut Sections, part: Part, line: &str) {
    match part {
        Part::Own => push(&mut out.own, line),
        Part::Forwarded => push(&mut out.forwarded, line),
        Part::Quoted => push(&mut out.quoted, line),
    }
}

/// The length of the header block starting at line `i` (`None` at once when line `i` is no header line): two or more
/// `Key: value` lines (blank lines between them
/// allowed, as HTML-rendered Outlook headers have), one naming the sender — first in the block, or with an address
/// (an operator's listing "От: ИФНС № 5 … Дата: …" in the middle of a text is no header) — and one a date or an
/// addressee.
fn header_block(lines: &[&str], i: usize) -> Option<usize> {
    if !lines
        .get(i)
        .is_some_and(|l| l.contains(':') && HEADER_LINE.is_match(l))
    {
        return None;
    }
    let mut keys = Vec::new();
    let mut from_ok = false;
    let mut end = i;
    let mut j = i;
    while j < lines.len() && j < i + 12 {
        let l = lines[j];
        if let Some(c) = HEADER_LINE.captures(l) {
            let key = c
                .get(1)
                .map_or(String::new(), |k| k.as_str().to_lowercase());
            if is_from_key(&key) && (keys.is_empty() || l.contains('@')) {
                from_ok = true;
            }
            keys.push(key);
            j += 1;
            end = j;
        } else if l.trim().is_empty() && !keys.is_empty() {
            j += 1;
        } else {
            break;
        }
    }
    let has_other = keys
        .iter()
        .any(|k| is_date_key(k) || matches!(k.as_str(), "кому" | "to" | "тема" | "subject"));
    (keys.len() >= 2 && from_ok && has_other).then_some(end - i)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a failed unwrap is a failed test
    use super::*;

    #[test]
    fn every_pattern_compiles() {
        for r in [
            &SEPARATOR,
            &FORWARD_SEPARATOR,
            &QUOTE_HEADER,
            &HEADER_LINE,
            &MOBILE_SIGNATURE,
        ] {
            LazyLock::force(r);
        }
    }

    #[test]
    fn a_reply_keeps_its_own_words_and_quotes_the_rest() {
        let s = split(
            "Добрый день, документы готовы.\n\nВ пн, 2 мар. 2026 г. в 10:15, Контур <noreply@kontur.ru> написал:\n> Требование № 12 от 02.03.2026\n",
            true,
        );
        assert_eq!(s.own.trim(), "Добрый день, документы готовы.");
        assert_eq!(s.quoted.trim(), "Требование № 12 от 02.03.2026");
        assert!(s.forwarded.is_empty());
        assert!(!s.clean.contains("2 мар."), "{}", s.clean);
    }

    #[test]
    fn a_forward_passes_its_content_on_without_the_date_lines_of_its_header() {
        for text in [
            "Посмотрите.\n\n-------- Пересылаемое сообщение --------\nОт кого: Контур.Экстерн <noreply@kontur.ru>\nКому: info@romashka.example\nДата: Вторник, 3 марта 2026, 10:15 +03:00\nТема: Требование\n\nТребование № 12 от 02.03.2026",
            "Посмотрите.\n\n---------- Forwarded message ---------\nFrom: Контур <noreply@kontur.ru>\nDate: Tue, Mar 3, 2026 at 10:15 AM\nSubject: Требование\nTo: <info@romashka.example>\n\nТребование № 12 от 02.03.2026",
            "Посмотрите.\n\nОт: Контур <noreply@kontur.ru>\nОтправлено: 3 марта 2026 г. 10:15\nКому: info@romashka.example\nТема: Требование\n\nТребование № 12 от 02.03.2026",
        ] {
            let s = split(text, false);
            assert_eq!(s.own.trim(), "Посмотрите.", "{text}");
            assert!(s.forwarded.contains("Требование № 12 от 02.03.2026"), "{text}");
            assert!(!s.forwarded.contains("10:15"), "{text}");
            assert!(!s.clean.contains("10:15"), "{text}");
            assert!(s.new_content().contains("Требование № 12"), "{text}");
        }
    }

    #[test]
    fn yandex_quote_headers_and_quote_markers_are_history_in_a_reply() {
        let s = split(
            "Спасибо!\n\n03.03.2026, 10:15, \"Контур\" <noreply@kontur.ru>:\n> Поступило требование\n",
            true,
        );
        assert_eq!(s.own.trim(), "Спасибо!");
        assert_eq!(s.quoted.trim(), "Поступило требование");
        assert!(!s.clean.contains("10:15"));
    }

    #[test]
    fn a_mail_without_marks_is_all_own_words() {
        let s = split(
            "Требование № 12 от 02.03.2026\nДата отправки: 03.03.2026",
            false,
        );
        assert_eq!(
            s.own,
            "Требование № 12 от 02.03.2026\nДата отправки: 03.03.2026"
        );
        assert_eq!(s.clean, s.own);
    }
}
