//! Property tests of the two pieces of arithmetic every deadline and client match rests on: the check digits of
//! `Inn`, `Kpp` and `Ogrn` (generated valid numbers parse and round-trip; single-digit changes are rejected except
//! in the one blind spot of the FNS formula, which the tests name), and working-day arithmetic on the shipped
//! production calendars (`rules/calendar/production`), federal and regional.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step is the test failing

use chrono::{Duration, NaiveDate};
use proptest::prelude::*;
use std::sync::LazyLock;
use taxinbox::calendar::ProductionCalendar;
use taxinbox::ids::{is_valid_inn, Inn, Kpp, Ogrn};

/// `cases` per property; a failing input is saved beside this file (`props.proptest-regressions`, to be committed)
/// and tried first on every later run.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions"),
        )),
        ..ProptestConfig::default()
    }
}

// ---- identifiers ---------------------------------------------------------------------------------------------

/// The FNS formulas, written out here as the specification the type is tested against.
const INN10: [u64; 9] = [2, 4, 10, 3, 5, 9, 4, 6, 8];
const INN12_11: [u64; 10] = [7, 2, 4, 10, 3, 5, 9, 4, 6, 8];
const INN12_12: [u64; 11] = [3, 7, 2, 4, 10, 3, 5, 9, 4, 6, 8];

fn weighted_remainder(digits: &[u8], weights: &[u64]) -> u64 {
    digits
        .iter()
        .zip(weights)
        .map(|(&d, w)| u64::from(d) * w)
        .sum::<u64>()
        % 11
}

fn to_string(digits: &[u8]) -> String {
    digits.iter().map(|d| char::from(b'0' + d)).collect()
}

fn with_inn10_check(mut body: Vec<u8>) -> Vec<u8> {
    body.push((weighted_remainder(&body, &INN10) % 10) as u8);
    body
}

fn with_inn12_checks(mut body: Vec<u8>) -> Vec<u8> {
    body.push((weighted_remainder(&body, &INN12_11) % 10) as u8);
    body.push((weighted_remainder(&body, &INN12_12) % 10) as u8);
    body
}

fn ogrn_remainder(body: &[u8]) -> u64 {
    let modulus = if body.len() == 12 { 11 } else { 13 };
    body.iter().fold(0u64, |n, &d| n * 10 + u64::from(d)) % modulus
}

fn with_ogrn_check(mut body: Vec<u8>) -> Vec<u8> {
    body.push((ogrn_remainder(&body) % 10) as u8);
    body
}

fn digits(n: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(0u8..10, n)
}

/// A position of a `len`-digit number and a different digit to put there.
fn change(len: usize) -> impl Strategy<Value = (usize, u8)> {
    (0..len, 1u8..10)
}

fn changed(number: &[u8], (at, by): (usize, u8)) -> Vec<u8> {
    let mut out = number.to_vec();
    out[at] = (out[at] + by) % 10;
    out
}

