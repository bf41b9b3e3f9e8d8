//! The production calendar (производственный календарь): which dates are working days, federally and in the
//! regions that have their own holidays, and the working-day arithmetic of ст. 6.1 НК РФ built on it.
//!
//! One TOML file per year (`rules/calendar/production/2026.toml`): the federal `days_off` (weekdays that are not
//! worked) and `working_weekends` (Saturdays/Sundays that are), informational `short_days`, and `[regions.NN]`
//! sections adding a region's own days off or working weekends. A region without a section uses the federal
//! calendar. Nothing is ever extrapolated: a year without a file is [`CalendarError::OutOfRange`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

use chrono::{Datelike, NaiveDate, Weekday};
use serde::Deserialize;

use super::CalendarError;

/// One year's file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawYear {
    year: i32,
    #[serde(default)]
    #[allow(dead_code)] // documentation for people reading the file
    name: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    source: Option<String>,
    #[serde(default)]
    days_off: Vec<NaiveDate>,
    #[serde(default)]
    working_weekends: Vec<NaiveDate>,
    #[serde(default)]
    short_days: Vec<NaiveDate>,
    #[serde(default)]
    regions: BTreeMap<String, RawRegion>,
}

/// One `[regions.NN]` section as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegion {
    #[serde(default)]
    #[allow(dead_code)]
    name: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    source: Option<String>,
    #[serde(default)]
    days_off: Vec<NaiveDate>,
    #[serde(default)]
    working_weekends: Vec<NaiveDate>,
    /// Days off the region's law names whose date for this year is not fixed yet (`["Ураза-байрам"]`): known
    /// missing, so `rules check` warns and the admins are told before the year starts. Never an estimate in
    /// `days_off`.
    #[serde(default)]
    pending: Vec<String>,
}

/// The exceptions to "Monday–Friday are worked" for one year, federally or for one region.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Exceptions {
    /// Weekdays that are not worked (holidays, holidays moved off a weekend, transferred days off).
    days_off: BTreeSet<NaiveDate>,
    /// Saturdays and Sundays that are worked (transfers).
    working_weekends: BTreeSet<NaiveDate>,
}

/// One loaded year.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Year {
    /// The file it came from, for error messages.
    file: String,
    /// The `year` key of the file (the file name is not trusted for it).
    number: i32,
    federal: Exceptions,
    /// Shortened pre-holiday days; kept for display, they are full working days for deadlines.
    short_days: BTreeSet<NaiveDate>,
    /// By region code as written (`"16"`, `"02"`).
    regions: BTreeMap<String, Exceptions>,
    /// A region's days off whose date is not fixed yet (its `pending`), by region code; only non-empty lists.
    pending: BTreeMap<String, Vec<String>>,
}

/// A region's year that is not complete: the region has a section in other years but none in this one (or there is
/// no file for the year at all), or its section lists days off still `pending`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionGap {
    pub year: i32,
    pub region: String,
    /// The year's file; `None` when the year has none.
    pub file: Option<String>,
    /// The pending days off; empty when the section (or the file) is missing.
    pub pending: Vec<String>,
}

impl fmt::Display for RegionGap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.pending.is_empty()) {
            (None, _) => write!(f, "no production calendar for {}", self.year),
            (Some(_), true) => write!(
                f,
                "no [regions.{}] section for {}, though other years have one: its regional days off are not known",
                self.region, self.year
            ),
            (Some(_), false) => write!(
                f,
                "[regions.{}] of {}: the dates of {} are not fixed yet (pending)",
                self.region,
                self.year,
                self.pending.join(", ")
            ),
        }
    }
}

/// Working days by year and region. Built from the files under `rules/calendar/production/`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProductionCalendar {
    years: BTreeMap<i32, Year>,
}

impl ProductionCalendar {
    /// Loads every `*.toml` file of `dir` (one per year, in file-name order). Errors name the file, and the line
    /// when the TOML parser reports one; two files for the same year are an error, and so is a folder with none.
    pub fn load_dir(dir: &Path) -> Result<ProductionCalendar, CalendarError> {
        let files = super::read_toml_files(dir)?;
        if files.is_empty() {
            return Err(CalendarError::NoCalendar {
                dir: dir.to_path_buf(),
            });
        }
        let borrowed: Vec<(&str, &str)> = files
            .iter()
            .map(|(name, content)| (name.as_str(), content.as_str()))
            .collect();
        ProductionCalendar::from_toml_strs(&borrowed)
    }

