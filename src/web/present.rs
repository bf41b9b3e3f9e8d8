//! How the web view says things to a person, in Russian: dates as дд.мм.гггг, a deadline relative to today (in
//! working days of the production calendar), the codes the pipeline, the tax calendar and the log write as words,
//! a deadline's provenance as one sentence, mail text with its links made clickable (escaped first), and which
//! return-to paths after sign-in are local.
//!
//! Pure functions only: no store, no request; the pages call them with what they read.

use crate::calendar::ProductionCalendar;
use chrono::{NaiveDate, TimeZone as _};

/// How far ahead a deadline is still counted in working days; further ones are said in calendar days.
const WORKING_DAYS_HORIZON: i64 = 62;

/// `2026-01-20` (or an RFC 3339 time, whose date part is taken) as `20.01.2026`; anything else as written.
pub fn ru_date(iso: &str) -> String {
    let day = iso.get(..10).unwrap_or(iso);
    match NaiveDate::parse_from_str(day, "%Y-%m-%d") {
        Ok(d) => d.format("%d.%m.%Y").to_string(),
        Err(_) => iso.to_owned(),
    }
}

/// An RFC 3339 or RFC 2822 (a mail's `Date:`) time in the firm's time zone, as `20.01.2026 14:03`; anything else
/// as written.
pub fn ru_datetime(text: &str, tz: &chrono_tz::Tz) -> String {
    let parsed = chrono::DateTime::parse_from_rfc3339(text.trim())
        .or_else(|_| chrono::DateTime::parse_from_rfc2822(text.trim()));
    match parsed {
        Ok(t) => tz
            .from_utc_datetime(&t.naive_utc())
            .format("%d.%m.%Y %H:%M")
            .to_string(),
        Err(_) => text.to_owned(),
    }
}

/// Russian plural: `one` for 1, 21, …; `few` for 2–4, 22–24, …; `many` otherwise.
pub fn plural<'a>(n: i64, one: &'a str, few: &'a str, many: &'a str) -> &'a str {
    let n = n.abs();
    match (n % 10, n % 100) {
        (1, h) if h != 11 => one,
        (2..=4, h) if !(12..=14).contains(&h) => few,
        _ => many,
    }
}

/// Working days after `from` up to and including `to` (`to` after `from`), or `None` when the calendar does not
/// cover the span or it is beyond the horizon.
pub fn working_days_between(
    cal: &ProductionCalendar,
    from: NaiveDate,
    to: NaiveDate,
    region: Option<&str>,
) -> Option<i64> {
    if to <= from || (to - from).num_days() > WORKING_DAYS_HORIZON * 2 {
        return None;
    }
    let mut n = 0;
    let mut day = from;
    while day < to {
        day = day.succ_opt()?;
        if cal.is_working_day(day, region).ok()? {
            n += 1;
        }
    }
    Some(n)
}

/// A deadline relative to `today`: «просрочено на 12 дн.», «сегодня», «завтра», «через 2 раб. дня».
pub fn relative_due(
    due: NaiveDate,
    today: NaiveDate,
    cal: &ProductionCalendar,
    region: Option<&str>,
) -> String {
    let days = (due - today).num_days();
    if days < 0 {
        return format!("просрочено на {} дн.", -days);
    }
    if days == 0 {
        return "сегодня".to_owned();
    }
    if days == 1 {
        return "завтра".to_owned();
    }
    if days <= WORKING_DAYS_HORIZON {
        if let Some(n) = working_days_between(cal, today, due, region) {
            if n > 0 {
                return format!("через {n} раб. {}", plural(n, "день", "дня", "дней"));
            }
        }
    }
    format!("через {days} дн.")
}

/// Which part of the list a deadline belongs in: overdue, today, the next seven days (whatever day of the week
/// today is), or later.
pub fn section(due: NaiveDate, today: NaiveDate) -> &'static str {
    let days = (due - today).num_days();
    if days < 0 {
        "overdue"
    } else if days == 0 {
        "today"
    } else if days <= 7 {
        "week"
    } else {
        "later"
    }
}

