//! Sign-in limits that hold under concurrency (issue 18): attempts are claimed before any password is checked, a
//! limit starts an increasing delay instead of a lockout, and `X-Forwarded-For` counts only from a trusted proxy.

use crate::helpers::{on_both_engines, Engine};
use crate::web::{attribute_after, Client, WebWorld, ACCOUNTANT, AUDITOR, PASSWORD};
use taxinbox::web::auth::{FIRST_DELAY_SECS, MAX_FAILURES_PER_ACCOUNT, MAX_FAILURES_PER_IP};

/// Posts the sign-in form (with its own fresh form token) as from `forwarded_for`, when given; the status and the
/// `Retry-After` seconds of a 429.
async fn sign_in_from(
    base: &str,
    email: &str,
    password: &str,
    forwarded_for: Option<&str>,
) -> (u16, Option<u64>) {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let form = http.get(format!("{base}/login")).send().await.unwrap();
    let cookie = form
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
        .collect::<Vec<_>>()
        .join("; ");
    let page = form.text().await.unwrap();
    let token = attribute_after(&page, "name=\"token\" value=\"").unwrap();
    let mut post = http
        .post(format!("{base}/login"))
        .header(reqwest::header::COOKIE, cookie)
        .form(&[("email", email), ("password", password), ("token", &token)]);
    if let Some(ip) = forwarded_for {
        post = post.header("X-Forwarded-For", ip);
    }
    let answer = post.send().await.unwrap();
    let retry_after = answer
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .map(|v| v.to_str().unwrap().parse().unwrap());
    (answer.status().as_u16(), retry_after)
}

on_both_engines!(
    a_correct_password_signs_in_after_the_delay_of_fifty_concurrent_wrong_ones,
    |engine| async move {
        let world = WebWorld::new(engine).await;
        let checked_before = world.web.password_checks();
        let attempts: Vec<_> = (0..50)
            .map(|_| {
                let base = world.base.clone();
                tokio::spawn(async move {
                    sign_in_from(&base, ACCOUNTANT, "wrong password", None).await
                })
            })
            .collect();
        let mut refused = 0;
        let mut wrong = 0;
        for a in attempts {
            match a.await.unwrap() {
                (200, _) => wrong += 1,
                (429, Some(secs)) => {
                    assert!(secs <= FIRST_DELAY_SECS as u64, "{secs}");
                    refused += 1;
                }
                other => panic!("unexpected answer {other:?}"),
            }
        }
        let checked = world.web.password_checks() - checked_before;
        eprintln!("50 concurrent wrong passwords: {checked} checked, {refused} refused");
        assert!(
            checked <= MAX_FAILURES_PER_ACCOUNT as u64,
            "{checked} checked"
        );
        assert_eq!(checked, wrong);
        assert_eq!(refused + wrong, 50);
        // The owner, from the same address: refused at most for the delay the answer names, then signed in.
        let mut waited = 0;
        let mut signed_in = false;
        for _ in 0..3 {
            match sign_in_from(&world.base, ACCOUNTANT, PASSWORD, None).await {
                (303, _) => {
                    signed_in = true;
                    break;
                }
                (429, Some(secs)) => {
                    waited += secs;
                    tokio::time::sleep(std::time::Duration::from_secs(secs)).await;
                }
                other => panic!("unexpected answer {other:?}"),
            }
        }
        assert!(signed_in, "the correct password signs in after the delay");
        assert!(waited <= FIRST_DELAY_SECS as u64, "waited {waited} s");
        // The success started the account afresh: a typo now is checked, not delayed.
        assert_eq!(
            sign_in_from(&world.base, ACCOUNTANT, "typo", None).await.0,
            200
        );
        // Failed sign-ins of unknown accounts are logged by a hash of what was typed, never the text.
        assert_eq!(
            sign_in_from(&world.base, "typed-secret@example.org", "x", None)
                .await
                .0,
            200
        );
        assert_eq!(
            world
                .app
                .count("SELECT COUNT(*) FROM audit_log WHERE payload LIKE '%typed-secret%'")
                .await,
            0
        );
        assert_eq!(
            world
                .app
                .count(
                    "SELECT COUNT(*) FROM web_login_failures WHERE account LIKE '%typed-secret%'"
                )
                .await,
            0
        );
        world.finish().await;
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_addresses_count_only_from_trusted_proxies() {
    let world = WebWorld::with(
        Engine::Sqlite,
        "trusted_proxies = [\"127.0.0.1\"]\n",
        &[&crate::helpers::corpus().join("mail").join("0001.eml")],
    )
    .await;
    // One address behind the proxy fails on many made-up accounts up to its limit…
    for n in 0..MAX_FAILURES_PER_IP {
        let who = format!("guess{}@example.org", n / MAX_FAILURES_PER_ACCOUNT);
        assert_eq!(
            sign_in_from(&world.base, &who, "x", Some("203.0.113.7"))
                .await
                .0,
            200
        );
    }
    assert_eq!(
        sign_in_from(&world.base, AUDITOR, PASSWORD, Some("203.0.113.7"))
            .await
            .0,
        429
    );
    // …and another person behind the same proxy signs in: the proxy's own address is not what counts.
    assert_eq!(
        sign_in_from(&world.base, AUDITOR, PASSWORD, Some("198.51.100.4"))
            .await
            .0,
        303
    );
    // A client cannot choose its address by prepending to the header.
    assert_eq!(
        sign_in_from(
            &world.base,
            AUDITOR,
            PASSWORD,
            Some("198.51.100.4, 203.0.113.7")
        )
        .await
        .0,
        429
    );
    world.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_trusted_proxies_the_forwarded_header_is_ignored() {
    let world = WebWorld::with(
        Engine::Sqlite,
        "",
        &[&crate::helpers::corpus().join("mail").join("0001.eml")],
    )
    .await;
    let mut c = Client::new(&world.base);
    for n in 0..MAX_FAILURES_PER_IP {
        let who = format!("guess{}@example.org", n / MAX_FAILURES_PER_ACCOUNT);
        let forged = format!("192.0.2.{n}");
        assert_eq!(
            sign_in_from(&world.base, &who, "x", Some(&forged)).await.0,
            200
        );
    }
    assert_eq!(c.sign_in(AUDITOR, PASSWORD).await, 429);
    world.finish().await;
}
