//! What a demand asks for, as a list: the documents or questions its own body enumerates after a phrase such as
//! "представить следующие документы (информацию):" — numbered or bulleted lines ("1. Книга учета доходов…"), or
//! one sentence of items separated by semicolons ("…: товарные накладные; договоры поставки.").
//!
//! Only text after such a phrase counts, so an operator's help text ("Что делать: 1. Отправьте квитанцию о
//! приеме…") never becomes a checklist. The phrases are data (`checklist_intro` in `notices.toml`). Pure.

use super::phrases::{normalize, PhraseTable};

/// Most items a checklist keeps: a demand lists a handful; a longer run is a table pasted below, not its list.
pub const MAX_ITEMS: usize = 40;

/// Longest item kept, in characters (an item that runs on is cut at a word).
pub const MAX_ITEM_CHARS: usize = 400;

/// The items `text` lists after the first phrase of `intro` found in it, in order; empty when it lists none.
/// `normalized` is `text` [`normalize`]d (the assessment has it already, for the document finder).
pub fn extract(intro: &PhraseTable, text: &str, normalized: &str) -> Vec<String> {
    // A phrase found on two joined lines is found in the whole text too (a line break is white space to a phrase,
    // and the text around a line is no word): most mail has none, and costs one search instead of one per line.
    if intro.first(normalized).is_none() {
        return Vec::new();
    }
    let lines: Vec<&str> = text.lines().collect();
    for i in 0..lines.len() {
        // A line with the next one: a mail client may wrap the phrase itself ("представить следующие\nдокументы").
        let joined = match lines.get(i + 1) {
            Some(next) => format!("{} {next}", lines[i]),
            None => lines[i].to_owned(),
        };
        let normalized = normalize(&joined);
        let Some(found) = intro.first(&normalized) else {
            continue;
        };
        // Offsets are in the normalized text, whose characters stand one for one with the original's.
        let first_len = lines[i].chars().count();
        if normalized[..found.start].chars().count() > first_len {
            continue; // wholly on the next line: found there
        }
        let end = normalized[..found.end].chars().count();
        let (rest, list_from): (String, usize) = if end <= first_len {
            (lines[i].chars().skip(end).collect(), i + 1)
        } else {
            (
                lines[i + 1].chars().skip(end - first_len - 1).collect(),
                i + 2,
            )
        };
        let tail = match rest.find(':') {
            Some(colon) => rest[colon + 1..].trim().to_owned(),
            None if rest.trim().is_empty() || rest.trim_start().starts_with('(') => String::new(),
            // "…следующие документы Договор…" without a colon: not a list this reader knows.
            None => continue,
        };
        let following = lines.get(list_from..).unwrap_or(&[]);
        let items = numbered(&tail, following);
        if !items.is_empty() {
            return items;
        }
        let items = inline(&tail, following);
        if items.len() >= 2 {
            return items;
        }
    }
    Vec::new()
}

/// `1. …`, `1) …`, `- …`, `• …`, `– …` lines, each item running on over the lines that continue it.
fn numbered(tail: &str, following: &[&str]) -> Vec<String> {
    let mut items: Vec<String> = Vec::new();
    let candidates = std::iter::once(tail).chain(following.iter().copied());
    let mut blank_run = 0;
    for (n, line) in candidates.enumerate() {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            if n == 0 {
                continue;
            }
            blank_run += 1;
            // One blank line may separate the items; two end the list (and no list starts that late).
            if blank_run >= 2 || (items.is_empty() && n > 2) {
                break;
            }
            continue;
        }
        match item_text(trimmed) {
            Some(text) => {
                if items.len() == MAX_ITEMS {
                    break;
                }
                items.push(text.to_owned());
                blank_run = 0;
            }
            // Before the first item, only the colon's own line may hold other words.
            None if items.is_empty() => {
                if n > 0 {
                    break;
                }
            }
            // A line that carries on the item above (wrapped text), unless a blank line ended the list.
            None if blank_run == 0 && !ends_item(items.last().map_or("", String::as_str)) => {
                if let Some(last) = items.last_mut() {
                    last.push(' ');
                    last.push_str(trimmed);
                }
            }
            None => break,
        }
    }
    items
        .into_iter()
        .map(|i| clean(&i))
        .filter(|i| !i.is_empty())
        .collect()
}

/// The text of an item line: after `1.`, `1)`, `а)` or a bullet, or `None` for a line that starts no item.
fn item_text(line: &str) -> Option<&str> {
    for bullet in ['-', '•', '–', '—', '*', '·'] {
        if let Some(rest) = line.strip_prefix(bullet) {
            if rest.starts_with(char::is_whitespace) {
                return Some(rest.trim());
            }
        }
    }
    let digits = line.chars().take_while(char::is_ascii_digit).count();
    if (1..=2).contains(&digits) {
        let rest = &line[digits..];
        for mark in ['.', ')'] {
            if let Some(after) = rest.strip_prefix(mark) {
                if after.starts_with(char::is_whitespace) {
                    return Some(after.trim());
                }
            }
        }
    }
    None
}

/// Whether an item reads as finished (its sentence ended), so that the next plain line is not its continuation.
fn ends_item(item: &str) -> bool {
    item.ends_with(['.', ';', '!', '?'])
}

