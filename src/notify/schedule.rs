//! What taxinbox tells people without a new mail: the daily digest per accountant, the escalation ladder of open
//! tasks, and notices to admins about quarantined mail and tasks nobody could be assigned to.
//!
//! All of it is queued into the outbox (and sent by the worker) and is idempotent: each notification carries a
//! `dedupe_key` naming what it is about (`digest:<who>:<date>`, `escalation:<task>:<rung>:<who>`, …), so a pass
//! run twice, or by two instances, queues nothing twice. The date is a parameter (the firm's today), never read
//! from the clock here, so any day can be tested. When an absence starts, the absent person's open tasks are
//! announced to whoever now works them (`absence:<task>:<who>:<from>`, once per task and absence).
//!
//! Each digest and escalation message is also queued, with the same key and text, for every Telegram sink
//! (`store::queue_person_notice`, in the same statement order as the mail), so Telegram tells the same people the
//! same things. With `[web] base_url` ([`DigestOptions::web_base`]) every task of a digest carries its link.

use super::{client_label, russian_date};
use crate::calendar::ProductionCalendar;
use crate::directory::{Directory, Role};
use crate::settings::{EscalationSettings, EscalationTarget};
use crate::store::{self, NewNotification, TaskView};
use crate::templates::{Kind, Templates};
use chrono::{Datelike as _, NaiveDate, NaiveDateTime, NaiveTime};
use std::collections::{BTreeMap, BTreeSet};

/// Everything scheduling needs besides the database and the date.
#[derive(Debug, Clone)]
pub struct ScheduleContext {
    pub templates: Templates,
    pub calendar: ProductionCalendar,
    pub directory: Directory,
    pub escalation: EscalationSettings,
    pub admins: Vec<String>,
}

/// The firm's choices about the digest (`[notify] digest_time`, `digest_opt_out`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DigestOptions {
    /// No digest is queued before this time of the firm's day; `None`: any time.
    pub not_before: Option<NaiveTime>,
    /// Staff (lower-case addresses) who get no digest.
    pub opt_out: Vec<String>,
    /// `[web] base_url`: each task line of the digest is followed by its link; `None` leaves links out.
    pub web_base: Option<String>,
}

/// What one scheduling pass queued.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScheduleOutcome {
    pub digests: usize,
    pub escalations: usize,
    pub admin_notices: usize,
    /// Notices to substitutes about the open tasks of someone whose absence started.
    pub handovers: usize,
    /// Notices to admins about a coming year whose regional days off are not all known.
    pub calendar_notices: usize,
}

/// "In the next working days" of the digest: far enough to plan the week's start, near enough to stay short.
const DIGEST_UPCOMING_WORKING_DAYS: u32 = 3;

/// Admin notices queued per pass and kind: a bound; a backlog goes out over the following passes.
const ADMIN_NOTICES_PER_PASS: i64 = 100;

/// How many days before a year starts the admins hear that a client's region lacks days of it: time for the
/// region's act to be looked for and entered before the first deadline of the year is counted.
pub const CALENDAR_NOTICE_DAYS: i64 = 60;

/// A due date further ahead than this is not counted in working days (no ladder reaches that far).
const MAX_LOOKAHEAD_DAYS: i64 = 400;

/// Digests, escalations and admin notices for `today` (the firm's date).
pub async fn run(
    conn: &mut sqlx::AnyConnection,
    ctx: &ScheduleContext,
    today: NaiveDate,
    now_s: &str,
) -> anyhow::Result<ScheduleOutcome> {
    run_at(
        conn,
        ctx,
        &DigestOptions::default(),
        today.and_time(NaiveTime::MIN),
        now_s,
    )
    .await
}

