//! The `mail` object a rule sees: the parsed mail, the extracted facts and the evidence of what it is, as one
//! Rhai map.

use crate::evidence::{Document, Evidence};
use crate::mail::{Facts, ParsedMail, XmlDemand};
use chrono::NaiveDate;
use rhai::{Array, Dynamic, Map};

/// Longest body string handed to the rules (`text`, `html`, `search_text`, each attachment's `text`): half the default
/// `rules.max_string_size` (1 MiB), so a rule may copy, lower-case or join two of them without failing the mail on
/// the string limit. Identifiers, dates and the envelope are extracted from the whole text before this cut.
pub const MAX_RULE_STRING_BYTES: usize = 512 * 1024;

/// `s` cut to [`MAX_RULE_STRING_BYTES`] at a character boundary.
fn capped(s: &str) -> Dynamic {
    let mut end = s.len().min(MAX_RULE_STRING_BYTES);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    Dynamic::from(s[..end].to_owned())
}

fn opt_str(s: Option<&str>) -> Dynamic {
    s.map(|s| Dynamic::from(s.to_owned()))
        .unwrap_or(Dynamic::UNIT)
}

fn opt_date(d: Option<NaiveDate>) -> Dynamic {
    d.map(|d| Dynamic::from(d.format("%Y-%m-%d").to_string()))
        .unwrap_or(Dynamic::UNIT)
}

fn strings<'a>(items: impl IntoIterator<Item = &'a str>) -> Dynamic {
    Dynamic::from(
        items
            .into_iter()
            .map(|s| Dynamic::from(s.to_owned()))
            .collect::<Array>(),
    )
}

fn demand(d: &XmlDemand) -> Dynamic {
    let mut m = Map::new();
    m.insert(
        "taxpayer_inn".into(),
        opt_str(d.taxpayer_inn.as_ref().map(|i| i.as_str())),
    );
    m.insert(
        "taxpayer_kpp".into(),
        opt_str(d.taxpayer_kpp.as_ref().map(|k| k.as_str())),
    );
    m.insert("taxpayer_name".into(), opt_str(d.taxpayer_name.as_deref()));
    m.insert("number".into(), opt_str(d.number.as_deref()));
    m.insert("date".into(), opt_date(d.date));
    m.insert("sent".into(), opt_date(d.sent));
    m.insert("knd".into(), opt_str(d.knd.as_deref()));
    m.insert("office_code".into(), opt_str(d.office_code.as_deref()));
    m.insert("office_name".into(), opt_str(d.office_name.as_deref()));
    Dynamic::from(m)
}

/// The mail's own document as rules see it: `#{class, kind, source, title, number, date, concrete}`.
fn document(d: &Document) -> Dynamic {
    let mut m = Map::new();
    m.insert("class".into(), d.class.as_str().into());
    m.insert("kind".into(), opt_str(d.kind.as_deref()));
    m.insert("source".into(), d.source.as_str().into());
    m.insert("title".into(), d.title.clone().into());
    m.insert("number".into(), opt_str(d.number.as_deref()));
    m.insert("date".into(), opt_date(d.date));
    m.insert("concrete".into(), d.concrete.into());
    Dynamic::from(m)
}

/// Everything a person could read in the mail on one line: subject, body (without the date lines of forward and
/// quotation headers: they date the forward, never the document), text attachments (the XML included), quote
/// markers dropped and white space folded. Computed once here, because every rule searches it.
fn search_text(mail: &ParsedMail, clean_text: &str) -> String {
    let mut all = String::with_capacity(mail.subject.len() + clean_text.len() + 64);
    all.push_str(&mail.subject);
    all.push('\n');
    all.push_str(clean_text);
    for a in &mail.attachments {
        // What lies beyond the cut would be dropped anyway; twice the cut leaves room for the white space squash
        // folds, and keeps 256 attachments of 2 MiB text each from being copied and squashed for nothing.
        if all.len() >= 2 * MAX_RULE_STRING_BYTES {
            break;
        }
        if let Some(t) = &a.text {
            all.push('\n');
            all.push_str(t);
        }
    }
    super::helpers::squash(&all)
}

/// Builds the map of the rule API (docs/rules-api.md). `received` is the date the mail counts as received (its Date header in
/// the firm's time zone); `mailbox` names the source it came from.
pub fn mail_object(
    mail: &ParsedMail,
    facts: &Facts,
    evidence: &Evidence,
    received: NaiveDate,
    mailbox: &str,
) -> Dynamic {
    let mut m = Map::new();
    m.insert("message_id".into(), opt_str(mail.message_id.as_deref()));
    m.insert("subject".into(), mail.subject.clone().into());
    m.insert("from".into(), mail.from.clone().into());
    m.insert("from_name".into(), mail.from_name.clone().into());
    m.insert("to".into(), strings(mail.to.iter().map(String::as_str)));
    m.insert("cc".into(), strings(mail.cc.iter().map(String::as_str)));
    m.insert(
        "date".into(),
        mail.date
            .map(|d| Dynamic::from(d.to_rfc3339()))
            .unwrap_or(Dynamic::UNIT),
    );
    m.insert("received_at".into(), opt_date(Some(received)));
    m.insert("mailbox".into(), mailbox.into());
    m.insert("text".into(), capped(&mail.text));
    m.insert("html".into(), capped(&mail.html));
    let headers: Map = mail
        .headers
        .iter()
        .map(|(k, v)| (k.as_str().into(), Dynamic::from(v.clone())))
        .collect();
    m.insert("headers".into(), headers.into());
    let attachments: Array = mail
        .attachments
        .iter()
        .map(|a| {
            let mut am = Map::new();
            am.insert("name".into(), a.name.clone().into());
            am.insert("mime".into(), a.mime.clone().into());
            am.insert(
                "size".into(),
                Dynamic::from(i64::try_from(a.size).unwrap_or(i64::MAX)),
            );
            am.insert(
                "text".into(),
                a.text.as_deref().map(capped).unwrap_or(Dynamic::UNIT),
            );
            Dynamic::from(am)
        })
        .collect();
    m.insert("attachments".into(), attachments.into());
    m.insert("in_reply_to".into(), opt_str(mail.in_reply_to.as_deref()));
    m.insert(
        "references".into(),
        strings(mail.references.iter().map(String::as_str)),
    );
    m.insert("is_auto".into(), mail.is_auto.into());
    m.insert("is_reply".into(), mail.is_reply().into());
    m.insert(
        "inns".into(),
        strings(facts.inns.iter().map(|i| i.as_str())),
    );
    m.insert(
        "kpps".into(),
        strings(facts.kpps.iter().map(|k| k.as_str())),
    );
    m.insert(
        "ogrns".into(),
        strings(facts.ogrns.iter().map(|o| o.as_str())),
    );
    m.insert(
        "demand".into(),
        facts.demand.as_ref().map(demand).unwrap_or(Dynamic::UNIT),
    );
    m.insert(
        "search_text".into(),
        capped(&search_text(mail, &evidence.sections.clean)),
    );
    m.insert(
        "document".into(),
        evidence
            .document
            .as_ref()
            .map(document)
            .unwrap_or(Dynamic::UNIT),
    );
    m.insert("own_text".into(), capped(&evidence.sections.own));
    m.insert(
        "checklist".into(),
        strings(evidence.checklist.iter().map(String::as_str)),
    );
    m.insert(
        "forwarded_text".into(),
        capped(&evidence.sections.forwarded),
    );
    m.insert("quoted_text".into(), capped(&evidence.sections.quoted));
    m.insert("new_text".into(), capped(&evidence.sections.new_content()));
    Dynamic::from(m)
}