/// What kind of work a task is, from where it came: the tax calendar, a tax-office demand (its case), or any
/// other mail (a client's request, a notice to check).
pub fn task_kind(event: Option<&str>, case_id: Option<i64>) -> &'static str {
    if event.is_some() {
        "calendar"
    } else if case_id.is_some() {
        "demand"
    } else {
        "request"
    }
}

/// Looks `code` up in a table of Russian words; an unknown code is shown as written.
pub fn word(code: &str, table: &[(&str, &str)]) -> String {
    table
        .iter()
        .find(|(k, _)| *k == code)
        .map(|(_, w)| (*w).to_owned())
        .unwrap_or_else(|| code.to_owned())
}

pub const TASK_KINDS: &[(&str, &str)] = &[
    ("demand", "требование"),
    ("request", "запрос клиента"),
    ("calendar", "календарь"),
];

/// The steps the demand catalogue and the rules name.
pub const STEPS: &[(&str, &str)] = &[
    ("receipt", "квитанция о приёме"),
    ("acknowledge", "квитанция о приёме"),
    ("answer", "ответ"),
    ("reply", "ответ"),
    ("explain", "пояснения"),
    ("documents", "представить документы"),
    ("appear", "явка в инспекцию"),
    ("visit", "явка в инспекцию"),
    ("pay", "уплата"),
    ("review", "проверка письма"),
    ("request", "запрос"),
    ("check", "проверка"),
    ("report", "отчётность"),
    ("calendar", "срок по календарю"),
];

pub const ROLES: &[(&str, &str)] = &[
    ("accountant", "бухгалтер"),
    ("lawyer", "юрист"),
    ("hr", "кадры"),
    ("payroll", "зарплата"),
    ("manager", "руководитель"),
];

pub const PRIORITIES: &[(&str, &str)] = &[
    ("high", "срочно"),
    ("urgent", "срочно"),
    ("normal", "обычный"),
    ("low", "не срочно"),
];

pub const TASK_STATUSES: &[(&str, &str)] = &[("open", "открыта"), ("done", "выполнена")];

/// What a deadline is counted from (`from` of a provenance), in the genitive: «после …».
pub const DUE_FROM: &[(&str, &str)] = &[
    ("sent", "отправки"),
    ("received", "получения"),
    ("stated", "срока, указанного в документе"),
    ("appointment", "даты вызова"),
    ("rule", "даты из правила"),
];

/// Production-calendar regions by code (the `calendar` of a provenance), in the genitive: «по календарю …».
pub const REGIONS: &[(&str, &str)] = &[
    ("federal", "федеральному"),
    ("77", "Москвы"),
    ("78", "Санкт-Петербурга"),
    ("50", "Московской области"),
    ("47", "Ленинградской области"),
    ("16", "Республики Татарстан"),
    ("02", "Республики Башкортостан"),
    ("03", "Республики Бурятия"),
    ("14", "Республики Саха (Якутия)"),
    ("20", "Чеченской Республики"),
    ("82", "Республики Крым"),
    ("92", "Севастополя"),
];

/// Mail categories the rules decide.
pub const CATEGORIES: &[(&str, &str)] = &[
    ("tax_demand", "требование ФНС"),
    ("client_request", "запрос клиента"),
    ("notice", "уведомление"),
    ("ignore", "без действий"),
    ("unclassified", "не распознано"),
];

/// Mail states of the log.
pub const MAIL_STATUSES: &[(&str, &str)] = &[
    ("processed", "обработано"),
    ("linked", "присоединено к делу"),
    ("quarantined", "карантин"),
    ("received", "получено"),
];

/// Events of the hash-chained log.
pub const LOG_EVENTS: &[(&str, &str)] = &[
    ("decision", "решение по письму"),
    ("processed", "письмо обработано"),
    ("reprocessed", "повторная обработка"),
    ("task_done", "задача выполнена"),
    ("task_reopened", "выполнение отменено"),
    ("task_reassigned", "задача передана"),
    ("checklist_ticked", "пункт перечня отмечен"),
    ("checklist_unticked", "отметка пункта снята"),
    ("web_sign_in_failed", "неудачный вход"),
];