/// One sentence of `;`-separated items: from the colon to the first full stop that ends the paragraph's sentence.
fn inline(tail: &str, following: &[&str]) -> Vec<String> {
    let mut paragraph = tail.to_owned();
    for line in following {
        if line.trim().is_empty() {
            if paragraph.trim().is_empty() {
                continue;
            }
            break;
        }
        if ends_sentence(&paragraph) {
            break;
        }
        if !paragraph.is_empty() {
            paragraph.push(' ');
        }
        paragraph.push_str(line.trim());
    }
    let sentence = match sentence_end(&paragraph) {
        Some(end) => &paragraph[..end],
        None => paragraph.as_str(),
    };
    if !sentence.contains(';') {
        return Vec::new();
    }
    sentence
        .split(';')
        .map(clean)
        .filter(|i| !i.is_empty())
        .take(MAX_ITEMS)
        .collect()
}

fn ends_sentence(text: &str) -> bool {
    sentence_end(text).is_some()
}

/// The end of the first sentence: a `.` followed by a space and a capital letter, or ending the text. A `.` inside
/// "ст. 93", "г.", "руб." or a number is no end.
fn sentence_end(text: &str) -> Option<usize> {
    let trimmed = text.trim_end();
    for (i, c) in text.char_indices() {
        if c != '.' {
            continue;
        }
        let after = &text[i + 1..];
        if i + 1 >= trimmed.len() {
            return Some(i);
        }
        let mut rest = after.chars();
        if rest.next().is_some_and(char::is_whitespace)
            && rest.next().is_some_and(char::is_uppercase)
        {
            let word_before: String = text[..i]
                .chars()
                .rev()
                .take_while(|c| c.is_alphanumeric())
                .collect();
            let abbreviation =
                word_before.chars().count() <= 3 && word_before.chars().all(char::is_lowercase);
            if !abbreviation {
                return Some(i);
            }
        }
    }
    None
}

/// An item as shown: spaces collapsed, the list's punctuation dropped, cut to [`MAX_ITEM_CHARS`] at a word.
fn clean(item: &str) -> String {
    let collapsed = item.split_whitespace().collect::<Vec<_>>().join(" ");
    let trimmed = collapsed.trim_end_matches([';', ',', '.']).trim();
    if trimmed.chars().count() <= MAX_ITEM_CHARS {
        return trimmed.to_owned();
    }
    let mut out = String::new();
    for word in trimmed.split(' ') {
        if out.chars().count() + word.chars().count() + 2 > MAX_ITEM_CHARS {
            break;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a failed unwrap is a failed test
    use super::*;

    fn intro() -> PhraseTable {
        PhraseTable::new(&[
            "представить следующие документы",
            "следующие документы",
            "следующие пояснения",
            "пояснения по следующим",
        ])
        .unwrap()
    }

    #[test]
    fn numbered_items_after_the_statutory_phrase_are_the_checklist() {
        let text = "необходимо в течение 10 дней со дня получения настоящего Требования представить следующие\n\
                    документы (информацию):\n\
                    1. Книга учета доходов и расходов за 2024 год.\n\
                    2. Договоры с покупателями, по которым в 2024 году получены доходы свыше 500 000 руб., с\n\
                    дополнительными соглашениями.\n\
                    3. Документы, подтверждающие уплату страховых взносов.\n\
                    \n\
                    Документы представляются в виде заверенных копий.";
        assert_eq!(
            extract(&intro(), text, &normalize(text)),
            vec![
                "Книга учета доходов и расходов за 2024 год",
                "Договоры с покупателями, по которым в 2024 году получены доходы свыше 500 000 руб., с \
                 дополнительными соглашениями",
                "Документы, подтверждающие уплату страховых взносов",
            ]
        );
    }

    #[test]
    fn a_sentence_of_items_separated_by_semicolons_is_split() {
        let text = "в связи с проведением камеральной налоговой проверки необходимо представить следующие документы:\n\
                    товарно-транспортные накладные; договоры поставки с приложениями и\n\
                    спецификациями.\n\n---\n1С-Отчетность";
        assert_eq!(
            extract(&intro(), text, &normalize(text)),
            vec![
                "товарно-транспортные накладные",
                "договоры поставки с приложениями и спецификациями"
            ]
        );
    }

    #[test]
    fn an_operators_help_text_is_no_checklist() {
        let text = "Поступило требование о представлении документов.\n\nЧто делать:\n  1. Отправьте квитанцию о \
                    приеме.\n  2. Подготовьте ответ и отправьте его через Экстерн.";
        assert!(extract(&intro(), text, &normalize(text)).is_empty());
    }

    #[test]
    fn bullets_and_parentheses_count_and_a_long_item_is_cut_at_a_word() {
        let long = "слово ".repeat(200);
        let text = format!(
            "Прошу представить следующие пояснения:\n- о расхождении в книге покупок;\n1) {long}\n"
        );
        let items = extract(&intro(), &text, &normalize(&text));
        assert_eq!(items[0], "о расхождении в книге покупок");
        assert!(items[1].ends_with('…') && items[1].chars().count() <= MAX_ITEM_CHARS);
    }
}
