//! Sign-in, sessions, roles and CSRF for the web view.
//!
//! - Passwords are argon2 hashes set with `taxinbox user set-password EMAIL` ([`set_password`]); only people the
//!   firm knows may have one: the directory's staff and the configured `[web] admins` / `auditors`.
//! - A session id is 32 random bytes in an `HttpOnly`, `SameSite=Strict` (and, unless configured off for
//!   plain-HTTP loopback use, `Secure`) cookie; the store keeps only its SHA-256, with an expiry.
//! - Every POST form carries the session's CSRF token; the sign-in form a double-submit token of its own.
//! - Every sign-in attempt is claimed in the store before its password is checked, per account and per address,
//!   in one transaction with a conditional upsert ([`store::claim_sign_in_attempt`]): concurrent attempts cannot
//!   all pass, and the limit holds across instances. Past the limit each further attempt waits longer (an
//!   increasing delay, never a lockout): a correct password is delayed by others' failures, not refused for the
//!   window. A success clears its account's count.
//! - The address is the connection's, or, from a `[web] trusted_proxies` peer, the nearest untrusted one in
//!   `X-Forwarded-For`.
//! - Failed sign-ins are logged (tracing) and written to the hash-chained log: the account when the firm knows
//!   it, otherwise only the SHA-256 of what was typed (a mistyped password in the e-mail field must not be kept).

use super::{Web, WebError};
use crate::directory::Directory;
use crate::store;
use anyhow::Context as _;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::Argon2;
use axum::extract::{ConnectInfo, Form, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::net::SocketAddr;

/// The session cookie.
pub const SESSION_COOKIE: &str = "taxinbox_session";
/// The sign-in form's double-submit token (the form has no session yet).
const LOGIN_COOKIE: &str = "taxinbox_login";
/// Failed sign-ins are counted over this window: an account or address quiet this long starts again from zero.
const FAILURE_WINDOW_MINUTES: i64 = 15;
/// Attempts per account in the window that are checked without delay: enough for typos, far too few for
/// guessing. The attempt that reaches it starts the first delay.
pub const MAX_FAILURES_PER_ACCOUNT: i64 = 5;
/// Attempts per client address in the window without delay: an office behind one NAT mistypes more than one
/// person.
pub const MAX_FAILURES_PER_IP: i64 = 20;
/// The first delay once a limit is reached; it doubles with each further attempt. Long enough that guessing at
/// the limit's pace is hopeless, short enough that the owner of the account barely notices.
pub const FIRST_DELAY_SECS: i64 = 5;
/// The longest delay: guessing stays slow, and the owner waits minutes at worst, never the whole window.
pub const MAX_DELAY_SECS: i64 = 300;

/// How long the key must wait after its `attempts`-th attempt in the window, given its `limit`.
pub fn sign_in_delay_ms(attempts: i64, limit: i64) -> i64 {
    if attempts < limit {
        return 0;
    }
    let doublings = u32::try_from((attempts - limit).min(16)).unwrap_or(16);
    (FIRST_DELAY_SECS * 1000)
        .saturating_mul(1_i64 << doublings)
        .min(MAX_DELAY_SECS * 1000)
}

/// What a signed-in person may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Member of staff: own tasks, their team's (managers), and those of people they stand in for today.
    Accountant,
    /// Everything, read-only.
    Auditor,
    /// Everything, plus quarantine, rules and the playground.
    Admin,
}

/// The signed-in person of a request.
#[derive(Debug, Clone, Serialize)]
pub struct Viewer {
    pub email: String,
    pub name: String,
    pub role: Role,
    /// The CSRF token every POST form of this session carries.
    pub csrf: String,
    /// For a manager: the people whose manager they are (accountants.csv `manager`).
    pub team: Vec<String>,
    /// Whether the role sees the whole firm (auditor, admin).
    pub sees_all: bool,
    pub is_admin: bool,
    /// Heads a team (someone's `manager` in the directory, or of the manager role): sees the unassigned queue
    /// and gives its tasks out.
    pub is_manager: bool,
}

