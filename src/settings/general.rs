//! `[general]`: the zone a mail's date is read in, and the language of notifications.

use serde::Deserialize;

/// Russian tax deadlines are counted in Moscow dates (FORMAT.md convention 1).
const DEFAULT_TIMEZONE: &str = "Europe/Moscow";
/// The firm, its clients and the tax office write Russian.
const DEFAULT_LANGUAGE: &str = "ru";

/// Time zone and language.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneralSettings {
    /// The zone a mail's `Date:` header is converted to for its received date.
    pub timezone: chrono_tz::Tz,
    /// Language of notifications and messages (`ru`).
    pub language: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawGeneral {
    timezone: Option<String>,
    language: Option<String>,
}

/// Validates `[general]`; `None` when the time zone is not one (the problem is recorded).
pub(super) fn validate(problems: &mut Vec<String>, raw: RawGeneral) -> Option<GeneralSettings> {
    let timezone_text = raw.timezone.unwrap_or_else(|| DEFAULT_TIMEZONE.to_owned());
    let timezone = match timezone_text.trim().parse::<chrono_tz::Tz>() {
        Ok(zone) => Some(zone),
        Err(_) => {
            problems.push(format!(
                "general.timezone: {timezone_text:?} is not an IANA time zone such as Europe/Moscow"
            ));
            None
        }
    };
    let language = raw
        .language
        .unwrap_or_else(|| DEFAULT_LANGUAGE.to_owned())
        .trim()
        .to_owned();
    if language.is_empty() {
        problems.push("general.language: empty".to_owned());
    }
    Some(GeneralSettings {
        timezone: timezone?,
        language,
    })
}
