//! Calendar dates as they are written in Russian business mail and FNS documents: `15.03.2026`,
//! `2026-03-15`, `15 марта 2026 г.`, `«15» марта 2026 года`.
//!
//! Only full dates with a four-digit year are recognised; a bare `15.03` is too ambiguous to set a
//! legal deadline from.

use chrono::NaiveDate;
use regex::Regex;
use std::sync::LazyLock;

/// One pattern for all forms so a single left-to-right pass yields the dates in text order.
/// Digit boundaries are checked by hand afterwards because the regex crate has no look-around.
/// `None` only if the constant pattern failed to compile, which the tests rule out; keeping it an
/// `Option` avoids a panic path in production code.
static DATE_RE: LazyLock<Option<Regex>> = LazyLock::new(|| {
    let pattern = concat!(
        r"(?i)",
        // dd.mm.yyyy
        r"(?P<d1>[0-9]{1,2})\.(?P<m1>[0-9]{1,2})\.(?P<y1>[0-9]{4})",
        // yyyy-mm-dd
        r"|(?P<y2>[0-9]{4})-(?P<m2>[0-9]{2})-(?P<d2>[0-9]{2})",
        // «dd» month yyyy [г.|года]
        r"|(?:«[ \t\u{a0}]*)?(?P<d3>[0-9]{1,2})(?:[ \t\u{a0}]*»)?[ \t\u{a0}]+",
        r"(?P<mon>января|февраля|марта|апреля|мая|июня|июля|августа|сентября|октября|ноября|декабря)",
        r"[ \t\u{a0}]+(?P<y3>[0-9]{4})(?:[ \t\u{a0}]*(?:года|г\.|г\b))?",
    );
    Regex::new(pattern).ok()
});

/// The months in the genitive, as a date writes them (`15 марта 2026`), January first.
pub const MONTHS_GENITIVE: [&str; 12] = [
    "января",
    "февраля",
    "марта",
    "апреля",
    "мая",
    "июня",
    "июля",
    "августа",
    "сентября",
    "октября",
    "ноября",
    "декабря",
];

fn month_number(name: &str) -> Option<u32> {
    let lower = name.to_lowercase();
    MONTHS_GENITIVE
        .iter()
        .position(|m| *m == lower)
        .and_then(|i| u32::try_from(i + 1).ok())
}

/// Every date in `text` with the byte range it occupies.
fn scan(text: &str) -> impl Iterator<Item = (usize, usize, NaiveDate)> + '_ {
    let bytes = text.as_bytes();
    DATE_RE
        .iter()
        .flat_map(move |re| re.captures_iter(text))
        .filter_map(move |c| {
            let whole = c.get(0)?;
            let (start, end) = (whole.start(), whole.end());
            // Digits glued to other digits belong to some longer number (an account, a file name).
            let glued_before = start > 0 && bytes[start - 1].is_ascii_digit();
            let glued_after = bytes.get(end).is_some_and(u8::is_ascii_digit);
            if glued_before || glued_after {
                return None;
            }
            let num = |name: &str| c.name(name).and_then(|m| m.as_str().parse::<u32>().ok());
            let (y, m, d) = if c.name("d1").is_some() {
                (num("y1")?, num("m1")?, num("d1")?)
            } else if c.name("y2").is_some() {
                (num("y2")?, num("m2")?, num("d2")?)
            } else {
                (
                    num("y3")?,
                    month_number(c.name("mon")?.as_str())?,
                    num("d3")?,
                )
            };
            let date = NaiveDate::from_ymd_opt(i32::try_from(y).ok()?, m, d)?;
            Some((start, end, date))
        })
}

/// Parses a string that is exactly one date (surrounding whitespace ignored).
pub fn parse_date(s: &str) -> Option<NaiveDate> {
    let s = s.trim();
    let (start, end, date) = scan(s).next()?;
    (start == 0 && end == s.len()).then_some(date)
}

/// Every date in `text`, with the byte offset where it starts, in text order. Impossible calendar
/// dates (31.02.2026) and digit runs glued to other digits are skipped.
pub fn find_dates(text: &str) -> Vec<(usize, NaiveDate)> {
    scan(text).map(|(start, _, date)| (start, date)).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    fn ymd(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn the_date_pattern_compiles() {
        assert!(DATE_RE.is_some());
    }

    #[test]
    fn every_supported_form_parses_as_one_date() {
        let d = ymd(2026, 3, 15);
        for s in [
            "15.03.2026",
            "2026-03-15",
            "15 марта 2026",
            "15 марта 2026 г.",
            "15 марта 2026 г",
            "15 марта 2026 года",
            "«15» марта 2026 года",
            "« 15 » марта 2026",
            "  15 МАРТА 2026  ",
        ] {
            assert_eq!(parse_date(s), Some(d), "{s:?}");
        }
        assert_eq!(parse_date("«02» марта 2026"), Some(ymd(2026, 3, 2)));
        assert_eq!(parse_date("2.3.2026"), Some(ymd(2026, 3, 2)));
        assert_eq!(parse_date("1 января 2027"), Some(ymd(2027, 1, 1)));
        assert_eq!(parse_date("31 декабря 2025 г."), Some(ymd(2025, 12, 31)));
    }

    #[test]
    fn a_string_with_more_than_one_date_or_extra_words_is_not_a_date() {
        for s in [
            "",
            "15.03.2026 и 16.03.2026",
            "до 15.03.2026",
            "15.03",
            "15 мартобря 2026",
            "31.02.2026",
            "2026-13-01",
        ] {
            assert_eq!(parse_date(s), None, "{s:?}");
        }
    }

    #[test]
    fn find_dates_returns_every_date_with_its_byte_offset_in_order() {
        let text =
            "Требование № 12 от 02.03.2026, направлено «03» марта 2026 г.; срок до 2026-03-20.";
        let found = find_dates(text);
        let dates: Vec<_> = found.iter().map(|(_, d)| *d).collect();
        assert_eq!(
            dates,
            vec![ymd(2026, 3, 2), ymd(2026, 3, 3), ymd(2026, 3, 20)]
        );
        assert_eq!(&text[found[0].0..found[0].0 + 10], "02.03.2026");
        assert!(text[found[1].0..].starts_with("«03»"));
        assert!(text[found[2].0..].starts_with("2026-03-20"));
    }

    #[test]
    fn impossible_calendar_dates_are_skipped() {
        assert_eq!(
            find_dates("31.02.2026 29.02.2026 28.02.2026 30 февраля 2026"),
            vec![(22, ymd(2026, 2, 28))]
        );
    }

    #[test]
    fn digits_glued_to_other_digits_are_not_dates() {
        assert!(find_dates("счёт 4070281015.03.202612345").is_empty());
        assert!(find_dates("115.03.2026").is_empty());
        assert!(find_dates("15.03.20261").is_empty());
        assert!(find_dates("12026-03-15").is_empty());
        assert_eq!(find_dates("(15.03.2026)"), vec![(1, ymd(2026, 3, 15))]);
    }
}