/// The label of a provenance key (`None`: the key is not for people, e.g. internal ids).
pub fn provenance_label(key: &str) -> Option<&'static str> {
    Some(match key {
        "base" => "исходная дата",
        "from" => "отсчёт от",
        "working_days" => "рабочих дней",
        "calendar" => "производственный календарь",
        "region" => "регион",
        "law" => "основание",
        "rule" => "правило",
        "nominal" => "срок по закону",
        "lead_days" => "задача ставится заранее, дней",
        "warning" => "внимание",
        "due_rule" => "правило срока",
        "source" | "event" | "period" => return None,
        _ => "",
    })
}

/// A provenance value in words: dates as дд.мм.гггг, codes translated.
pub fn provenance_value(key: &str, value: &serde_json::Value) -> String {
    let text = match value {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "—".to_owned(),
        other => other.to_string(),
    };
    match key {
        "base" | "nominal" => ru_date(&text),
        "from" => word(&text, DUE_FROM),
        "calendar" | "region" => {
            let w = word(&text, REGIONS);
            if w == text {
                format!("регион {text}")
            } else {
                w
            }
        }
        _ => text,
    }
}

/// What the deadline sentence needs besides the provenance.
#[derive(Debug, Default)]
pub struct DeadlineFacts<'a> {
    /// The demand's number and date (ISO), when the task answers one.
    pub demand: Option<(&'a str, &'a str)>,
    /// When the mail arrived (ISO date).
    pub received: Option<&'a str>,
    /// The task's due date (ISO).
    pub due: &'a str,
}

/// The deadline in one sentence, e.g. «Требование № 7006 от 08.04.2026, получено 16.04.2026 (6 раб. дней после
/// отправки) → +10 раб. дней после отправки (п. 3 ст. 93 НК РФ) по календарю Москвы → 30.04.2026».
pub fn deadline_sentence(
    provenance: &serde_json::Value,
    facts: &DeadlineFacts<'_>,
    cal: &ProductionCalendar,
) -> String {
    let get = |k: &str| provenance.get(k).and_then(|v| v.as_str()).unwrap_or("");
    let due = ru_date(facts.due);
    if provenance.get("source").and_then(|v| v.as_str()) == Some("tax_calendar") {
        let mut s = format!("Срок по налоговому календарю: {}", ru_date(get("nominal")));
        if !get("law").is_empty() {
            s.push_str(&format!(" ({})", get("law")));
        }
        if let Some(lead) = provenance.get("lead_days").and_then(|v| v.as_i64()) {
            s.push_str(&format!(
                "; задача ставится за {lead} {} до срока",
                plural(lead, "день", "дня", "дней")
            ));
        }
        s.push_str(&format!(" → {due}"));
        return s;
    }
    let region = match get("calendar") {
        "" | "federal" => None,
        r => Some(r),
    };
    let mut parts = Vec::new();
    if let Some((number, date)) = facts.demand {
        let number = number.trim();
        let number = if number.starts_with('№') {
            number.to_owned()
        } else {
            format!("№ {number}")
        };
        let mut s = format!("Требование {number} от {}", ru_date(date));
        if let Some(received) = facts.received {
            s.push_str(&format!(", получено {}", ru_date(received)));
            let sent = NaiveDate::parse_from_str(date, "%Y-%m-%d");
            let got = NaiveDate::parse_from_str(received.get(..10).unwrap_or(received), "%Y-%m-%d");
            if let (Ok(sent), Ok(got)) = (sent, got) {
                if let Some(n) = working_days_between(cal, sent, got, region) {
                    s.push_str(&format!(
                        " ({n} раб. {} после отправки)",
                        plural(n, "день", "дня", "дней")
                    ));
                }
            }
        }
        parts.push(s);
    } else if let Some(received) = facts.received {
        parts.push(format!("Письмо получено {}", ru_date(received)));
    }
    let n = provenance
        .get("working_days")
        .and_then(|v| v.as_i64())
        .unwrap_or(0);
    let from = word(get("from"), DUE_FROM);
    let mut step = if n > 0 {
        format!(
            "+{n} раб. {} после {from} {}",
            plural(n, "день", "дня", "дней"),
            ru_date(get("base"))
        )
    } else if !get("base").is_empty() {
        format!("срок от {from} {}", ru_date(get("base")))
    } else {
        String::new()
    };
    if !get("law").is_empty() {
        step.push_str(&format!(" ({})", get("law")));
    }
    match get("calendar") {
        "" => {}
        "federal" => step.push_str(" по федеральному календарю"),
        region => step.push_str(&format!(
            " по календарю {}",
            provenance_value("calendar", &serde_json::Value::String(region.to_owned()))
        )),
    }
    let step = step.trim().to_owned();
    if !step.is_empty() {
        parts.push(step);
    }
    parts.push(due);
    parts.join(" → ")
}