    /// Builds the calendar from `(file name, content)` pairs; the names only appear in error messages.
    pub fn from_toml_strs(files: &[(&str, &str)]) -> Result<ProductionCalendar, CalendarError> {
        let mut years = BTreeMap::new();
        for &(file, content) in files {
            let raw: RawYear = toml::from_str(content)
                .map_err(|error| CalendarError::from_toml(file, content, &error))?;
            let year = Year::validate(file, raw)?;
            if let Some(first) = years.get(&year.number) {
                let first: &Year = first;
                return Err(CalendarError::DuplicateYear {
                    year: year.number,
                    first: first.file.clone(),
                    second: file.to_owned(),
                });
            }
            years.insert(year.number, year);
        }
        Ok(ProductionCalendar { years })
    }

    /// The years that have a file, ascending.
    pub fn years(&self) -> Vec<i32> {
        self.years.keys().copied().collect()
    }

    /// The regions with a section in at least one year: the regions that have days of their own.
    pub fn regions(&self) -> BTreeSet<String> {
        self.years
            .values()
            .flat_map(|y| y.regions.keys().cloned())
            .collect()
    }

    /// What is missing of `region`'s `year`, if anything; `None` for a complete year and for a region that never
    /// had a section (it follows the federal calendar).
    pub fn region_gap(&self, year: i32, region: &str) -> Option<RegionGap> {
        let region = region.trim();
        if !self.regions().contains(region) {
            return None;
        }
        let gap = |file: Option<&str>, pending: Vec<String>| RegionGap {
            year,
            region: region.to_owned(),
            file: file.map(str::to_owned),
            pending,
        };
        let Some(loaded) = self.years.get(&year) else {
            return Some(gap(None, Vec::new()));
        };
        if !loaded.regions.contains_key(region) {
            return Some(gap(Some(&loaded.file), Vec::new()));
        }
        loaded
            .pending
            .get(region)
            .map(|pending| gap(Some(&loaded.file), pending.clone()))
    }

    /// Every gap of every loaded year, by year and region.
    pub fn region_gaps(&self) -> Vec<RegionGap> {
        let regions = self.regions();
        self.years
            .keys()
            .flat_map(|&year| regions.iter().filter_map(move |r| self.region_gap(year, r)))
            .collect()
    }

    /// Whether `day` is worked in `region` (`None`, empty or a region without its own section = federal).
    ///
    /// A Saturday or Sunday is off unless listed in `working_weekends`; a weekday is worked unless listed in
    /// `days_off`. A region's own lists are applied on top of the federal ones, so a regional holiday on a federal
    /// working Saturday is still off in that region.
    pub fn is_working_day(
        &self,
        day: NaiveDate,
        region: Option<&str>,
    ) -> Result<bool, CalendarError> {
        let year = self.year(day)?;
        let mut working = if is_weekend(day) {
            year.federal.working_weekends.contains(&day)
        } else {
            !year.federal.days_off.contains(&day)
        };
        if let Some(regional) = region
            .map(str::trim)
            .and_then(|code| year.regions.get(code))
        {
            if regional.days_off.contains(&day) {
                working = false;
            } else if regional.working_weekends.contains(&day) {
                working = true;
            }
        }
        Ok(working)
    }

    /// Whether `day` is a shortened pre-holiday working day (informational; it counts as a full working day).
    pub fn is_short_day(&self, day: NaiveDate) -> Result<bool, CalendarError> {
        Ok(self.year(day)?.short_days.contains(&day))
    }