/// Digests (from `digest.not_before` on, without the opted-out), escalations, admin notices and absence handovers
/// for `local`, the firm's date and time.
pub async fn run_at(
    conn: &mut sqlx::AnyConnection,
    ctx: &ScheduleContext,
    digest: &DigestOptions,
    local: NaiveDateTime,
    now_s: &str,
) -> anyhow::Result<ScheduleOutcome> {
    let today = local.date();
    let digests = match digest.not_before {
        Some(at) if local.time() < at => 0,
        _ => digest_due_with(conn, ctx, digest, today, now_s).await?,
    };
    Ok(ScheduleOutcome {
        digests,
        escalations: escalations_due(conn, ctx, digest.web_base.as_deref(), today, now_s).await?,
        admin_notices: admin_notices_due(conn, ctx, now_s).await?,
        handovers: absence_handovers_due(conn, ctx, today, now_s).await?,
        calendar_notices: calendar_notices_due(conn, ctx, today, now_s).await?,
    })
}

/// One task of the digest: "— due · title · client", and its link on the next line when `web_base` is set.
fn task_line(t: &TaskView, web_base: Option<&str>) -> String {
    let line = format!(
        "— {} · {} · {}",
        russian_date(&t.due),
        t.title,
        client_label(t.client_name.as_deref(), t.client_inn.as_deref())
    );
    match web_base {
        Some(base) => format!(
            "{line}\n  {}/tasks/{}",
            base.trim_end_matches('/'),
            t.task.id
        ),
        None => line,
    }
}