/// `a` and `b` print the same check digit although they differ: the remainder 10 (and for mod 13 also 11, 12)
/// is written as its last digit, so a change moving the remainder between them is invisible to any such formula.
fn aliased(a: u64, b: u64) -> bool {
    a != b && a % 10 == b % 10
}

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn a_generated_inn_parses_and_round_trips(body10 in digits(9), body12 in digits(10)) {
        for number in [with_inn10_check(body10), with_inn12_checks(body12)] {
            let s = to_string(&number);
            let inn = Inn::parse(&s).unwrap();
            prop_assert!(is_valid_inn(&s));
            prop_assert_eq!(inn.as_str(), s.as_str());
            prop_assert_eq!(inn.to_string(), s.clone());
            prop_assert_eq!(s.parse::<Inn>().unwrap(), inn.clone());
            prop_assert_eq!(Inn::try_from(s.clone()).unwrap(), inn.clone());
            prop_assert_eq!(String::from(inn.clone()), s.clone());
            let json = serde_json::to_string(&inn).unwrap();
            prop_assert_eq!(serde_json::from_str::<Inn>(&json).unwrap(), inn.clone());
            prop_assert_eq!(inn.is_individual(), s.len() == 12);
        }
    }

    #[test]
    fn a_single_digit_change_of_a_10_digit_inn_is_rejected_outside_the_formulas_blind_spot(
        body in digits(9), at in change(10)
    ) {
        let valid = with_inn10_check(body);
        let wrong = changed(&valid, at);
        let accepted = Inn::parse(&to_string(&wrong)).is_ok();
        if at.0 == 9 {
            prop_assert!(!accepted, "check digit changed: {}", to_string(&wrong));
        } else {
            let (before, after) = (weighted_remainder(&valid[..9], &INN10), weighted_remainder(&wrong[..9], &INN10));
            prop_assert_eq!(accepted, aliased(before, after), "{} -> {}", to_string(&valid), to_string(&wrong));
        }
    }

    #[test]
    fn a_single_digit_change_of_a_12_digit_inn_is_rejected_outside_the_formulas_blind_spot(
        body in digits(10), at in change(12)
    ) {
        let valid = with_inn12_checks(body);
        let wrong = changed(&valid, at);
        let accepted = Inn::parse(&to_string(&wrong)).is_ok();
        if at.0 >= 10 {
            prop_assert!(!accepted, "check digit changed: {}", to_string(&wrong));
        } else if accepted {
            // Both check digits had to miss the change.
            prop_assert!(aliased(weighted_remainder(&valid[..10], &INN12_11), weighted_remainder(&wrong[..10], &INN12_11)));
            prop_assert!(aliased(weighted_remainder(&valid[..11], &INN12_12), weighted_remainder(&wrong[..11], &INN12_12)));
        }
    }

    #[test]
    fn a_generated_ogrn_parses_round_trips_and_a_changed_digit_is_rejected_outside_the_blind_spot(
        body13 in digits(12), body15 in digits(14), at13 in change(13), at15 in change(15)
    ) {
        for (number, at) in [(with_ogrn_check(body13), at13), (with_ogrn_check(body15), at15)] {
            let s = to_string(&number);
            let ogrn = Ogrn::parse(&s).unwrap();
            prop_assert_eq!(ogrn.as_str(), s.as_str());
            prop_assert_eq!(s.parse::<Ogrn>().unwrap(), ogrn.clone());
            prop_assert_eq!(ogrn.is_individual(), s.len() == 15);
            let json = serde_json::to_string(&ogrn).unwrap();
            prop_assert_eq!(serde_json::from_str::<Ogrn>(&json).unwrap(), ogrn);

            let last = number.len() - 1;
            let wrong = changed(&number, at);
            let accepted = Ogrn::parse(&to_string(&wrong)).is_ok();
            if at.0 == last {
                prop_assert!(!accepted, "check digit changed: {}", to_string(&wrong));
            } else {
                let aliasing = aliased(ogrn_remainder(&number[..last]), ogrn_remainder(&wrong[..last]));
                prop_assert_eq!(accepted, aliasing, "{} -> {}", s, to_string(&wrong));
            }
        }
    }

    #[test]
    fn a_kpp_is_four_digits_two_digits_or_capitals_three_digits_and_round_trips(
        office in digits(4), reason in proptest::collection::vec(prop_oneof![0u8..10, 17u8..43], 2), tail in digits(3)
    ) {
        // 17..43 added to b'0' are 'A'..='Z'.
        let mut s = to_string(&office);
        s.extend(reason.iter().map(|&c| char::from(b'0' + c)));
        s.push_str(&to_string(&tail));
        let kpp = Kpp::parse(&s).unwrap();
        prop_assert_eq!(kpp.as_str(), s.as_str());
        let json = serde_json::to_string(&kpp).unwrap();
        prop_assert_eq!(serde_json::from_str::<Kpp>(&json).unwrap(), kpp);
        // A letter where only digits belong, a lower-case letter, a digit too few or too many: refused.
        for wrong in [format!("A{}", &s[1..]), format!("{}{}", &s[..8], 'Z'), s.to_lowercase().replacen(|c: char| c.is_ascii_digit(), "x", 1), s[..8].to_owned(), format!("{s}0")] {
            prop_assert!(Kpp::parse(&wrong).is_err(), "{}", wrong);
        }
    }

    #[test]
    fn any_string_that_is_not_all_digits_of_the_right_length_is_never_an_inn_or_ogrn(s in "\\PC{0,16}") {
        let all_digits = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !(all_digits && matches!(s.len(), 10 | 12)) {
            prop_assert!(Inn::parse(&s).is_err());
        }
        if !(all_digits && matches!(s.len(), 13 | 15)) {
            prop_assert!(Ogrn::parse(&s).is_err());
        }
    }
}

// ---- working days --------------------------------------------------------------------------------------------

static CALENDAR: LazyLock<ProductionCalendar> = LazyLock::new(|| {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/calendar/production");
    ProductionCalendar::load_dir(&dir).expect("the shipped production calendars")
});