    /// The `n`-th working day after `from` (FORMAT.md convention 2, ст. 6.1 п. 2 НК РФ): `from` itself is never
    /// counted, whether or not it is worked. `n == 0` means "that date itself, moved to the next working day if it
    /// is a day off" (ст. 6.1 п. 7), i.e. [`ProductionCalendar::next_working_day`].
    pub fn add_working_days(
        &self,
        from: NaiveDate,
        n: u32,
        region: Option<&str>,
    ) -> Result<NaiveDate, CalendarError> {
        if n == 0 {
            return self.next_working_day(from, region);
        }
        let mut day = from;
        let mut counted = 0;
        // Each step either counts a day or moves one day closer to the end of the loaded range, where
        // is_working_day errors out; the explicit bound only guards against a bug in that reasoning.
        for _ in 0..self.max_steps(n) {
            day = self.following(day)?;
            if self.is_working_day(day, region)? {
                counted += 1;
                if counted == n {
                    return Ok(day);
                }
            }
        }
        Err(self.out_of_range(day))
    }

    /// `day` if it is a working day in `region`, else the next working day.
    pub fn next_working_day(
        &self,
        day: NaiveDate,
        region: Option<&str>,
    ) -> Result<NaiveDate, CalendarError> {
        let mut candidate = day;
        for _ in 0..self.max_steps(0) {
            if self.is_working_day(candidate, region)? {
                return Ok(candidate);
            }
            candidate = self.following(candidate)?;
        }
        Err(self.out_of_range(candidate))
    }

    /// An upper bound on the days any walk can take: every loaded day once, plus `n`.
    fn max_steps(&self, n: u32) -> u64 {
        (self.years.len() as u64 + 1) * 366 + u64::from(n)
    }

    fn year(&self, day: NaiveDate) -> Result<&Year, CalendarError> {
        self.years
            .get(&day.year())
            .ok_or_else(|| self.out_of_range(day))
    }

    fn following(&self, day: NaiveDate) -> Result<NaiveDate, CalendarError> {
        day.succ_opt().ok_or_else(|| self.out_of_range(day))
    }

    fn out_of_range(&self, date: NaiveDate) -> CalendarError {
        let loaded = if self.years.is_empty() {
            "none".to_owned()
        } else {
            self.years
                .keys()
                .map(i32::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        CalendarError::OutOfRange {
            date,
            year: date.year(),
            loaded,
        }
    }
}

impl Year {
    /// Checks a parsed file: every date lies in `year`, days off are weekdays, working weekends are weekends, no
    /// date is both, region codes are two digits.
    fn validate(file: &str, raw: RawYear) -> Result<Year, CalendarError> {
        let number = raw.year;
        let invalid = |message: String| CalendarError::Invalid {
            file: file.to_owned(),
            message,
        };
        let federal =
            exceptions(number, "", &raw.days_off, &raw.working_weekends, None).map_err(invalid)?;
        let short_days = in_year(number, "short_days", &raw.short_days).map_err(invalid)?;
        let mut regions = BTreeMap::new();
        let mut pending = BTreeMap::new();
        for (code, region) in raw.regions {
            if code.len() != 2 || !code.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid(format!(
                    "[regions.{code}]: a region code is two digits (\"02\", \"16\", \"77\")"
                )));
            }
            let prefix = format!("regions.{code}.");
            let lists = exceptions(
                number,
                &prefix,
                &region.days_off,
                &region.working_weekends,
                Some(&federal),
            )
            .map_err(invalid)?;
            let days: Vec<String> = region
                .pending
                .iter()
                .map(|d| d.trim().to_owned())
                .filter(|d| !d.is_empty())
                .collect();
            if !days.is_empty() {
                pending.insert(code.clone(), days);
            }
            regions.insert(code, lists);
        }
        Ok(Year {
            file: file.to_owned(),
            number,
            federal,
            short_days,
            regions,
            pending,
        })
    }
}

