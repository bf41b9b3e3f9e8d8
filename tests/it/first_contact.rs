//! Safe first contact with a real mailbox, against a private Dovecot: `since` takes only mail received on or after
//! the day (INTERNALDATE, set by APPEND), `acknowledge = "flag"` leaves every mail in INBOX and flags what it took,
//! nothing is taken twice (also after a change of UIDVALIDITY), `mailboxes check` changes nothing on the server, and
//! a server that keeps no keywords is refused before anything is fetched.

use crate::cyrus::Cyrus;
use crate::dovecot::{numbered_mail, Dovecot, PASSWORD};
use crate::helpers::{corpus, Engine, TestApp};
use futures_util::TryStreamExt as _;
use std::collections::BTreeMap;
use std::process::Command;
use taxinbox::imap;
use taxinbox::settings::MailboxSettings;

const SINCE: &str = "2026-03-01";
/// Mails received before `SINCE` and on or after it.
const OLD: usize = 30;
const NEW: usize = 20;

/// Whether mail number `k` (0-based, in APPEND order, so UID `k + 1`) is one of the new ones: two of every five,
/// so that old and new mail alternate in UID order and the checkpoint passes over old mail above new.
fn is_new(k: usize) -> bool {
    k % 5 == 1 || k % 5 == 3
}

/// Its INTERNALDATE, at noon UTC so that no server time zone moves it across `SINCE`: old mail from 29 January to
/// 28 February, new mail from 1 March (the day itself) on.
fn internaldate(k: usize) -> String {
    let since = chrono::NaiveDate::parse_from_str(SINCE, "%Y-%m-%d").unwrap();
    let new_before = (0..k).filter(|&j| is_new(j)).count();
    let day = if is_new(k) {
        since + chrono::Days::new(new_before as u64)
    } else {
        since - chrono::Days::new((OLD - (k - new_before)) as u64)
    };
    format!("\"{}\"", day.format("%d-%b-%Y 12:00:00 +0000"))
}

/// A Dovecot, a test app whose mailbox `demands` has `settings` added, and INBOX holding `OLD + NEW` corpus mails
/// appended with their INTERNALDATE. Returns the UIDs of the new mails.
async fn world(dovecot: Dovecot, settings: &str) -> (TestApp, Dovecot, MailboxSettings, Vec<u32>) {
    let password = dovecot.password_file("imap-password", PASSWORD);
    let mailbox = dovecot.mailbox_config("demands", &password);
    let (app, mailbox, new) = world_on(&mailbox, settings).await;
    (app, dovecot, mailbox, new)
}

/// [`world`] on any server, given its `[[mailboxes]]` section.
async fn world_on(mailbox_config: &str, settings: &str) -> (TestApp, MailboxSettings, Vec<u32>) {
    let extra = format!("[ingest]\nbatch_size = 5\n{mailbox_config}{settings}");
    let app = TestApp::with_extra_config(Engine::Sqlite, &extra).await;
    app.import_corpus_register().await;
    let mailbox = app.app.settings.mailboxes[0].clone();
    let mut session = imap::connect(&mailbox).await.unwrap();
    let mut new = Vec::new();
    for k in 0..OLD + NEW {
        // IMAP wants CRLF (Cyrus refuses bare newlines); Dovecot takes either.
        let raw = crlf(&numbered_mail(&corpus(), k + 1));
        session
            .append("INBOX", None, Some(&internaldate(k)), &raw)
            .await
            .unwrap();
        if is_new(k) {
            new.push(u32::try_from(k + 1).unwrap());
        }
    }
    session.examine("INBOX").await.unwrap();
    let mut all: Vec<u32> = session
        .uid_search("ALL")
        .await
        .unwrap()
        .into_iter()
        .collect();
    all.sort_unstable();
    assert_eq!(
        all,
        (1..=50).collect::<Vec<u32>>(),
        "APPEND numbers a fresh folder from 1"
    );
    let _ = session.logout().await;
    assert_eq!(new.len(), NEW);
    (app, mailbox, new)
}

