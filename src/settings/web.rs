//! `[web]`: who administers and audits in the web view, and its cookie and session policy.

use serde::Deserialize;

/// A working day and then some: an accountant signs in once a day.
const DEFAULT_SESSION_HOURS: u32 = 12;

/// The web view served on `[http] listen`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSettings {
    /// E-mails (lower-case) of the admins: they see everything and may reprocess and try rules.
    pub admins: Vec<String>,
    /// E-mails (lower-case) of the auditors: they see everything, read-only.
    pub auditors: Vec<String>,
    /// Whether session cookies carry `Secure` (only sent over HTTPS); `false` for plain-HTTP loopback use.
    pub secure_cookies: bool,
    /// How long a sign-in lasts.
    pub session_hours: u32,
    /// Where people reach the web view (`https://taxinbox.firm.example`), for links to a task from elsewhere (a
    /// Bitrix24 task); `None`: no links.
    pub base_url: Option<String>,
    /// The folder under which the admin playground may load candidate rule folders (relative paths in the form are
    /// taken under it); `None`: the playground tries mail against the rules in force only.
    pub playground_root: Option<std::path::PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawWeb {
    admins: Vec<String>,
    auditors: Vec<String>,
    secure_cookies: Option<bool>,
    session_hours: Option<u32>,
    base_url: Option<String>,
    playground_root: Option<std::path::PathBuf>,
}

/// E-mail addresses as the register keeps them: trimmed, lower-case.
fn lower_case_addresses(addresses: &[String]) -> Vec<String> {
    addresses.iter().map(|e| e.trim().to_lowercase()).collect()
}

/// Validates `[web]`.
pub(super) fn validate(
    problems: &mut Vec<String>,
    raw: RawWeb,
    base: &std::path::Path,
) -> WebSettings {
    let web = WebSettings {
        admins: lower_case_addresses(&raw.admins),
        auditors: lower_case_addresses(&raw.auditors),
        secure_cookies: raw.secure_cookies.unwrap_or(true),
        session_hours: raw.session_hours.unwrap_or(DEFAULT_SESSION_HOURS),
        base_url: raw
            .base_url
            .as_deref()
            .map(|u| u.trim().trim_end_matches('/').to_owned())
            .filter(|u| !u.is_empty()),
        playground_root: raw
            .playground_root
            .filter(|p| !p.as_os_str().is_empty())
            .map(|p| base.join(p)),
    };
    if let Some(base) = &web.base_url {
        match reqwest::Url::parse(base) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {}
            _ => problems.push(format!(
                "web.base_url: {base:?} is not an http(s) URL with a host"
            )),
        }
    }
    for email in web.admins.iter().chain(&web.auditors) {
        if !email.contains('@') {
            problems.push(format!("web: {email:?} is not an e-mail address"));
        }
    }
    if web.session_hours == 0 {
        problems.push("web.session_hours: must be at least 1".to_owned());
    }
    web
}

#[cfg(test)]
mod tests {
    use crate::settings::tests::{error_text, load};

    #[test]
    fn web_cookies_are_secure_unless_said_and_admin_addresses_are_lower_cased() {
        let (_dir, settings) = load("", &[]);
        let web = settings.expect("valid").web;
        assert!(web.secure_cookies && web.admins.is_empty() && web.auditors.is_empty());
        assert_eq!(web.session_hours, 12);
        let (_dir, settings) = load(
            "[web]\nadmins = [\" Admin@Firm.example \"]\nauditors = [\"audit@firm.example\"]\nsecure_cookies = false\n",
            &[],
        );
        let web = settings.expect("valid").web;
        assert_eq!(web.admins, ["admin@firm.example"]);
        assert_eq!(web.auditors, ["audit@firm.example"]);
        assert!(!web.secure_cookies);
        assert!(error_text("[web]\nadmins = [\"nobody\"]\n", &[]).contains("web:"));
        assert_eq!(web.base_url, None);
        let (_dir, settings) = load(
            "[web]\nbase_url = \"https://taxinbox.firm.example/\"\n",
            &[],
        );
        assert_eq!(
            settings.expect("valid").web.base_url.as_deref(),
            Some("https://taxinbox.firm.example")
        );
        assert!(error_text("[web]\nbase_url = \"taxinbox\"\n", &[]).contains("web.base_url"));
        let (dir, settings) = load("[web]\nplayground_root = \"candidates\"\n", &[]);
        assert_eq!(
            settings.expect("valid").web.playground_root,
            Some(dir.path().join("candidates"))
        );
    }
}