/// Checks one pair of lists (`prefix` is `""` for the federal ones, `"regions.16."` for a region's).
fn exceptions(
    year: i32,
    prefix: &str,
    days_off: &[NaiveDate],
    working_weekends: &[NaiveDate],
    federal: Option<&Exceptions>,
) -> Result<Exceptions, String> {
    let days_off = in_year(year, &format!("{prefix}days_off"), days_off)?;
    let working_weekends = in_year(year, &format!("{prefix}working_weekends"), working_weekends)?;
    // The lists hold exceptions only; a weekend day off would be a typo for another date — except a regional
    // holiday on a Saturday the whole country works.
    let federally_worked =
        |day: &NaiveDate| federal.is_some_and(|f| f.working_weekends.contains(day));
    if let Some(day) = days_off
        .iter()
        .find(|day| is_weekend(**day) && !federally_worked(day))
    {
        return Err(format!(
            "{prefix}days_off: {day} is a {}, already a day off; the list holds weekdays only",
            day.weekday()
        ));
    }
    if let Some(day) = working_weekends.iter().find(|day| !is_weekend(**day)) {
        return Err(format!(
            "{prefix}working_weekends: {day} is a {}, already a working day; the list holds Saturdays and Sundays only",
            day.weekday()
        ));
    }
    Ok(Exceptions {
        days_off,
        working_weekends,
    })
}

/// Collects a list into a set, rejecting dates outside `year` (a likely copy-paste from last year's file).
fn in_year(year: i32, key: &str, days: &[NaiveDate]) -> Result<BTreeSet<NaiveDate>, String> {
    if let Some(day) = days.iter().find(|day| day.year() != year) {
        return Err(format!("{key}: {day} is not in {year}"));
    }
    Ok(days.iter().copied().collect())
}