/// The role of `email`, or `None` when the firm does not know the person.
pub fn role_of(
    web: &crate::settings::WebSettings,
    directory: &Directory,
    email: &str,
) -> Option<Role> {
    if web.admins.iter().any(|a| a == email) {
        Some(Role::Admin)
    } else if web.auditors.iter().any(|a| a == email) {
        Some(Role::Auditor)
    } else if directory.accountant(email).is_some() {
        Some(Role::Accountant)
    } else {
        None
    }
}

fn hex_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Compares two secrets without stopping at the first difference.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// An argon2id PHC string for `password`.
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("password salt: {e}"))?;
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("hash the password: {e}"))?
        .to_string())
}

fn password_matches(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A hash no password matches, verified for unknown accounts so that they take as long as known ones.
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password(&hex_token()).unwrap_or_default())
}

/// Minimum password length: argon2 makes guessing slow, not short passwords safe.
pub const MIN_PASSWORD_CHARS: usize = 10;

/// Sets the password of a person the firm knows (`taxinbox user set-password`).
pub async fn set_password(
    store: &store::Store,
    web: &crate::settings::WebSettings,
    email: &str,
    password: &str,
) -> anyhow::Result<()> {
    let email = email.trim().to_lowercase();
    if password.chars().count() < MIN_PASSWORD_CHARS {
        anyhow::bail!("the password is too short: at least {MIN_PASSWORD_CHARS} characters");
    }
    let mut conn = store.acquire().await?;
    let directory = store::load_directory(&mut conn).await?;
    if role_of(web, &directory, &email).is_none() {
        anyhow::bail!(
            "{email} is neither among the accountants of the directory nor in [web] admins/auditors: \
             import the directory or add the address to the configuration first"
        );
    }
    let password = password.to_owned();
    let hash = tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .context("hash the password")??;
    store::set_password(&mut conn, &email, &hash, &store::timestamp(Utc::now())).await
}

fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_owned())
}

/// A `Set-Cookie` value with the house policy; `max_age_secs` 0 deletes the cookie.
fn set_cookie(web: &Web, name: &str, value: &str, max_age_secs: i64) -> HeaderValue {
    let c = cookie::Cookie::build((name.to_owned(), value.to_owned()))
        .path("/")
        .http_only(true)
        .secure(web.settings().web.secure_cookies)
        .same_site(cookie::SameSite::Strict)
        .max_age(cookie::time::Duration::seconds(max_age_secs))
        .build();
    HeaderValue::from_str(&c.to_string()).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The client's address: the connection's, or — when the connection comes from a `[web] trusted_proxies` peer —
/// the rightmost address of `X-Forwarded-For` that is not itself a trusted proxy (the left part of the header is
/// whatever the client wrote). "unknown" when the router runs without connection info.
#[derive(Debug, Clone)]
pub struct ClientIp(pub String);

/// The address [`ClientIp`] takes for a connection from `peer` carrying these `X-Forwarded-For` values.
pub fn client_address(
    peer: std::net::IpAddr,
    forwarded_for: &[&str],
    trusted: &[crate::settings::IpNet],
) -> std::net::IpAddr {
    let is_trusted = |ip: std::net::IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let hops: Vec<&str> = forwarded_for
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut address = peer;
    for hop in hops.iter().rev() {
        match hop.parse::<std::net::IpAddr>() {
            Ok(ip) => {
                address = ip;
                if !is_trusted(ip) {
                    break;
                }
            }
            // A hop that is no address cannot be believed, nor anything left of it.
            Err(_) => break,
        }
    }
    address
}

impl FromRequestParts<Web> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, web: &Web) -> Result<Self, Self::Rejection> {
        let Some(peer) = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
        else {
            return Ok(ClientIp("unknown".to_owned()));
        };
        let forwarded: Vec<&str> = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        Ok(ClientIp(
            client_address(peer, &forwarded, &web.settings().web.trusted_proxies).to_string(),
        ))
    }
}