/// `raw` with every bare LF made CRLF.
fn crlf(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 40);
    for (i, b) in raw.iter().enumerate() {
        if *b == b'\n' && (i == 0 || raw[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(*b);
    }
    out
}

/// What a client sees of a folder: UIDVALIDITY, UIDNEXT, the count, every mail's flags (with `\Recent`, which a
/// SELECT by someone else would clear) and the folders of the account. Read with EXAMINE, which changes nothing.
#[derive(Debug, PartialEq, Eq)]
struct FolderState {
    uidvalidity: Option<u32>,
    uidnext: Option<u32>,
    exists: u32,
    flags: BTreeMap<u32, Vec<String>>,
    folders: Vec<String>,
}

async fn folder_state(mailbox: &MailboxSettings, folder: &str) -> FolderState {
    let mut session = imap::connect(mailbox).await.unwrap();
    let examined = session.examine(folder).await.unwrap();
    let mut flags = BTreeMap::new();
    if examined.exists > 0 {
        let fetches: Vec<_> = session
            .uid_fetch("1:*", "(UID FLAGS)")
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        for fetch in fetches {
            let mut names: Vec<String> = fetch.flags().map(|f| format!("{f:?}")).collect();
            names.sort();
            flags.insert(fetch.uid.unwrap(), names);
        }
    }
    let mut folders: Vec<String> = session
        .list(Some(""), Some("*"))
        .await
        .unwrap()
        .try_collect::<Vec<_>>()
        .await
        .unwrap()
        .iter()
        .map(|n| n.name().to_owned())
        .collect();
    folders.sort();
    let _ = session.logout().await;
    FolderState {
        uidvalidity: examined.uid_validity,
        uidnext: examined.uid_next,
        exists: examined.exists,
        flags,
        folders,
    }
}

/// The UIDs of INBOX carrying `keyword`.
async fn flagged(mailbox: &MailboxSettings, keyword: &str) -> Vec<u32> {
    let mut session = imap::connect(mailbox).await.unwrap();
    session.examine("INBOX").await.unwrap();
    let mut uids: Vec<u32> = session
        .uid_search(format!("KEYWORD {keyword}"))
        .await
        .unwrap()
        .into_iter()
        .collect();
    uids.sort_unstable();
    let _ = session.logout().await;
    uids
}

/// Runs the binary on the test's configuration: exit code, standard output, standard error.
fn taxinbox(app: &TestApp, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_taxinbox"))
        .arg("--config")
        .arg(&app.config)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const FLAG: &str = "since = \"2026-03-01\"\nacknowledge = \"flag\"\n";

/// The UIDs the store took from the mailbox (from the source references `imap:demands:<uidvalidity>:<uid>`).
async fn taken_uids(app: &TestApp) -> Vec<u32> {
    let mut conn = app.app.store.acquire().await.unwrap();
    let rows: Vec<(String,)> =
        sqlx::query_as("SELECT source FROM source_refs WHERE source LIKE 'imap:%'")
            .fetch_all(&mut *conn)
            .await
            .unwrap();
    let mut uids: Vec<u32> = rows
        .iter()
        .map(|(s,)| s.rsplit(':').next().unwrap().parse().unwrap())
        .collect();
    uids.sort_unstable();
    uids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_once_with_flag_takes_only_mail_since_the_day_leaves_all_of_it_in_inbox_and_takes_nothing_twice(
) {
    let (app, _dovecot, mailbox, new) = world(Dovecot::start(), FLAG).await;
    let (code, stdout, stderr) = taxinbox(&app, &["run", "--once"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    // Exactly the 20 mails received since the day: committed, logged, and no other.
    assert_eq!(app.count("SELECT COUNT(*) FROM messages").await, NEW as i64);
    assert_eq!(
        app.count("SELECT COUNT(DISTINCT message) FROM audit_log WHERE message IS NOT NULL")
            .await,
        NEW as i64
    );
    assert_eq!(taken_uids(&app).await, new);
    // All 50 stay in INBOX; the 20 carry the keyword of their outcome, the 30 older carry none; no folder was made.
    let state = folder_state(&mailbox, "INBOX").await;
    assert_eq!(state.exists, (OLD + NEW) as u32);
    assert_eq!(
        state.folders,
        vec!["INBOX".to_owned()],
        "flagging makes no folder"
    );
    let processed = flagged(&mailbox, "$Taxinbox").await;
    let quarantined = flagged(&mailbox, "$TaxinboxQuarantine").await;
    let mut both: Vec<u32> = processed.iter().chain(&quarantined).copied().collect();
    both.sort_unstable();
    assert_eq!(both, new, "every mail taken is flagged, and only those");
    assert_eq!(
        quarantined.len() as i64,
        app.count("SELECT COUNT(*) FROM messages WHERE status = 'quarantined'")
            .await
    );
    let tasks = app.count("SELECT COUNT(*) FROM tasks").await;
    assert!(tasks > 0, "the demands made tasks");

    let (code, stdout, stderr) = taxinbox(&app, &["run", "--once"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM tasks").await,
        tasks,
        "a second run creates nothing"
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM messages").await, NEW as i64);
    assert_eq!(
        folder_state(&mailbox, "INBOX").await,
        state,
        "and touches nothing"
    );
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mailboxes_check_reports_what_the_next_run_takes_and_changes_nothing_on_the_server() {
    let (app, _dovecot, mailbox, _new) = world(Dovecot::start(), FLAG).await;
    let before = folder_state(&mailbox, "INBOX").await;
    assert!(
        before
            .flags
            .values()
            .all(|f| f.contains(&"Recent".to_owned())),
        "nobody has selected INBOX yet: {before:?}"
    );
    let (code, stdout, stderr) = taxinbox(&app, &["mailboxes", "check"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    for expected in [
        "mailbox demands (127.0.0.1:",
        "capabilities: IDLE yes, MOVE yes, UIDPLUS yes",
        "keywords: unknown",
        &format!("folder \"INBOX\": UIDVALIDITY {}, UIDNEXT 51, 50 mail(s)", before.uidvalidity.unwrap()),
        "processed folder \"INBOX/Processed\": missing",
        "acknowledge: flag",
        "since 2026-03-01: 20 mail(s) received (INTERNALDATE) on or after it; 30 older, left untouched",
        "already flagged: 0",
        "next run would take 20 mail(s)",
    ] {
        assert!(stdout.contains(expected), "missing {expected:?} in:\n{stdout}");
    }
    // Same UIDs, flags (\Recent included: EXAMINE, not SELECT), count, UIDNEXT, and no folder created.
    assert_eq!(folder_state(&mailbox, "INBOX").await, before);
    assert_eq!(app.count("SELECT COUNT(*) FROM messages").await, 0);

    // After a run: the flagged mail is counted as such and nothing is left to take.
    let (code, stdout, stderr) = taxinbox(&app, &["run", "--once"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let after_run = folder_state(&mailbox, "INBOX").await;
    let (code, stdout, stderr) = taxinbox(&app, &["mailboxes", "check", "demands"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("already flagged: 20 (never taken again)"),
        "{stdout}"
    );
    assert!(stdout.contains("next run would take 0 mail(s)"), "{stdout}");
    assert_eq!(folder_state(&mailbox, "INBOX").await, after_run);

    let (code, _, stderr) = taxinbox(&app, &["mailboxes", "check", "nosuch"]);
    assert_eq!(code, 64, "an unknown name is a usage error: {stderr}");
    assert!(
        stderr.contains("no mailbox named \"nosuch\"") && stderr.contains("demands"),
        "{stderr}"
    );
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flagged_mail_is_not_taken_again_after_the_folder_is_rebuilt_with_a_new_uidvalidity() {
    let (app, mut dovecot, mailbox, new) = world(Dovecot::start(), FLAG).await;
    let (code, stdout, stderr) = taxinbox(&app, &["run", "--once"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let before = folder_state(&mailbox, "INBOX").await;
    let tasks = app.count("SELECT COUNT(*) FROM tasks").await;
    let quarantined_before = app
        .count("SELECT COUNT(*) FROM messages WHERE status = 'quarantined'")
        .await;
    // The server rebuilds INBOX, as after a restore or a migration: the same mail files with their keywords, but
    // the UID list and the index are gone, so the folder gets a new UIDVALIDITY and new UIDs.
    dovecot.stop();
    for entry in std::fs::read_dir(dovecot.maildir()).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "dovecot-uidlist" || name.starts_with("dovecot.index") {
            std::fs::remove_file(entry.path()).unwrap();
        }
    }
    // UIDVALIDITY is made from the clock's seconds.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    dovecot.restart();
    // And one mail comes in after the rebuild: an empty one, which is quarantined.
    dovecot.deliver(b"");
    let rebuilt = folder_state(&mailbox, "INBOX").await;
    assert_ne!(
        rebuilt.uidvalidity, before.uidvalidity,
        "the folder has a new UIDVALIDITY"
    );
    assert_eq!(rebuilt.exists, before.exists + 1);
    let mut kept: Vec<u32> = flagged(&mailbox, "$Taxinbox").await;
    kept.extend(flagged(&mailbox, "$TaxinboxQuarantine").await);
    assert_eq!(kept.len(), new.len(), "the keywords survive the rebuild");
    let unflagged: Vec<u32> = rebuilt
        .flags
        .keys()
        .copied()
        .filter(|uid| !kept.contains(uid))
        .collect();
    assert_eq!(unflagged.len(), OLD + 1, "the older mail and the new one");

    let (code, stdout, stderr) = taxinbox(&app, &["run", "--once"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM tasks").await,
        tasks,
        "nothing flagged is taken again"
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM messages").await,
        NEW as i64 + 1,
        "only the new mail"
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM messages WHERE status = 'quarantined'")
            .await,
        quarantined_before + 1
    );
    // Of the unflagged mail only the new one was taken (the older is before `since`), flagged as quarantined.
    let quarantined = flagged(&mailbox, "$TaxinboxQuarantine").await;
    let taken_now: Vec<&u32> = unflagged
        .iter()
        .filter(|uid| quarantined.contains(uid))
        .collect();
    assert_eq!(
        taken_now.len(),
        1,
        "the empty mail is flagged $TaxinboxQuarantine: {quarantined:?}"
    );
    assert!(flagged(&mailbox, "$Taxinbox")
        .await
        .iter()
        .all(|uid| kept.contains(uid)));
    // The checkpoint now holds the new UIDVALIDITY: a further run finds nothing and does not report a change.
    let outcome = {
        let pipeline = app.pipeline().await;
        let ctx = imap::PollContext::new(&app.app.store, &pipeline, 5);
        imap::poll_mailbox_once(&ctx, &mailbox).await.unwrap()
    };
    assert!(
        outcome.reports.is_empty() && !outcome.uidvalidity_changed,
        "{outcome:?}"
    );
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_move_since_leaves_older_mail_in_the_inbox_untouched() {
    let (app, _dovecot, mailbox, new) = world(Dovecot::start(), "since = \"2026-03-01\"\n").await;
    let before = folder_state(&mailbox, "INBOX").await;
    let (code, stdout, stderr) = taxinbox(&app, &["run", "--once"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(taken_uids(&app).await, new);
    let after = folder_state(&mailbox, "INBOX").await;
    let old: BTreeMap<u32, Vec<String>> = before
        .flags
        .iter()
        .filter(|(uid, _)| !new.contains(uid))
        .map(|(uid, flags)| (*uid, flags.clone()))
        .collect();
    assert_eq!(after.flags.len(), OLD);
    // The older mail keeps its UIDs and flags; \Recent went with the run's SELECT, as it would with any client's.
    let without_recent = |m: &BTreeMap<u32, Vec<String>>| -> BTreeMap<u32, Vec<String>> {
        m.iter()
            .map(|(u, f)| (*u, f.iter().filter(|f| *f != "Recent").cloned().collect()))
            .collect()
    };
    assert_eq!(without_recent(&after.flags), without_recent(&old));
    let moved = crate::dovecot::folder_count(&mailbox, "INBOX/Processed").await
        + crate::dovecot::folder_count(&mailbox, "INBOX/Quarantine").await;
    assert_eq!(moved as usize, NEW);
    assert_eq!(
        app.count("SELECT COUNT(DISTINCT message) FROM audit_log WHERE message IS NOT NULL")
            .await,
        NEW as i64
    );
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_keeps_no_keywords_is_refused_before_anything_is_taken() {
    // The account may read, mark seen, delete and insert in INBOX, but not write keywords (no `w`).
    let (app, _dovecot, mailbox, _new) =
        world(Dovecot::start_with_inbox_rights("lrstipekxa"), FLAG).await;
    let before = folder_state(&mailbox, "INBOX").await;
    let pipeline = app.pipeline().await;
    let ctx = imap::PollContext::new(&app.app.store, &pipeline, 5);
    let error = imap::poll_mailbox_once(&ctx, &mailbox)
        .await
        .expect_err("flagging on a server that keeps no keyword is refused");
    assert!(matches!(error, imap::Error::Config { .. }), "{error:?}");
    assert!(
        !error.is_retryable(),
        "the mailbox stops rather than retrying"
    );
    let text = error.to_string();
    assert!(
        text.contains("acknowledge = \"flag\" needs keywords") && text.contains("has no \\*"),
        "{text}"
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM messages").await,
        0,
        "nothing fetched"
    );
    let after = folder_state(&mailbox, "INBOX").await;
    assert_eq!(
        (after.exists, after.uidnext, &after.folders),
        (before.exists, before.uidnext, &before.folders)
    );
    // `run --once` reports it and fails; `mailboxes check` says why, from the account's rights.
    let (code, _, stderr) = taxinbox(&app, &["run", "--once"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("needs keywords"), "{stderr}");
    let (code, stdout, stderr) = taxinbox(&app, &["mailboxes", "check"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("keywords: no — this account's rights on \"INBOX\" are \"lrstipekxa"),
        "{stdout}"
    );
    assert!(
        stdout.contains("WARNING: run will refuse this mailbox"),
        "{stdout}"
    );
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_committed_but_not_flagged_before_a_crash_is_flagged_later_without_a_second_task() {
    let (app, _dovecot, mailbox, new) = world(Dovecot::start(), FLAG).await;
    let pipeline = app.pipeline().await;
    let ctx = imap::PollContext::new(&app.app.store, &pipeline, 5);
    // The first run commits and then "crashes": the session is dropped before any keyword is set.
    let mut session = imap::MailboxSession::open(&mailbox).await.unwrap();
    let committed = session.commit_new(&ctx).await.unwrap();
    assert_eq!(committed.len(), NEW);
    drop(session);
    assert!(
        flagged(&mailbox, "$Taxinbox").await.is_empty(),
        "nothing is acknowledged before its commit is done"
    );
    let tasks = app.count("SELECT COUNT(*) FROM tasks").await;

    let restart = imap::poll_mailbox_once(&ctx, &mailbox).await.unwrap();
    assert!(restart.reports.is_empty(), "nothing is processed twice");
    assert_eq!((restart.moved, restart.moved_from_before), (NEW, NEW));
    let mut both = flagged(&mailbox, "$Taxinbox").await;
    both.extend(flagged(&mailbox, "$TaxinboxQuarantine").await);
    both.sort_unstable();
    assert_eq!(both, new);
    assert_eq!(app.count("SELECT COUNT(*) FROM tasks").await, tasks);
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_cyrus_flag_and_since_take_the_20_once_and_leave_all_50_in_the_inbox() {
    let cyrus = Cyrus::start_hiding(&[]);
    let password = cyrus.password_file("imap-password", PASSWORD);
    let (app, mailbox, new) = world_on(&cyrus.mailbox_config("demands", &password), FLAG).await;
    let (code, stdout, stderr) = taxinbox(&app, &["run", "--once"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}\n{}", cyrus.log());
    assert_eq!(taken_uids(&app).await, new);
    let state = folder_state(&mailbox, "INBOX").await;
    assert_eq!(state.exists, (OLD + NEW) as u32);
    let mut both = flagged(&mailbox, "$Taxinbox").await;
    both.extend(flagged(&mailbox, "$TaxinboxQuarantine").await);
    both.sort_unstable();
    assert_eq!(both, new);
    let tasks = app.count("SELECT COUNT(*) FROM tasks").await;
    let (code, stdout, stderr) = taxinbox(&app, &["run", "--once"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(app.count("SELECT COUNT(*) FROM tasks").await, tasks);
    assert_eq!(folder_state(&mailbox, "INBOX").await, state);
    app.cleanup().await;
}