fn lines(tasks: &[&TaskView], web_base: Option<&str>) -> String {
    if tasks.is_empty() {
        "— нет".to_owned()
    } else {
        tasks
            .iter()
            .map(|t| task_line(t, web_base))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Queues one digest per accountant with open tasks overdue, due today or due in the next working days; only on
/// working days (nobody reads a Sunday digest), once per person and date. Returns how many were queued.
pub async fn digest_due(
    conn: &mut sqlx::AnyConnection,
    ctx: &ScheduleContext,
    today: NaiveDate,
    now_s: &str,
) -> anyhow::Result<usize> {
    digest_due_with(conn, ctx, &DigestOptions::default(), today, now_s).await
}

/// [`digest_due`], leaving out the people of `options.opt_out` (the time of day is checked by [`run_at`]).
pub async fn digest_due_with(
    conn: &mut sqlx::AnyConnection,
    ctx: &ScheduleContext,
    options: &DigestOptions,
    today: NaiveDate,
    now_s: &str,
) -> anyhow::Result<usize> {
    if !ctx.calendar.is_working_day(today, None)? {
        return Ok(0);
    }
    let horizon = ctx
        .calendar
        .add_working_days(today, DIGEST_UPCOMING_WORKING_DAYS, None)?;
    let tasks = store::open_tasks_due_by(conn, &horizon.to_string()).await?;
    let mut by_person: BTreeMap<&str, Vec<&TaskView>> = BTreeMap::new();
    for task in &tasks {
        if let Some(who) = task.assignee.as_deref() {
            if options.opt_out.iter().any(|o| o.eq_ignore_ascii_case(who)) {
                continue;
            }
            by_person.entry(who).or_default().push(task);
        }
    }
    let today_s = today.to_string();
    let mut queued = 0;
    for (who, tasks) in by_person {
        let (mut overdue, mut due_today, mut upcoming) = (Vec::new(), Vec::new(), Vec::new());
        for t in tasks {
            match t.due.as_str().cmp(today_s.as_str()) {
                std::cmp::Ordering::Less => overdue.push(t),
                std::cmp::Ordering::Equal => due_today.push(t),
                std::cmp::Ordering::Greater => upcoming.push(t),
            }
        }
        let name = ctx
            .directory
            .accountant(who)
            .map_or_else(|| who.to_owned(), |a| a.name.clone());
        let values = BTreeMap::from([
            ("name", name),
            ("date", today.format("%d.%m.%Y").to_string()),
            ("overdue", lines(&overdue, options.web_base.as_deref())),
            ("due_today", lines(&due_today, options.web_base.as_deref())),
            ("upcoming", lines(&upcoming, options.web_base.as_deref())),
            ("overdue_count", overdue.len().to_string()),
            ("today_count", due_today.len().to_string()),
            ("upcoming_count", upcoming.len().to_string()),
        ]);
        let text = ctx.templates.render(Kind::Digest, &values);
        let key = format!("digest:{who}:{today}");
        store::queue_person_notice(
            conn,
            None,
            store::EVENT_DIGEST,
            &key,
            who,
            &format!("{}\n\n{}", text.subject, text.body),
            now_s,
        )
        .await?;
        let n = NewNotification {
            kind: Kind::Digest.as_str().to_owned(),
            task: None,
            message: None,
            recipient: who.to_owned(),
            subject: text.subject,
            body: text.body,
            not_before: now_s.to_owned(),
            created_at: now_s.to_owned(),
        };
        if store::insert_notification_once(conn, &n, &key)
            .await?
            .is_some()
        {
            queued += 1;
        }
    }
    Ok(queued)
}

/// Working days after `today` up to and including `due` (0 on the due date and after it).
fn working_days_left(
    calendar: &ProductionCalendar,
    today: NaiveDate,
    due: NaiveDate,
    region: Option<&str>,
) -> anyhow::Result<u32> {
    let mut left = 0;
    let mut day = today;
    for _ in 0..MAX_LOOKAHEAD_DAYS {
        if day >= due {
            break;
        }
        day = day.succ_opt().unwrap_or(due);
        if calendar.is_working_day(day, region)? {
            left += 1;
        }
    }
    Ok(left)
}

/// The people a rung names for `task` on `today`; empty when nobody fits (no manager in the directory, …).
fn targets(
    ctx: &ScheduleContext,
    who: EscalationTarget,
    task: &TaskView,
    today: NaiveDate,
) -> Vec<String> {
    let assignee = task.assignee.as_deref();
    let client = task
        .client_inn
        .as_deref()
        .and_then(|inn| ctx.directory.client(inn));
    let found = match who {
        EscalationTarget::Assignee => assignee.map(str::to_owned),
        EscalationTarget::Substitute => {
            let role = task.role.parse::<Role>().unwrap_or(Role::Accountant);
            ctx.directory
                .assignee(client, role, today)
                .filter(|s| Some(s.as_str()) != assignee)
                .or_else(|| {
                    client
                        .and_then(|c| c.backup_accountant.clone())
                        .filter(|s| Some(s.as_str()) != assignee)
                })
        }
        EscalationTarget::Manager => assignee
            .and_then(|a| ctx.directory.manager_of(a))
            .map(str::to_owned),
        EscalationTarget::Admins => return ctx.admins.clone(),
    };
    found.into_iter().collect()
}

/// Queues, for every open task not yet overdue, the rung of its ladder reached today: of the rungs with
/// `working_days_before` at least the working days left, those with the fewest. Earlier rungs a stopped daemon missed are not sent
/// late; each rung goes once per task and person.
pub async fn escalations_due(
    conn: &mut sqlx::AnyConnection,
    ctx: &ScheduleContext,
    web_base: Option<&str>,
    today: NaiveDate,
    now_s: &str,
) -> anyhow::Result<usize> {
    let reach = ctx
        .escalation
        .kinds
        .values()
        .chain(std::iter::once(&ctx.escalation.default))
        .flatten()
        .map(|r| r.working_days_before)
        .max()
        .unwrap_or(0);
    let horizon = if reach == 0 {
        ctx.calendar.next_working_day(today, None)?
    } else {
        ctx.calendar.add_working_days(today, reach, None)?
    };
    let tasks = store::open_tasks_due_by(conn, &horizon.to_string()).await?;
    let mut queued = 0;
    for task in &tasks {
        let Ok(due) = NaiveDate::parse_from_str(&task.due, "%Y-%m-%d") else {
            continue;
        };
        // A deadline already missed is escalated no more (the ladder ends on the day); it stands in the daily
        // digest's overdue list. Otherwise a first run over a backlog would flood every manager at once.
        if due < today {
            continue;
        }
        let kind = match (&task.kind, task.message) {
            (Some(kind), _) => kind.as_str(),
            (None, None) => "calendar",
            (None, Some(_)) => "",
        };
        let ladder = ctx.escalation.ladder(kind);
        let region = task
            .client_inn
            .as_deref()
            .and_then(|inn| ctx.directory.client(inn))
            .and_then(|c| c.region.as_deref());
        let left = working_days_left(&ctx.calendar, today, due, region)?;
        let Some(reached) = ladder
            .iter()
            .map(|r| r.working_days_before)
            .filter(|n| *n >= left)
            .min()
        else {
            continue;
        };
        for (index, rung) in ladder.iter().enumerate() {
            if rung.working_days_before != reached {
                continue;
            }
            // The firm's tracker hears of the escalation once per task and rung (nothing queued without sinks).
            store::queue_task_event(
                conn,
                task.id,
                store::EVENT_ESCALATED,
                &format!("escalated:{}:{index}", task.id),
                None,
                now_s,
            )
            .await?;
            let people: BTreeSet<String> =
                targets(ctx, rung.who, task, today).into_iter().collect();
            for person in people {
                let values = BTreeMap::from([
                    ("task", task.title.clone()),
                    (
                        "client",
                        client_label(task.client_name.as_deref(), task.client_inn.as_deref()),
                    ),
                    ("due", russian_date(&task.due)),
                    ("days_left", left.to_string()),
                    (
                        "assignee",
                        task.assignee.clone().unwrap_or_else(|| "—".to_owned()),
                    ),
                    ("link", super::task_link(web_base, task.id)),
                ]);
                let text = ctx.templates.render(Kind::Escalation, &values);
                let key = format!("escalation:{}:{index}:{person}", task.id);
                store::queue_person_notice(
                    conn,
                    Some(task.id),
                    store::EVENT_ESCALATION_NOTICE,
                    &key,
                    &person,
                    &format!("{}\n\n{}", text.subject, text.body),
                    now_s,
                )
                .await?;
                let n = NewNotification {
                    kind: Kind::Escalation.as_str().to_owned(),
                    task: Some(task.id),
                    message: task.message,
                    recipient: person.clone(),
                    subject: text.subject,
                    body: text.body,
                    not_before: now_s.to_owned(),
                    created_at: now_s.to_owned(),
                };
                if store::insert_notification_once(conn, &n, &key)
                    .await?
                    .is_some()
                {
                    queued += 1;
                }
            }
        }
    }
    Ok(queued)
}

/// Tells every admin about mail put in quarantine and tasks nobody could be assigned to, once each.
pub async fn admin_notices_due(
    conn: &mut sqlx::AnyConnection,
    ctx: &ScheduleContext,
    now_s: &str,
) -> anyhow::Result<usize> {
    if ctx.admins.is_empty() {
        return Ok(0);
    }
    let mut notices = Vec::new();
    for mail in store::quarantined_without_notice(conn, ADMIN_NOTICES_PER_PASS).await? {
        let values = BTreeMap::from([
            ("subject", mail.subject.clone()),
            ("from", mail.from_addr.clone()),
            ("reason", mail.reason.clone()),
            ("message", mail.id.to_string()),
        ]);
        let text = ctx.templates.render(Kind::AdminQuarantined, &values);
        notices.push((
            Kind::AdminQuarantined,
            None,
            Some(mail.id),
            text,
            format!("quarantined:{}", mail.id),
        ));
    }
    for task in store::unassigned_without_notice(conn, ADMIN_NOTICES_PER_PASS).await? {
        let values = BTreeMap::from([
            ("task", task.title.clone()),
            (
                "client",
                client_label(task.client_name.as_deref(), task.client_inn.as_deref()),
            ),
            ("role", task.role.clone()),
            ("due", russian_date(&task.due)),
        ]);
        let text = ctx.templates.render(Kind::AdminUnassigned, &values);
        notices.push((
            Kind::AdminUnassigned,
            Some(task.id),
            task.message,
            text,
            format!("unassigned:{}", task.id),
        ));
    }
    let mut queued = 0;
    for (kind, task, message, text, key) in &notices {
        let about = (*task, *message);
        queued += tell_admins(conn, &ctx.admins, *kind, about, text, key, now_s).await?;
    }
    Ok(queued)
}

/// Queues `text` for every admin once per `key` (the admin's address appended): a notice that is due again on the
/// next pass is not sent twice. `about` is the task and the mail it concerns, when it does. Returns how many
/// were queued now.
async fn tell_admins(
    conn: &mut sqlx::AnyConnection,
    admins: &[String],
    kind: Kind,
    about: (Option<i64>, Option<i64>),
    text: &crate::templates::Rendered,
    key: &str,
    now_s: &str,
) -> anyhow::Result<usize> {
    let mut queued = 0;
    for admin in admins {
        let n = NewNotification {
            kind: kind.as_str().to_owned(),
            task: about.0,
            message: about.1,
            recipient: admin.clone(),
            subject: text.subject.clone(),
            body: text.body.clone(),
            not_before: now_s.to_owned(),
            created_at: now_s.to_owned(),
        };
        if store::insert_notification_once(conn, &n, &format!("{key}:{admin}"))
            .await?
            .is_some()
        {
            queued += 1;
        }
    }
    Ok(queued)
}

/// Tells every admin about each mailbox whose alarm is raised (`alarms`: mailbox, problem), once per mailbox and
/// day: a mailbox that keeps failing is never silent, and never floods the admins either.
pub async fn mailbox_alarm_notices(
    conn: &mut sqlx::AnyConnection,
    templates: &Templates,
    admins: &[String],
    alarms: &[(String, String)],
    today: NaiveDate,
    now_s: &str,
) -> anyhow::Result<usize> {
    let mut queued = 0;
    for (mailbox, problem) in alarms {
        let values = BTreeMap::from([("mailbox", mailbox.clone()), ("problem", problem.clone())]);
        let text = templates.render(Kind::AdminMailbox, &values);
        let key = format!("mailbox-alarm:{mailbox}:{today}");
        queued += tell_admins(
            conn,
            admins,
            Kind::AdminMailbox,
            (None, None),
            &text,
            &key,
            now_s,
        )
        .await?;
    }
    Ok(queued)
}

/// Tells every admin, once per year and region, that a region used by a client of the directory lacks days of a
/// year starting within [`CALENDAR_NOTICE_DAYS`] (or already running): its section is missing though other years
/// have one, or it lists days still `pending`. Keyed `calendar:<year>:<region>:<admin>`.
pub async fn calendar_notices_due(
    conn: &mut sqlx::AnyConnection,
    ctx: &ScheduleContext,
    today: NaiveDate,
    now_s: &str,
) -> anyhow::Result<usize> {
    if ctx.admins.is_empty() {
        return Ok(0);
    }
    let mut clients: BTreeMap<String, usize> = BTreeMap::new();
    for client in ctx.directory.clients() {
        if let Some(region) = client
            .region
            .as_deref()
            .map(str::trim)
            .filter(|r| !r.is_empty())
        {
            *clients.entry(region.to_owned()).or_default() += 1;
        }
    }
    let next = today.year() + 1;
    let next_starts = NaiveDate::from_ymd_opt(next, 1, 1).unwrap_or(today);
    let years: Vec<i32> = if (next_starts - today).num_days() <= CALENDAR_NOTICE_DAYS {
        vec![today.year(), next]
    } else {
        vec![today.year()]
    };
    let mut queued = 0;
    for year in years {
        for (region, count) in &clients {
            let Some(gap) = ctx.calendar.region_gap(year, region) else {
                continue;
            };
            let missing = match (&gap.file, gap.pending.is_empty()) {
                (None, _) => format!("нет файла rules/calendar/production/{year}.toml"),
                (Some(_), true) => format!(
                    "в файле {year} года нет раздела [regions.{region}], хотя в других годах он есть"
                ),
                (Some(_), false) => {
                    format!("даты не установлены (pending): {}", gap.pending.join(", "))
                }
            };
            let values = BTreeMap::from([
                ("year", year.to_string()),
                ("region", region.clone()),
                ("missing", missing),
                ("clients", count.to_string()),
            ]);
            let text = ctx.templates.render(Kind::AdminCalendar, &values);
            let key = format!("calendar:{year}:{region}");
            queued += tell_admins(
                conn,
                &ctx.admins,
                Kind::AdminCalendar,
                (None, None),
                &text,
                &key,
                now_s,
            )
            .await?;
        }
    }
    Ok(queued)
}

/// Tells whoever now works an absent person's open task about it, once per task and absence, on any day of the
/// absence (so a daemon stopped on its first day catches up). The one told is the absence's substitute, else the
/// task's substitute as escalations find it (the client's backup accountant, …); nobody when none is found.
pub async fn absence_handovers_due(
    conn: &mut sqlx::AnyConnection,
    ctx: &ScheduleContext,
    today: NaiveDate,
    now_s: &str,
) -> anyhow::Result<usize> {
    let absent: Vec<_> = ctx
        .directory
        .absences()
        .iter()
        .filter(|a| a.covers(today))
        .collect();
    if absent.is_empty() {
        return Ok(0);
    }
    let tasks = store::open_tasks_due_by(conn, "9999-12-31").await?;
    let mut queued = 0;
    for absence in absent {
        let name = ctx
            .directory
            .accountant(&absence.email)
            .map_or_else(|| absence.email.clone(), |a| a.name.clone());
        for task in tasks.iter().filter(|t| {
            t.assignee
                .as_deref()
                .is_some_and(|a| a.eq_ignore_ascii_case(&absence.email))
        }) {
            let person = match &absence.substitute {
                Some(s) if !s.eq_ignore_ascii_case(&absence.email) => Some(s.clone()),
                _ => targets(ctx, EscalationTarget::Substitute, task, today)
                    .into_iter()
                    .next(),
            };
            let Some(person) = person else {
                tracing::warn!(task_id = task.id, absent = %absence.email, "nobody found to take over an absent person's task");
                continue;
            };
            let values = BTreeMap::from([
                ("task", task.title.clone()),
                (
                    "client",
                    client_label(task.client_name.as_deref(), task.client_inn.as_deref()),
                ),
                ("due", russian_date(&task.due)),
                ("absent", name.clone()),
                ("from", absence.from.format("%d.%m.%Y").to_string()),
                ("to", absence.to.format("%d.%m.%Y").to_string()),
            ]);
            let text = ctx.templates.render(Kind::AbsenceHandover, &values);
            let n = NewNotification {
                kind: Kind::AbsenceHandover.as_str().to_owned(),
                task: Some(task.id),
                message: task.message,
                recipient: person,
                subject: text.subject,
                body: text.body,
                not_before: now_s.to_owned(),
                created_at: now_s.to_owned(),
            };
            let key = format!("absence:{}:{}:{}", task.id, absence.email, absence.from);
            if store::insert_notification_once(conn, &n, &key)
                .await?
                .is_some()
            {
                queued += 1;
            }
        }
    }
    Ok(queued)
}

/// The daemon's scheduling step: loads the directory and the production calendar, then queues what `now` (in the
/// configured time zone) calls for. No enclosing transaction: every insert is idempotent by its key, and on SQLite
/// a read transaction upgraded to a write fails at once ("database is locked") when ingestion committed meanwhile,
/// while single statements wait for the lock.
pub async fn schedule_today(
    store: &store::Store,
    settings: &crate::settings::Settings,
    templates: &Templates,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<ScheduleOutcome> {
    let local = now.with_timezone(&settings.general.timezone).naive_local();
    let mut conn = store.acquire().await?;
    let ctx = ScheduleContext {
        templates: templates.clone(),
        calendar: ProductionCalendar::load_dir(
            &settings.rules.dir.join("calendar").join("production"),
        )
        .map_err(|e| anyhow::anyhow!("load the production calendars: {e}"))?,
        directory: store::load_directory(&mut conn).await?,
        escalation: settings.notify.escalation.clone(),
        admins: settings.notify.admins.clone(),
    };
    let digest = DigestOptions {
        not_before: Some(settings.notify.digest_time),
        opt_out: settings.notify.digest_opt_out.clone(),
        web_base: settings.web.base_url.clone(),
    };
    let outcome = run_at(&mut conn, &ctx, &digest, local, &store::timestamp(now)).await?;
    if outcome != ScheduleOutcome::default() {
        tracing::info!(
            digests = outcome.digests,
            escalations = outcome.escalations,
            admin_notices = outcome.admin_notices,
            handovers = outcome.handovers,
            calendar_notices = outcome.calendar_notices,
            "notifications scheduled"
        );
    }
    Ok(outcome)
}