impl FromRequestParts<Web> for Viewer {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, web: &Web) -> Result<Self, Self::Rejection> {
        // A page opened while signed out (a link from a notification) is returned to after sign-in.
        let sign_in = || match parts.uri.path_and_query().map(|p| p.as_str()) {
            Some(path) if parts.method == axum::http::Method::GET && path != "/" => {
                match super::present::local_return_path(path) {
                    Some(next) => WebError::SignInThen(next),
                    None => WebError::SignIn,
                }
            }
            _ => WebError::SignIn,
        };
        let Some(id) = cookie_value(&parts.headers, SESSION_COOKIE) else {
            return Err(sign_in());
        };
        let mut conn = web.store().acquire().await?;
        let now = store::timestamp(Utc::now());
        let Some(session) =
            store::session(&mut conn, &crate::store::sha256_hex(id.as_bytes()), &now).await?
        else {
            return Err(sign_in());
        };
        let directory = store::load_directory(&mut conn).await?;
        // The role is worked out on every request, so a change of the directory or configuration counts at once.
        let Some(role) = role_of(&web.settings().web, &directory, &session.email) else {
            return Err(sign_in());
        };
        let team: Vec<String> = directory
            .accountants()
            .filter(|a| a.manager.as_deref() == Some(session.email.as_str()))
            .map(|a| a.email.clone())
            .collect();
        let is_manager = !team.is_empty()
            || directory
                .accountant(&session.email)
                .is_some_and(|a| a.role == crate::directory::Role::Manager);
        Ok(Viewer {
            name: directory
                .accountant(&session.email)
                .map(|a| a.name.clone())
                .unwrap_or_else(|| session.email.clone()),
            email: session.email,
            role,
            csrf: session.csrf,
            team,
            sees_all: matches!(role, Role::Auditor | Role::Admin),
            is_admin: role == Role::Admin,
            is_manager,
        })
    }
}

impl Viewer {
    /// Refuses a form whose CSRF token is not this session's.
    pub fn check_csrf(&self, token: &str) -> Result<(), WebError> {
        if same_secret(&self.csrf, token) {
            Ok(())
        } else {
            Err(WebError::Csrf)
        }
    }

    /// Auditors read only.
    pub fn may_write(&self) -> bool {
        self.role != Role::Auditor
    }

    pub fn require_admin(&self) -> Result<(), WebError> {
        if self.is_admin {
            Ok(())
        } else {
            Err(WebError::Forbidden)
        }
    }

    pub fn require_all(&self) -> Result<(), WebError> {
        if self.sees_all {
            Ok(())
        } else {
            Err(WebError::Forbidden)
        }
    }
}

/// Whose tasks an accountant sees on `today`: everyone in `full` wholly, and the tasks of `via_backup` people
/// only for clients whose backup accountant the viewer is (an absence without a named substitute).
#[derive(Debug, Clone, Default)]
pub struct Visibility {
    pub full: BTreeSet<String>,
    pub via_backup: BTreeSet<String>,
}

pub fn visibility(viewer: &Viewer, directory: &Directory, today: chrono::NaiveDate) -> Visibility {
    let mut v = Visibility::default();
    v.full.insert(viewer.email.clone());
    v.full.extend(viewer.team.iter().cloned());
    for absence in directory.absences() {
        if !absence.covers(today) || absence.email == viewer.email {
            continue;
        }
        match &absence.substitute {
            Some(s) if *s == viewer.email => {
                v.full.insert(absence.email.clone());
            }
            Some(_) => {}
            None => {
                v.via_backup.insert(absence.email.clone());
            }
        }
    }
    v
}

impl Visibility {
    /// Whether the viewer may see a task with this assignee and client.
    pub fn sees(
        &self,
        viewer: &Viewer,
        directory: &Directory,
        assignee: Option<&str>,
        client_inn: Option<&str>,
    ) -> bool {
        if viewer.sees_all {
            return true;
        }
        let Some(assignee) = assignee else {
            // The unassigned queue is the managers' to give out.
            return viewer.is_manager;
        };
        if self.full.contains(assignee) {
            return true;
        }
        self.via_backup.contains(assignee)
            && client_inn
                .and_then(|inn| directory.client(inn))
                .and_then(|c| c.backup_accountant.as_deref())
                == Some(viewer.email.as_str())
    }

    /// Everyone whose tasks may show up.
    pub fn people(&self) -> Vec<String> {
        self.full.union(&self.via_backup).cloned().collect()
    }
}