fn is_weekend(day: NaiveDate) -> bool {
    matches!(day.weekday(), Weekday::Sat | Weekday::Sun)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> ProductionCalendar {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/calendar/production");
        ProductionCalendar::load_dir(&dir).expect("the shipped production calendar loads")
    }

    fn d(s: &str) -> NaiveDate {
        s.parse().expect("test date")
    }

    const GAP_2025: &str = "year = 2025\n[regions.16]\ndays_off = [\"2025-06-06\"]\n[regions.02]\n";
    const GAP_2026: &str =
        "year = 2026\n[regions.16]\npending = [\"Ураза-байрам\", \"Курбан-байрам\"]\n";

    #[test]
    fn a_region_section_missing_in_one_year_and_pending_days_are_gaps_a_federal_region_is_none() {
        let cal =
            ProductionCalendar::from_toml_strs(&[("2025.toml", GAP_2025), ("2026.toml", GAP_2026)])
                .expect("loads");
        let gaps = cal.region_gaps();
        assert_eq!(
            gaps,
            vec![
                RegionGap {
                    year: 2026,
                    region: "02".into(),
                    file: Some("2026.toml".into()),
                    pending: vec![],
                },
                RegionGap {
                    year: 2026,
                    region: "16".into(),
                    file: Some("2026.toml".into()),
                    pending: vec!["Ураза-байрам".into(), "Курбан-байрам".into()],
                },
            ]
        );
        assert!(gaps[1].to_string().contains("Ураза-байрам, Курбан-байрам"));
        // Moscow never had a section: the federal calendar is all it needs.
        assert_eq!(cal.region_gap(2026, "77"), None);
        assert_eq!(cal.region_gap(2025, "16"), None);
        // A year without a file is a gap for every region with days of its own.
        assert_eq!(cal.region_gap(2027, "16").map(|g| g.file), Some(None));
        // The pending days are no days off: 2026 in region 16 is federal until they are fixed.
        assert_eq!(
            working_days_in(&cal, 2026, Some("16")),
            working_days_in(&cal, 2026, None)
        );
    }

    #[test]
    fn the_shipped_2027_calendar_names_the_unfixed_lunar_holidays_of_16_and_02_as_pending() {
        let cal = shipped();
        for region in ["16", "02"] {
            let gap = cal.region_gap(2027, region).expect("pending in 2027");
            assert_eq!(gap.pending, ["Ураза-байрам", "Курбан-байрам"], "{region}");
        }
        assert_eq!(cal.region_gap(2026, "16"), None);
    }

    fn working_days_in(cal: &ProductionCalendar, year: i32, region: Option<&str>) -> usize {
        let mut day = NaiveDate::from_ymd_opt(year, 1, 1).expect("1 January");
        let mut count = 0;
        while day.year() == year {
            if cal.is_working_day(day, region).expect("in range") {
                count += 1;
            }
            day = day.succ_opt().expect("next day");
        }
        count
    }

    #[test]
    fn the_shipped_calendar_covers_2025_to_2027() {
        assert_eq!(shipped().years(), vec![2025, 2026, 2027]);
    }

    #[test]
    fn each_shipped_year_has_247_federal_working_days() {
        let cal = shipped();
        for year in [2025, 2026, 2027] {
            assert_eq!(working_days_in(&cal, year, None), 247, "{year}");
        }
    }

    #[test]
    fn a_transferred_working_saturday_is_worked() {
        let cal = shipped();
        assert!(cal.is_working_day(d("2025-11-01"), None).expect("2025"));
        assert!(!cal.is_working_day(d("2025-11-08"), None).expect("2025"));
    }

    #[test]
    fn march_9_2026_is_a_federal_holiday() {
        assert!(!shipped()
            .is_working_day(d("2026-03-09"), None)
            .expect("2026"));
    }

    #[test]
    fn uraza_bayram_2026_is_off_in_tatarstan_and_bashkortostan_only() {
        let cal = shipped();
        let day = d("2026-03-20");
        assert!(cal.is_working_day(day, None).expect("2026"));
        assert!(!cal.is_working_day(day, Some("16")).expect("2026"));
        assert!(!cal.is_working_day(day, Some("02")).expect("2026"));
        assert!(cal.is_working_day(day, Some("77")).expect("2026"));
        assert!(cal.is_working_day(day, Some("")).expect("2026"));
    }

    #[test]
    fn a_region_without_a_section_counts_like_the_federal_calendar() {
        let cal = shipped();
        for region in ["77", "78", "50", ""] {
            let from = d("2026-03-17");
            assert_eq!(
                cal.add_working_days(from, 5, Some(region)).expect("2026"),
                cal.add_working_days(from, 5, None).expect("2026"),
                "region {region:?}"
            );
        }
    }

    #[test]
    fn a_regional_holiday_pushes_a_regional_deadline_by_a_day() {
        let cal = shipped();
        // Thu 19.03 + 1 working day: Fri 20.03 federally, Mon 23.03 in Tatarstan.
        assert_eq!(
            cal.add_working_days(d("2026-03-19"), 1, None)
                .expect("2026"),
            d("2026-03-20")
        );
        assert_eq!(
            cal.add_working_days(d("2026-03-19"), 1, Some("16"))
                .expect("2026"),
            d("2026-03-23")
        );
    }

    #[test]
    fn the_start_date_is_never_counted_even_when_it_is_a_day_off() {
        let cal = shipped();
        // Sat 07.03.2026 + 1: Sun 08, Mon 09 (holiday) are off, Tue 10.03 is the first working day after.
        assert_eq!(
            cal.add_working_days(d("2026-03-07"), 1, None)
                .expect("2026"),
            d("2026-03-10")
        );
        // Fri 06.03 + 1 is the same Tue 10.03.
        assert_eq!(
            cal.add_working_days(d("2026-03-06"), 1, None)
                .expect("2026"),
            d("2026-03-10")
        );
    }

    #[test]
    fn zero_working_days_on_a_day_off_moves_to_the_next_working_day() {
        let cal = shipped();
        assert_eq!(
            cal.add_working_days(d("2026-03-07"), 0, None)
                .expect("2026"),
            d("2026-03-10")
        );
        assert_eq!(
            cal.next_working_day(d("2026-03-07"), None).expect("2026"),
            d("2026-03-10")
        );
    }

    #[test]
    fn zero_working_days_on_a_working_day_is_that_day() {
        let cal = shipped();
        assert_eq!(
            cal.add_working_days(d("2026-03-10"), 0, None)
                .expect("2026"),
            d("2026-03-10")
        );
    }

    #[test]
    fn counting_crosses_from_one_loaded_year_into_the_next() {
        let cal = shipped();
        // Tue 30.12.2025 + 1: 31.12 is off, 01–08.01 are off, Fri 09.01.2026 is a day off by transfer too.
        assert_eq!(
            cal.add_working_days(d("2025-12-30"), 1, None)
                .expect("loaded"),
            d("2026-01-12")
        );
    }

    #[test]
    fn a_year_without_a_file_is_out_of_range_not_guessed() {
        let cal = shipped();
        let error = cal
            .is_working_day(d("2024-12-30"), None)
            .expect_err("2024 has no file");
        assert!(
            matches!(error, CalendarError::OutOfRange { year: 2024, .. }),
            "{error}"
        );
        assert!(error.to_string().contains("2024"), "{error}");
        assert!(cal.add_working_days(d("2027-12-30"), 5, None).is_err());
        assert!(cal.next_working_day(d("2027-12-31"), None).is_err());
    }

    #[test]
    fn two_files_for_the_same_year_are_an_error_naming_both() {
        let file = "year = 2030\ndays_off = []\n";
        let error = ProductionCalendar::from_toml_strs(&[("a.toml", file), ("b.toml", file)])
            .expect_err("duplicate year");
        let message = error.to_string();
        assert!(
            message.contains("a.toml") && message.contains("b.toml") && message.contains("2030"),
            "{message}"
        );
    }

    #[test]
    fn a_bad_date_is_reported_with_file_and_line() {
        let file = "year = 2030\n\ndays_off = [\"2030-02-30\"]\n";
        let error =
            ProductionCalendar::from_toml_strs(&[("2030.toml", file)]).expect_err("bad date");
        assert!(
            matches!(&error, CalendarError::Parse { file, line: Some(3), .. } if file == "2030.toml"),
            "{error:?}"
        );
        assert!(error.to_string().starts_with("2030.toml:3:"), "{error}");
    }

    #[test]
    fn an_unknown_key_is_an_error() {
        let file = "year = 2030\nholidays = []\n";
        let error =
            ProductionCalendar::from_toml_strs(&[("2030.toml", file)]).expect_err("unknown key");
        assert!(error.to_string().contains("holidays"), "{error}");
    }

    #[test]
    fn a_date_from_another_year_is_rejected() {
        let file = "year = 2030\ndays_off = [\"2029-01-01\"]\n";
        let error =
            ProductionCalendar::from_toml_strs(&[("2030.toml", file)]).expect_err("wrong year");
        assert!(error.to_string().contains("2029-01-01"), "{error}");
    }

    #[test]
    fn a_weekend_listed_as_a_day_off_is_rejected_as_a_likely_typo() {
        let file = "year = 2030\ndays_off = [\"2030-01-05\"]\n"; // a Saturday
        assert!(ProductionCalendar::from_toml_strs(&[("2030.toml", file)]).is_err());
    }

    #[test]
    fn a_regional_holiday_on_a_federal_working_saturday_is_off_in_that_region() {
        let file = "year = 2030\nworking_weekends = [\"2030-01-05\"]\n[regions.16]\ndays_off = [\"2030-01-05\"]\n";
        let cal = ProductionCalendar::from_toml_strs(&[("2030.toml", file)]).expect("valid");
        assert!(cal.is_working_day(d("2030-01-05"), None).expect("2030"));
        assert!(!cal
            .is_working_day(d("2030-01-05"), Some("16"))
            .expect("2030"));
    }

    #[test]
    fn a_folder_without_calendars_is_an_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert!(matches!(
            ProductionCalendar::load_dir(dir.path()),
            Err(CalendarError::NoCalendar { .. })
        ));
    }

    #[test]
    fn an_all_days_off_year_ends_in_an_error_not_a_loop() {
        let mut days = Vec::new();
        let mut day = d("2030-01-01");
        while day.year() == 2030 {
            if !is_weekend(day) {
                days.push(format!("\"{day}\""));
            }
            day = day.succ_opt().expect("next day");
        }
        let file = format!("year = 2030\ndays_off = [{}]\n", days.join(","));
        let cal = ProductionCalendar::from_toml_strs(&[("2030.toml", &file)]).expect("valid");
        assert!(cal.add_working_days(d("2030-01-01"), 1, None).is_err());
        assert!(cal.next_working_day(d("2030-01-01"), None).is_err());
    }
}