/// Escapes `s` for HTML text and attributes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Mail text as HTML: everything escaped, and `http(s)://` links made clickable (opening elsewhere, with no
/// referrer). Trailing punctuation stays outside the link.
pub fn linkify(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 64);
    let mut rest = text;
    loop {
        let start = [rest.find("https://"), rest.find("http://")]
            .into_iter()
            .flatten()
            .min();
        let Some(start) = start else {
            out.push_str(&escape(rest));
            return out;
        };
        out.push_str(&escape(&rest[..start]));
        let tail = &rest[start..];
        let mut end = tail
            .find(|c: char| c.is_whitespace() || matches!(c, '<' | '>' | '"' | '\'' | '«' | '»'))
            .unwrap_or(tail.len());
        while end > 0 && tail[..end].ends_with(['.', ',', ';', ':', '!', '?', ')']) {
            end -= 1;
        }
        let url = &tail[..end];
        if url.len() <= "https://".len() {
            out.push_str(&escape(url));
        } else {
            let e = escape(url);
            out.push_str(&format!(
                "<a href=\"{e}\" rel=\"noopener noreferrer nofollow\" target=\"_blank\">{e}</a>"
            ));
        }
        rest = &tail[end..];
        if end == 0 {
            // Not a link after all ("http://" followed by punctuation): take one character and go on.
            let mut chars = rest.chars();
            if let Some(c) = chars.next() {
                out.push_str(&escape(&c.to_string()));
            }
            rest = chars.as_str();
        }
    }
}

