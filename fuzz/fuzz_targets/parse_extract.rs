//! Raw bytes through everything taxinbox does to a mail before the rules: `mail::parse` (mail-parser plus our
//! caps and tree walk), `mail::extract` (identifiers, dates, the FNS envelope of XML attachments), and the XML and
//! date readers on their own, and the `mail` object the rules get, fed the same bytes as text.
//!
//! `parse` turns a panic inside mail-parser into an error so one mail cannot stop the service; libFuzzer's panic
//! hook still aborts on it, so the fuzzer reports those panics too.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(mail) = taxinbox::mail::parse(data) {
        let facts = taxinbox::mail::extract(&mail);
        // What the rules see is built from both; building it must not fail either.
        let day = chrono::NaiveDate::from_ymd_opt(2026, 3, 2).unwrap_or_default();
        let _ = std::hint::black_box(taxinbox::rules::mail_object(&mail, &facts, day, "fuzz"));
    }
    let text = String::from_utf8_lossy(data);
    let _ = taxinbox::mail::xml::parse_envelope(&text);
    let _ = taxinbox::mail::dates::find_dates(&text);
    let _ = taxinbox::mail::dates::parse_date(&text);
});
