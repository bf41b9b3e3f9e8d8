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
    /// The reverse proxies (addresses or CIDR networks) whose `X-Forwarded-For` is believed: the sign-in limits
    /// then count the address the proxy saw, not the proxy's. Empty: the connection's address counts.
    pub trusted_proxies: Vec<IpNet>,
    /// The folder under which the admin playground may load candidate rule folders (relative paths in the form are
    /// taken under it); `None`: the playground tries mail against the rules in force only.
    pub playground_root: Option<std::path::PathBuf>,
}

/// An address network: `10.0.0.0/8`, `::1/128`, or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    address: std::net::IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Whether `ip` lies in the network (an IPv4-mapped IPv6 address counts as its IPv4 one).
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr;
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.address, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl std::str::FromStr for IpNet {
    type Err = String;

    fn from_str(text: &str) -> Result<IpNet, String> {
        let (address, prefix) = match text.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text.trim(), None),
        };
        let address: std::net::IpAddr = address
            .parse()
            .map_err(|_| format!("{text:?} is not an address or network such as 10.0.0.0/8"))?;
        let max = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{text:?}: the prefix length must be 0 to {max}"))?,
            None => max,
        };
        Ok(IpNet { address, prefix })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawWeb {
    admins: Vec<String>,
    auditors: Vec<String>,
    secure_cookies: Option<bool>,
    session_hours: Option<u32>,
    base_url: Option<String>,
    trusted_proxies: Vec<String>,
    playground_root: Option<std::path::PathBuf>,
}

/// E-mail addresses as the directory keeps them: trimmed, lower-case.
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
        trusted_proxies: raw
            .trusted_proxies
            .iter()
            .filter_map(|p| match p.parse() {
                Ok(net) => Some(net),
                Err(e) => {
                    problems.push(format!("web.trusted_proxies: {e}"));
                    None
                }
            })
            .collect(),
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

    #[test]
    fn trusted_proxies_are_addresses_or_networks() {
        let (_dir, settings) = load(
            "[web]\ntrusted_proxies = [\"127.0.0.1\", \"10.0.0.0/8\", \"fd00::/8\"]\n",
            &[],
        );
        let nets = settings.expect("valid").web.trusted_proxies;
        let has = |ip: &str| nets.iter().any(|n| n.contains(ip.parse().expect("ip")));
        assert!(has("127.0.0.1") && has("10.1.2.3") && has("fd12::1") && has("::ffff:10.0.0.1"));
        assert!(!has("127.0.0.2") && !has("11.0.0.1") && !has("fe80::1"));
        assert!(error_text("[web]\ntrusted_proxies = [\"proxy\"]\n", &[])
            .contains("web.trusted_proxies"));
        assert!(
            error_text("[web]\ntrusted_proxies = [\"10.0.0.0/33\"]\n", &[])
                .contains("web.trusted_proxies")
        );
    }
}
