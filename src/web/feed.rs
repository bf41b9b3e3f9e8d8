//! The personal calendar feed (`/ics/<token>.ics`) as a person's calendar shows it: one all-day event per open
//! task, titled with the task and its client's name, described with the client, the deadline and a link back to
//! the task (when `[web] base_url` says where the server is), with a reminder the day before, in a calendar named
//! after its owner (`X-WR-CALNAME`). UIDs are those of `calendar --format ics` (`obligation_uid` for a tax-calendar
//! task, `task-<id>@taxinbox` for a mail's), so a feed and an imported file update the same events.

use super::present;
use crate::calendar::obligations::{escape, obligation_uid, push_event_head, push_line};
use crate::store::TaskListRow;
use chrono::{DateTime, NaiveDate, Utc};

/// When the reminder fires: 09:00 the day before an all-day event (which starts at midnight).
const REMINDER: &str = "-PT15H";

/// The feed of `owner`'s open `tasks`; `base_url` (without a trailing `/`) makes the links.
pub fn feed(
    owner: &str,
    tasks: &[TaskListRow],
    base_url: Option<&str>,
    now: DateTime<Utc>,
) -> String {
    let stamp = now.format("%Y%m%dT%H%M%SZ").to_string();
    let mut out = String::new();
    for l in [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//taxinbox//tasks//RU",
        "CALSCALE:GREGORIAN",
        "METHOD:PUBLISH",
    ] {
        push_line(&mut out, l);
    }
    push_line(
        &mut out,
        &format!("X-WR-CALNAME:{}", escape(&format!("taxinbox — {owner}"))),
    );
    let mut seen = std::collections::BTreeSet::new();
    for t in tasks {
        let Ok(day) = NaiveDate::parse_from_str(&t.due, "%Y-%m-%d") else {
            continue;
        };
        let uid = match (&t.client_inn, &t.event, &t.period) {
            (Some(inn), Some(event), Some(period)) => obligation_uid(inn, event, period),
            _ => format!("task-{}@taxinbox", t.id),
        };
        if !seen.insert(uid.clone()) {
            continue;
        }
        let client = match (&t.client_name, &t.client_inn) {
            (Some(name), Some(inn)) => Some(format!("{name} (ИНН {inn})")),
            (None, Some(inn)) => Some(format!("ИНН {inn}")),
            _ => None,
        };
        // Mail tasks already end with " — <client>"; tax-calendar tasks do not.
        let summary = match &t.client_name {
            Some(name) if !t.title.contains(name.as_str()) => format!("{} — {name}", t.title),
            _ => t.title.clone(),
        };
        let link = base_url.map(|b| format!("{b}/tasks/{}", t.id));
        let mut description = Vec::new();
        if let Some(c) = &client {
            description.push(format!("Клиент: {c}"));
        }
        if let (Some(n), Some(d)) = (&t.demand_number, &t.demand_date) {
            description.push(format!("Требование № {n} от {}", present::ru_date(d)));
        }
        description.push(format!("Срок: {}", present::ru_date(&t.due)));
        if let Some(l) = &link {
            description.push(l.clone());
        }
        push_event_head(
            &mut out,
            &uid,
            &stamp,
            day,
            &summary,
            &description.join("\n"),
        );
        if let Some(l) = &link {
            push_line(&mut out, &format!("URL:{l}"));
        }
        push_line(&mut out, "TRANSP:TRANSPARENT");
        push_line(&mut out, "BEGIN:VALARM");
        push_line(&mut out, "ACTION:DISPLAY");
        push_line(&mut out, &format!("DESCRIPTION:{}", escape(&summary)));
        push_line(&mut out, &format!("TRIGGER:{REMINDER}"));
        push_line(&mut out, "END:VALARM");
        push_line(&mut out, "END:VEVENT");
    }
    push_line(&mut out, "END:VCALENDAR");
    out
}
