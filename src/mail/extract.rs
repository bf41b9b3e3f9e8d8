//! Pulling the identifiers out of a parsed mail — every valid INN, labelled KPPs, OGRNs — and the
//! demand facts of an attached FNS envelope. These are the raw facts the rules and the client
//! directory work from; choosing *which* INN is the client's is not done here.
//!
//! Runs for every message, so it scans bytes by hand where a regex would cost more, and every
//! pattern is compiled once.

use super::parse::ParsedMail;
use super::xml::{parse_envelope, XmlDemand};
use crate::ids::{Inn, Kpp, Ogrn};
use regex::Regex;
use std::collections::HashSet;
use std::sync::LazyLock;

/// What one mail says about identifiers and, when it carries an envelope, its demand.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Facts {
    /// Every valid INN in the subject, the text and the attachment texts, unique, in order of first
    /// appearance. A 10/12-digit run inside a longer digit run is not an INN.
    pub inns: Vec<Inn>,
    /// KPPs that appear labelled (`КПП 165001001`, `ИНН/КПП: x/y`, `КПП="…"`), unique, in order.
    pub kpps: Vec<Kpp>,
    /// Every 13/15-digit run with a valid ОГРН/ОГРНИП check digit, unique, in order.
    pub ogrns: Vec<Ogrn>,
    /// From the first attachment whose text is an FNS envelope.
    pub demand: Option<XmlDemand>,
    /// Every document reference `№ <number> от <date>` (or `N …`) in the subject and the text, quoted lines
    /// included, unique, in order, at most [`MAX_DEMAND_REFS`]. Candidates for the demand a reply or a forward is
    /// about: the pipeline joins a mail to a known case whose number and date are among them.
    pub demand_refs: Vec<DemandRef>,
}

/// A document number with its date, as written `№ 2.4-17/1234 от 02.03.2026`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DemandRef {
    pub number: String,
    pub date: chrono::NaiveDate,
}

/// How many `№ … от …` references one mail yields: a reply thread quotes a handful; a directory pasted into a mail
/// could hold thousands, and none of them beyond the first dozens says what the mail is about.
pub const MAX_DEMAND_REFS: usize = 32;

/// `№ <number> от ` / `N <number> от `: the number starts with a digit and may hold letters, `.`, `-`, `/`, `@`.
static NUMBER_FROM: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r"(?:№|(?:^|[^\p{L}\p{N}_])[NН])[ \t\u{a0}]*([0-9](?:[0-9A-Za-zА-Яа-я.\-/@]*[0-9A-Za-zА-Яа-я@])?)\s+от\s+")
        .ok()
});

/// The KPP label in any letter case. `None` only if the constant pattern failed to compile, which
/// the tests rule out; an `Option` keeps a panic path out of production code.
static KPP_LABEL: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new("(?i)кпп").ok());

/// How far after a `КПП` label its value may start, in characters. Long enough for
/// `КПП получателя ..... 165001001` and `ИНН/КПП: 1650991230 / 165001001`, short enough not to
/// reach the next field.
const KPP_WINDOW_CHARS: usize = 40;

/// Extracts the facts of `mail`. Never fails: a mail without identifiers has empty lists.
pub fn extract(mail: &ParsedMail) -> Facts {
    let mut facts = Facts::default();
    let mut seen = Seen::default();
    let texts = std::iter::once(mail.subject.as_str())
        .chain(std::iter::once(mail.text.as_str()))
        .chain(mail.attachments.iter().filter_map(|a| a.text.as_deref()));
    for text in texts {
        scan_digit_runs(text, &mut facts, &mut seen);
        scan_kpps(text, &mut facts, &mut seen);
    }
    facts.demand = mail
        .attachments
        .iter()
        .filter_map(|a| a.text.as_deref())
        // A cheap test first: most text attachments are not envelopes.
        .filter(|t| t.contains("Файл"))
        .find_map(parse_envelope);
    for text in [mail.subject.as_str(), mail.text.as_str()] {
        scan_demand_refs(&unquote(text), &mut facts.demand_refs);
    }
    facts
}

/// The text with the quote markers (`> `) at line starts removed, so a quoted reference reads as written.
fn unquote(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        out.push_str(line.trim_start_matches(['>', ' ', '\t']));
        out.push('\n');
    }
    out
}

/// Appends every `№ <number> от <date>` of `text` not yet in `refs`, up to [`MAX_DEMAND_REFS`].
fn scan_demand_refs(text: &str, refs: &mut Vec<DemandRef>) {
    let Some(re) = NUMBER_FROM.as_ref() else {
        return;
    };
    for c in re.captures_iter(text) {
        if refs.len() >= MAX_DEMAND_REFS {
            return;
        }
        let (Some(whole), Some(number)) = (c.get(0), c.get(1)) else {
            continue;
        };
        let tail = &text[whole.end()..];
        // The date follows at once; 40 characters hold its longest form (`«02» сентября 2026 года`).
        let head: String = tail.chars().take(40).collect();
        let Some((0, date)) = super::dates::find_dates(&head).into_iter().next() else {
            continue;
        };
        let r = DemandRef {
            number: number.as_str().to_owned(),
            date,
        };
        if !refs.contains(&r) {
            refs.push(r);
        }
    }
}