/// The page to return to after sign-in, if `next` is a local path: it starts with one `/` (not `//`, which a
/// browser reads as another host), holds no backslash (which browsers read as `/`), no scheme, no control
/// characters, and is not the sign-in page itself.
pub fn local_return_path(next: &str) -> Option<String> {
    let ok = next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && !next.contains("://")
        && !next.chars().any(|c| c.is_control() || c.is_whitespace())
        && next.len() <= 2000
        && !next.starts_with("/login")
        && !next.starts_with("/logout");
    ok.then(|| next.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn calendar() -> ProductionCalendar {
        ProductionCalendar::load_dir(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("rules")
                .join("calendar")
                .join("production"),
        )
        .expect("the shipped production calendar")
    }

    fn d(s: &str) -> NaiveDate {
        s.parse().expect("date")
    }

    #[test]
    fn dates_read_day_month_year() {
        assert_eq!(ru_date("2026-01-20"), "20.01.2026");
        assert_eq!(ru_date("2026-01-20T10:00:00Z"), "20.01.2026");
        assert_eq!(ru_date("не дата"), "не дата");
        let tz: chrono_tz::Tz = "Europe/Moscow".parse().expect("tz");
        assert_eq!(
            ru_datetime("Mon, 02 Mar 2026 10:00:00 +0000", &tz),
            "02.03.2026 13:00"
        );
    }

    #[test]
    fn deadlines_say_how_overdue_or_how_many_working_days_are_left() {
        let cal = calendar();
        // Wednesday 11 March 2026.
        let today = d("2026-03-11");
        assert_eq!(
            relative_due(d("2026-02-27"), today, &cal, None),
            "просрочено на 12 дн."
        );
        assert_eq!(relative_due(today, today, &cal, None), "сегодня");
        assert_eq!(relative_due(d("2026-03-12"), today, &cal, None), "завтра");
        assert_eq!(
            relative_due(d("2026-03-13"), today, &cal, None),
            "через 2 раб. дня"
        );
        // Over the weekend: Monday the 16th is the third working day.
        assert_eq!(
            relative_due(d("2026-03-16"), today, &cal, None),
            "через 3 раб. дня"
        );
        assert_eq!(
            relative_due(d("2026-03-20"), today, &cal, None),
            "через 7 раб. дней"
        );
    }

    #[test]
    fn the_next_seven_days_do_not_end_on_sunday() {
        // Sunday 15 March 2026: Monday's deadline is in the coming week, not "later".
        let sunday = d("2026-03-15");
        assert_eq!(section(d("2026-03-14"), sunday), "overdue");
        assert_eq!(section(sunday, sunday), "today");
        assert_eq!(section(d("2026-03-16"), sunday), "week");
        assert_eq!(section(d("2026-03-22"), sunday), "week");
        assert_eq!(section(d("2026-03-23"), sunday), "later");
    }

    #[test]
    fn plurals_follow_russian_grammar() {
        let p = |n| plural(n, "день", "дня", "дней");
        assert_eq!(
            [p(1), p(2), p(5), p(11), p(12), p(21), p(22), p(25)],
            ["день", "дня", "дней", "дней", "дней", "день", "дня", "дней"]
        );
    }

    #[test]
    fn a_demand_deadline_reads_as_one_sentence() {
        let cal = calendar();
        let provenance = serde_json::json!({
            "from": "sent", "base": "2026-04-08", "working_days": 10, "calendar": "77", "law": "п. 3 ст. 93 НК РФ"
        });
        let s = deadline_sentence(
            &provenance,
            &DeadlineFacts {
                demand: Some(("7006", "2026-04-08")),
                received: Some("2026-04-16"),
                due: "2026-04-22",
            },
            &cal,
        );
        assert_eq!(
            s,
            "Требование № 7006 от 08.04.2026, получено 16.04.2026 (6 раб. дней после отправки) → \
             +10 раб. дней после отправки 08.04.2026 (п. 3 ст. 93 НК РФ) по календарю Москвы → 22.04.2026"
        );
        let calendar_task = serde_json::json!({
            "source": "tax_calendar", "event": "ndfl_pay", "period": "2026-11", "nominal": "2026-11-28",
            "law": "п. 6 ст. 226 НК РФ", "lead_days": 5
        });
        assert_eq!(
            deadline_sentence(&calendar_task, &DeadlineFacts { due: "2026-11-23", ..Default::default() }, &cal),
            "Срок по налоговому календарю: 28.11.2026 (п. 6 ст. 226 НК РФ); задача ставится за 5 дней до срока → 23.11.2026"
        );
    }

    #[test]
    fn links_become_clickable_only_after_everything_is_escaped() {
        assert_eq!(
            linkify("см. https://nalog.gov.ru/rn77/, <b>да</b>"),
            "см. <a href=\"https://nalog.gov.ru/rn77/\" rel=\"noopener noreferrer nofollow\" target=\"_blank\">\
             https://nalog.gov.ru/rn77/</a>, &lt;b&gt;да&lt;/b&gt;"
        );
        let hostile = linkify("http://x.example/\"><script>alert(1)</script>");
        assert!(!hostile.contains("<script>"), "{hostile}");
        assert!(!hostile.contains("\"><"), "{hostile}");
        assert_eq!(linkify("http://"), "http://");
        assert_eq!(linkify("javascript:alert(1)"), "javascript:alert(1)");
    }

    #[test]
    fn only_local_paths_are_returned_to_after_sign_in() {
        assert_eq!(
            local_return_path("/tasks/12?x=1").as_deref(),
            Some("/tasks/12?x=1")
        );
        for bad in [
            "//evil.example/",
            "http://evil.example/",
            "https://evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "/tasks\\..\\x",
            "javascript:alert(1)",
            "",
            "tasks",
            "/login?next=/x",
            "/x\n/y",
            "/a http://b",
        ] {
            assert_eq!(local_return_path(bad), None, "{bad:?}");
        }
    }
}