/// The federal calendar, two regions with their own holidays (Tatarstan, Bashkortostan) and Moscow (no section
/// of its own: federal).
const REGIONS: [Option<&str>; 4] = [None, Some("16"), Some("02"), Some("77")];

/// A start date and counts that keep every walk inside the shipped years: starts from the first loaded January to
/// the middle of the last year, at most 60 + 60 working days (well under half a year) ahead.
fn start() -> impl Strategy<Value = NaiveDate> {
    let years = CALENDAR.years();
    let first = NaiveDate::from_ymd_opt(years[0], 1, 1).unwrap();
    let last = NaiveDate::from_ymd_opt(*years.last().unwrap(), 6, 30).unwrap();
    (0..=(last - first).num_days()).prop_map(move |d| first + Duration::days(d))
}

fn region() -> impl Strategy<Value = Option<&'static str>> {
    proptest::sample::select(REGIONS.to_vec())
}

fn add(d: NaiveDate, n: u32, region: Option<&str>) -> NaiveDate {
    CALENDAR.add_working_days(d, n, region).unwrap()
}

fn working(d: NaiveDate, region: Option<&str>) -> bool {
    CALENDAR.is_working_day(d, region).unwrap()
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn adding_working_days_lands_on_a_working_day_with_exactly_n_working_days_counted(
        d in start(), n in 0u32..60, region in region()
    ) {
        let due = add(d, n, region);
        prop_assert!(working(due, region), "{due} is not worked in {region:?}");
        prop_assert!(due >= d);
        // `from` itself is never counted; n working days lie in (d, due].
        if n > 0 {
            let mut counted = 0;
            let mut day = d;
            while day < due {
                day = day.succ_opt().unwrap();
                counted += u32::from(working(day, region));
            }
            prop_assert_eq!(counted, n, "{} + {} = {} in {:?}", d, n, due, region);
        }
    }

    #[test]
    fn adding_more_working_days_ends_strictly_later(d in start(), n in 0u32..60, k in 1u32..60, region in region()) {
        // Adding 0 to a day off lands on the next working day, which is also where adding 1 lands: "strictly later"
        // holds from a working day, or from one working day on.
        prop_assume!(n >= 1 || working(d, region));
        prop_assert!(add(d, n, region) < add(d, n + k, region));
    }

    #[test]
    fn adding_n_then_m_equals_adding_n_plus_m(d in start(), n in 1u32..60, m in 0u32..60, region in region()) {
        // n ≥ 1 (or a worked start): adding 0 to a day off moves it to the next working day, which then counts.
        prop_assert_eq!(add(add(d, n, region), m, region), add(d, n + m, region));
        if working(d, region) {
            prop_assert_eq!(add(add(d, 0, region), m, region), add(d, m, region));
        }
    }

    #[test]
    fn the_next_working_day_is_the_first_worked_day_from_d_and_idempotent(d in start(), region in region()) {
        let next = CALENDAR.next_working_day(d, region).unwrap();
        prop_assert!(working(next, region));
        prop_assert_eq!(CALENDAR.next_working_day(next, region).unwrap(), next);
        prop_assert_eq!(next == d, working(d, region));
        let mut day = d;
        while day < next {
            prop_assert!(!working(day, region), "{} is worked but was skipped", day);
            day = day.succ_opt().unwrap();
        }
        prop_assert_eq!(add(d, 0, region), next);
    }

    #[test]
    fn a_region_without_a_section_of_its_own_follows_the_federal_calendar(d in start()) {
        // Moscow (77) has no section in the shipped files.
        prop_assert_eq!(working(d, Some("77")), working(d, None));
        prop_assert_eq!(
            CALENDAR.add_working_days(d, 10, Some("77")).unwrap(),
            CALENDAR.add_working_days(d, 10, None).unwrap()
        );
    }
}

#[test]
fn a_date_outside_the_loaded_years_is_an_error_never_a_guess() {
    let years = CALENDAR.years();
    let before = NaiveDate::from_ymd_opt(years[0] - 1, 6, 1).unwrap();
    let after = NaiveDate::from_ymd_opt(*years.last().unwrap() + 1, 6, 1).unwrap();
    for d in [before, after] {
        assert!(CALENDAR.is_working_day(d, None).is_err(), "{d}");
        assert!(CALENDAR.next_working_day(d, None).is_err(), "{d}");
        assert!(CALENDAR.add_working_days(d, 1, None).is_err(), "{d}");
    }
    // Walking off the end of the last year is an error too.
    let late = NaiveDate::from_ymd_opt(*years.last().unwrap(), 12, 1).unwrap();
    assert!(CALENDAR.add_working_days(late, 400, None).is_err());
}