/// `/`: to the page of the role.
pub async fn home(viewer: Result<Viewer, WebError>) -> Response {
    match viewer {
        Ok(v) if v.is_admin => Redirect::to("/admin/quarantine").into_response(),
        Ok(v) if v.sees_all => Redirect::to("/log").into_response(),
        Ok(_) => Redirect::to("/tasks").into_response(),
        Err(_) => Redirect::to("/login").into_response(),
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct LoginQuery {
    #[serde(default)]
    next: String,
}

pub async fn login_form(
    State(web): State<Web>,
    axum::extract::Query(q): axum::extract::Query<LoginQuery>,
) -> Result<Response, WebError> {
    login_page(&web, None, "", &q.next)
}

fn login_page(
    web: &Web,
    error: Option<&str>,
    email: &str,
    next: &str,
) -> Result<Response, WebError> {
    let token = hex_token();
    // Only a local path is carried on; anything else is dropped here already.
    let next = super::present::local_return_path(next).unwrap_or_default();
    let page = web.render(
        "login.html",
        None,
        minijinja::context! { token => token, error => error, email => email, next => next },
    )?;
    Ok((
        [(
            header::SET_COOKIE,
            set_cookie(web, LOGIN_COOKIE, &token, 3600),
        )],
        page,
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    email: String,
    password: String,
    #[serde(default)]
    token: String,
    /// Where to go after signing in (a local path only).
    #[serde(default)]
    next: String,
}

pub async fn login(
    State(web): State<Web>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Result<Response, WebError> {
    let expected = cookie_value(&headers, LOGIN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !same_secret(&expected, &form.token) {
        return Err(WebError::Csrf);
    }
    let email = form.email.trim().to_lowercase();
    let now = Utc::now();
    let now_s = store::timestamp(now);
    let account_key = format!("account:{}", store::sha256_hex(email.as_bytes()));
    let ip_key = format!("ip:{ip}");
    claim_attempt(&web, &account_key, &ip_key, now.timestamp_millis()).await?;
    let mut conn = web.store().acquire().await?;
    let directory = store::load_directory(&mut conn).await?;
    let known = role_of(&web.settings().web, &directory, &email).is_some();
    let hash = if known {
        store::password_hash(&mut conn, &email).await?
    } else {
        None
    };
    drop(conn);
    // Who the log may name: the account when the firm knows it, else only a hash of what was typed.
    let account = if known {
        email.clone()
    } else {
        format!("sha256:{}", store::sha256_hex(email.as_bytes()))
    };
    let password = form.password;
    web.count_password_check();
    let matches = tokio::task::spawn_blocking(move || match hash {
        Some(h) => password_matches(&h, &password),
        None => {
            // Same work for unknown accounts, so the answer time does not tell who exists.
            let _ = password_matches(decoy_hash(), &password);
            false
        }
    })
    .await
    .context("check a password")?;
    let since = store::timestamp(now - chrono::Duration::minutes(FAILURE_WINDOW_MINUTES));
    let mut tx = web.store().begin().await?;
    if !matches {
        store::forget_login_failures(&mut tx, &since).await?;
        store::record_login_failure(&mut tx, &account, &ip, &now_s).await?;
        let payload = serde_json::json!({ "account": account, "ip": ip });
        store::append_log(
            &mut tx,
            &store::LogEntry {
                at: &now_s,
                event: "web_sign_in_failed",
                message: None,
                sha256: None,
                payload: &payload,
            },
        )
        .await?;
        tx.commit().await.context("record a failed sign-in")?;
        tracing::warn!(account = %account, ip = %ip, "failed sign-in");
        return login_page(&web, Some("Неверный адрес или пароль."), &email, &form.next);
    }
    // A correct password: its account starts again from zero, and its attempt does not count against the address.
    store::clear_sign_in_attempts(&mut tx, &account_key).await?;
    store::release_sign_in_attempt(&mut tx, &ip_key).await?;
    let id = hex_token();
    let expires = now + chrono::Duration::hours(i64::from(web.settings().web.session_hours));
    store::create_session(
        &mut tx,
        &crate::store::sha256_hex(id.as_bytes()),
        &email,
        &hex_token(),
        &now_s,
        &store::timestamp(expires),
    )
    .await?;
    tx.commit().await.context("start a session")?;
    tracing::info!(account = %email, ip = %ip, "signed in");
    let max_age = i64::from(web.settings().web.session_hours) * 3600;
    let to = super::present::local_return_path(&form.next).unwrap_or_else(|| "/".to_owned());
    let mut response = Redirect::to(&to).into_response();
    let h = response.headers_mut();
    h.append(
        header::SET_COOKIE,
        set_cookie(&web, SESSION_COOKIE, &id, max_age),
    );
    h.append(header::SET_COOKIE, set_cookie(&web, LOGIN_COOKIE, "", 0));
    Ok(response)
}

/// Claims one attempt for the account and one for the address, both or neither, before any password is checked;
/// a key still in its delay refuses the attempt (429 with the seconds to wait) without counting it.
async fn claim_attempt(
    web: &Web,
    account_key: &str,
    ip_key: &str,
    now_ms: i64,
) -> Result<(), WebError> {
    let window_ms = FAILURE_WINDOW_MINUTES * 60 * 1000;
    let mut tx = web.store().begin().await?;
    let by_account = store::claim_sign_in_attempt(&mut tx, account_key, now_ms, window_ms, |n| {
        sign_in_delay_ms(n, MAX_FAILURES_PER_ACCOUNT)
    })
    .await?;
    let not_before_ms = match by_account {
        Err(not_before_ms) => Some(not_before_ms),
        Ok(_) => store::claim_sign_in_attempt(&mut tx, ip_key, now_ms, window_ms, |n| {
            sign_in_delay_ms(n, MAX_FAILURES_PER_IP)
        })
        .await?
        .err(),
    };
    if let Some(not_before_ms) = not_before_ms {
        tx.rollback().await.context("refuse a sign-in attempt")?;
        // Counted from now, not from when this request began: it may have waited for a concurrent claim.
        let wait_ms = (not_before_ms - Utc::now().timestamp_millis()).max(1);
        tracing::warn!(ip = %ip_key, wait_ms, "sign-in attempt refused: in the delay after failed attempts");
        let retry_after_secs = u64::try_from((wait_ms + 999) / 1000).unwrap_or(1).max(1);
        return Err(WebError::TooManyAttempts { retry_after_secs });
    }
    tx.commit().await.context("claim a sign-in attempt")?;
    Ok(())
}

#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    pub csrf: String,
}

pub async fn logout(
    State(web): State<Web>,
    viewer: Viewer,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Result<Response, WebError> {
    viewer.check_csrf(&form.csrf)?;
    if let Some(id) = cookie_value(&headers, SESSION_COOKIE) {
        let mut conn = web.store().acquire().await?;
        store::end_session(
            &mut conn,
            &crate::store::sha256_hex(id.as_bytes()),
            &store::timestamp(Utc::now()),
        )
        .await?;
    }
    let mut response = Redirect::to("/login").into_response();
    response
        .headers_mut()
        .append(header::SET_COOKIE, set_cookie(&web, SESSION_COOKIE, "", 0));
    Ok(response)
}

/// A fresh random token for a calendar feed.
pub fn new_feed_token() -> String {
    hex_token()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_matches_its_hash_and_nothing_else() {
        let h = hash_password("корректная лошадь").expect("hash");
        assert!(h.starts_with("$argon2id$"));
        assert!(password_matches(&h, "корректная лошадь"));
        assert!(!password_matches(&h, "корректная лошадь "));
        assert!(!password_matches("not a hash", "x"));
    }

    fn viewer(email: &str, team: &[&str]) -> Viewer {
        Viewer {
            email: email.to_owned(),
            name: email.to_owned(),
            role: Role::Accountant,
            csrf: String::new(),
            team: team.iter().map(|t| (*t).to_owned()).collect(),
            sees_all: false,
            is_admin: false,
            is_manager: !team.is_empty(),
        }
    }

    fn register() -> Directory {
        use crate::directory::{Absence, Accountant, Client, Regime, Role as Job};
        let client = |inn: &str, accountant: &str, backup: Option<&str>| Client {
            name: inn.to_owned(),
            inn: crate::ids::Inn::parse(inn).expect("test INN"),
            kpp: None,
            regime: Regime::Osno,
            has_employees: false,
            vat_payer: false,
            accountant: accountant.to_owned(),
            backup_accountant: backup.map(str::to_owned),
            emails: Vec::new(),
            region: None,
            attributes: Vec::new(),
        };
        let person = |email: &str, manager: Option<&str>| Accountant {
            email: email.to_owned(),
            name: email.to_owned(),
            role: Job::Accountant,
            manager: manager.map(str::to_owned),
        };
        let day = |s: &str| s.parse().expect("test date");
        Directory::new(
            vec![
                client("7728997898", "a@f.example", Some("b@f.example")),
                client("1650991230", "a@f.example", Some("c@f.example")),
            ],
            vec![
                person("a@f.example", Some("m@f.example")),
                person("b@f.example", Some("m@f.example")),
                person("c@f.example", None),
                person("d@f.example", None),
                person("m@f.example", None),
            ],
            vec![
                Absence {
                    email: "a@f.example".into(),
                    from: day("2026-03-10"),
                    to: day("2026-03-20"),
                    substitute: None,
                },
                Absence {
                    email: "c@f.example".into(),
                    from: day("2026-03-10"),
                    to: day("2026-03-20"),
                    substitute: Some("d@f.example".into()),
                },
            ],
        )
    }

    #[test]
    fn accountants_see_their_own_their_teams_and_their_stand_ins_tasks_only() {
        let r = register();
        let during: chrono::NaiveDate = "2026-03-15".parse().expect("date");
        let after: chrono::NaiveDate = "2026-03-21".parse().expect("date");
        let sees = |who: &Viewer, on, assignee: &str, inn: &str| {
            visibility(who, &r, on).sees(who, &r, Some(assignee), Some(inn))
        };
        let b = viewer("b@f.example", &[]);
        // a is away with no named substitute: b stands in for a's clients whose backup b is, not for the others.
        assert!(sees(&b, during, "a@f.example", "7728997898"));
        assert!(!sees(&b, during, "a@f.example", "1650991230"));
        assert!(!sees(&b, after, "a@f.example", "7728997898"));
        // c is away with d named: d sees all of c's tasks, while the absence lasts.
        let d = viewer("d@f.example", &[]);
        assert!(sees(&d, during, "c@f.example", "1650991230"));
        assert!(!sees(&d, after, "c@f.example", "1650991230"));
        // A manager sees the team's tasks, not others'.
        let m = viewer("m@f.example", &["a@f.example", "b@f.example"]);
        assert!(sees(&m, after, "a@f.example", "1650991230"));
        assert!(!sees(&m, after, "c@f.example", "1650991230"));
        // Nobody but managers, auditors and admins sees the unassigned queue.
        assert!(!visibility(&b, &r, during).sees(&b, &r, None, None));
        assert!(visibility(&m, &r, during).sees(&m, &r, None, None));
    }

    #[test]
    fn delays_start_at_the_limit_double_and_stop_growing() {
        assert_eq!(sign_in_delay_ms(1, 5), 0);
        assert_eq!(sign_in_delay_ms(4, 5), 0);
        assert_eq!(sign_in_delay_ms(5, 5), FIRST_DELAY_SECS * 1000);
        assert_eq!(sign_in_delay_ms(6, 5), FIRST_DELAY_SECS * 2000);
        assert_eq!(sign_in_delay_ms(1_000_000, 5), MAX_DELAY_SECS * 1000);
    }

    #[test]
    fn forwarded_addresses_are_believed_only_from_trusted_proxies() {
        let trusted: Vec<crate::settings::IpNet> = vec![
            "127.0.0.1".parse().expect("net"),
            "10.0.0.0/8".parse().expect("net"),
        ];
        let ip = |s: &str| -> std::net::IpAddr { s.parse().expect("ip") };
        // Not from a proxy: the header is the client's own words.
        assert_eq!(
            client_address(ip("192.0.2.7"), &["198.51.100.1"], &trusted),
            ip("192.0.2.7")
        );
        // From the proxy: the rightmost untrusted hop, whatever the client prepended.
        assert_eq!(
            client_address(
                ip("127.0.0.1"),
                &["1.1.1.1, 203.0.113.9, 10.0.0.5"],
                &trusted
            ),
            ip("203.0.113.9")
        );
        assert_eq!(
            client_address(ip("127.0.0.1"), &["junk, 203.0.113.9"], &trusted),
            ip("203.0.113.9")
        );
        assert_eq!(
            client_address(ip("127.0.0.1"), &[], &trusted),
            ip("127.0.0.1")
        );
        assert_eq!(
            client_address(ip("127.0.0.1"), &["203.0.113.9"], &[]),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
    }
}