#[derive(Default)]
struct Seen {
    inns: HashSet<String>,
    kpps: HashSet<String>,
    ogrns: HashSet<String>,
}

/// Looks at every maximal run of ASCII digits: 10/12 digits may be an INN, 13/15 an OGRN.
fn scan_digit_runs(text: &str, facts: &mut Facts, seen: &mut Seen) {
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        // Digits are ASCII, so the run is on char boundaries.
        let run = &text[start..i];
        match run.len() {
            10 | 12 => {
                if let Ok(inn) = Inn::parse(run) {
                    if seen.inns.insert(run.to_owned()) {
                        facts.inns.push(inn);
                    }
                }
            }
            13 | 15 => {
                if let Ok(ogrn) = Ogrn::parse(run) {
                    if seen.ogrns.insert(run.to_owned()) {
                        facts.ogrns.push(ogrn);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Finds the value that follows each `КПП` label within `KPP_WINDOW_CHARS` on the same line. Words
/// between label and value are skipped (`КПП получателя`); one INN-length number is skipped too
/// because `ИНН/КПП: 1650991230/165001001` names the INN first; any other number ends the search.
fn scan_kpps(text: &str, facts: &mut Facts, seen: &mut Seen) {
    let Some(re) = KPP_LABEL.as_ref() else {
        return;
    };
    for label in re.find_iter(text) {
        let after = &text[label.end()..];
        let window_end = after
            .char_indices()
            .nth(KPP_WINDOW_CHARS)
            .map_or(after.len(), |(i, _)| i);
        let window = &after[..window_end];
        let window = window.split('\n').next().unwrap_or_default();
        let mut skipped_inn = false;
        for token in window
            .split(|c: char| !c.is_alphanumeric())
            .filter(|t| !t.is_empty())
        {
            if let Ok(kpp) = Kpp::parse(token) {
                if seen.kpps.insert(token.to_owned()) {
                    facts.kpps.push(kpp);
                }
                break;
            }
            let numeric = token.bytes().all(|c| c.is_ascii_digit());
            if numeric && !skipped_inn && (token.len() == 10 || token.len() == 12) {
                skipped_inn = true;
                continue;
            }
            if token.bytes().any(|c| c.is_ascii_digit()) {
                break;
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::mail::parse::Attachment;

    fn mail(subject: &str, text: &str) -> ParsedMail {
        ParsedMail {
            subject: subject.to_owned(),
            text: text.to_owned(),
            ..ParsedMail::default()
        }
    }

    fn strs<T: ToString>(v: &[T]) -> Vec<String> {
        v.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn the_kpp_label_pattern_compiles() {
        assert!(KPP_LABEL.is_some());
        assert!(NUMBER_FROM.is_some());
    }

    #[test]
    fn document_references_are_found_in_own_and_quoted_text() {
        let f = extract(&mail(
            "Re: Требование № 2.4-17/1234 от 02.03.2026",
            "Договор N 15 от «05» февраля 2026 г. приложили.\n> Требование №4521 от 2026-03-02\n\
             > повтор № 2.4-17/1234 от 02.03.2026, ON_DOCNPNO N 7 от чего-то",
        ));
        let got: Vec<(String, String)> = f
            .demand_refs
            .iter()
            .map(|r| (r.number.clone(), r.date.to_string()))
            .collect();
        assert_eq!(
            got,
            [
                ("2.4-17/1234".to_owned(), "2026-03-02".to_owned()),
                ("15".to_owned(), "2026-02-05".to_owned()),
                ("4521".to_owned(), "2026-03-02".to_owned()),
            ]
        );
    }

    #[test]
    fn valid_inns_are_found_once_each_in_order_of_first_appearance() {
        let m = mail(
            "Требование для ИНН 7728997898",
            "ИНН 1650991230, ещё раз 7728997898, ИП 165099000261, неверный 9999000014",
        );
        let f = extract(&m);
        assert_eq!(strs(&f.inns), ["7728997898", "1650991230", "165099000261"]);
    }

    #[test]
    fn an_inn_length_run_inside_a_longer_digit_run_is_not_an_inn() {
        let f = extract(&mail(
            "",
            "счёт 40702810016509912301 и ON_DOCNPNO_1650991230165001001_x, тел. 71650991230",
        ));
        assert!(f.inns.is_empty(), "{:?}", f.inns);
    }

    #[test]
    fn labelled_kpps_are_found_but_other_nine_digit_numbers_are_not() {
        let f = extract(&mail(
            "",
            "ИНН 1650991230, КПП 165001001\nИНН/КПП: 0278994563/027801001\n\
             ИНН / КПП: 7728997898 / 7728AB001\nКПП получателя ..... 772801001\n\
             Номер 123456789 без метки\nИНН 1650991230, КПП\n999888777",
        ));
        assert_eq!(
            strs(&f.kpps),
            ["165001001", "027801001", "7728AB001", "772801001"]
        );
    }

    #[test]
    fn identifiers_in_xml_attributes_are_found() {
        let mut m = mail("", "");
        m.attachments.push(Attachment {
            name: "a.xml".into(),
            mime: "text/xml".into(),
            size: 10,
            text: Some(r#"<НПЮЛ ИННЮЛ="1650991230" КПП="165001001" ОГРН="1021699001235"/>"#.into()),
        });
        let f = extract(&m);
        assert_eq!(strs(&f.inns), ["1650991230"]);
        assert_eq!(strs(&f.kpps), ["165001001"]);
        assert_eq!(strs(&f.ogrns), ["1021699001235"]);
    }

    #[test]
    fn valid_ogrn_and_ogrnip_runs_are_found_and_invalid_ones_are_not() {
        let f = extract(&mail(
            "",
            "ОГРН 1259900000007, ОГРНИП 325990000000016, плохой 1259900000008",
        ));
        assert_eq!(strs(&f.ogrns), ["1259900000007", "325990000000016"]);
    }

    #[test]
    fn the_demand_comes_from_the_first_attachment_that_is_an_envelope() {
        let envelope = r#"<?xml version="1.0"?><Файл><Документ ДатаДок="03.03.2026"><СвНП><НПЮЛ ИННЮЛ="1650991230" КПП="165001001"/></СвНП><ДокНапрИзНО><ИнфСообДок КНД_Док="1165013" НомФайлДок="2817" ДатаФайлДок="02.03.2026"/></ДокНапрИзНО></Документ></Файл>"#;
        let mut m = mail("", "");
        for (name, text) in [("notes.txt", "Файл не найден"), ("env.xml", envelope)] {
            m.attachments.push(Attachment {
                name: name.into(),
                mime: "text/plain".into(),
                size: text.len(),
                text: Some(text.into()),
            });
        }
        let d = extract(&m).demand.unwrap();
        assert_eq!(d.number.as_deref(), Some("2817"));
    }

    /// The labelled corpus end to end: every mail parses with its identity, and the envelope facts
    /// agree with the truth file wherever an envelope is attached.
    #[test]
    fn every_corpus_mail_parses_and_attached_envelopes_give_the_true_demand() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus");
        let truth = std::fs::read_to_string(format!("{dir}/truth.jsonl")).unwrap();
        let (mut with_xml, mut matching, mut inn_found, mut inn_total) = (0, 0, 0, 0);
        let mut mismatches = Vec::new();
        for line in truth.lines().filter(|l| !l.trim().is_empty()) {
            let t: serde_json::Value = serde_json::from_str(line).unwrap();
            let file = t["file"].as_str().unwrap();
            let raw = std::fs::read(format!("{dir}/{file}")).unwrap();
            let m = crate::mail::parse(&raw).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert!(!m.subject.is_empty(), "{file}: empty subject");
            assert_eq!(m.message_id.as_deref(), t["message_id"].as_str(), "{file}");
            assert!(!m.text.is_empty(), "{file}: no text");
            let f = extract(&m);
            if let Some(inn) = t["client_inn"].as_str() {
                inn_total += 1;
                inn_found += usize::from(f.inns.iter().any(|i| i.as_str() == inn));
            }
            let has_envelope = m
                .attachments
                .iter()
                .any(|a| a.name.starts_with("ON_DOCNPNO"));
            if !has_envelope || t["demand"].is_null() {
                continue;
            }
            with_xml += 1;
            let want = (t["demand"]["number"].as_str(), t["demand"]["date"].as_str());
            let got = f
                .demand
                .as_ref()
                .map(|d| (d.number.clone(), d.date.map(|x| x.to_string())));
            if got.as_ref().map(|(n, d)| (n.as_deref(), d.as_deref())) == Some(want) {
                matching += 1;
            } else {
                mismatches.push(format!("{file}: want {want:?}, got {got:?}"));
            }
        }
        println!("envelopes matching truth: {matching}/{with_xml}; client INN among found INNs: {inn_found}/{inn_total}");
        assert!(with_xml >= 40, "only {with_xml} demands with an envelope");
        assert!(matching * 10 >= with_xml * 9, "{mismatches:#?}");
    }
}
