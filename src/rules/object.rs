//! The `mail` object a rule sees: the parsed mail, the extracted facts and the evidence of what it is — the fields
//! of the rule API, read only.

use super::helpers::DataSize;
use crate::evidence::{Document, Evidence};
use crate::mail::{Facts, ParsedMail, XmlDemand};
use chrono::NaiveDate;
use rhai::{Array, Dynamic, Engine, EvalAltResult, Map, Position};
use std::sync::Arc;

/// The `mail` a rule sees: the fields of the rule API, read only, handed from rule to rule and into the rules' own
/// functions by pointer.
///
/// Read like a map (`mail.subject`, `mail["subject"]`, `"demand" in mail`, `mail.keys()`); a field read is a copy,
/// so a rule may change what it read. Writing to the mail itself is an error: one rule file's change would otherwise
/// reach the files after it (a shared map) and the decision would depend on the order of the files, not on the mail.
/// A plain map would also be copied whole, headers and attachments included, at every call of a rule's own function
/// with `mail`; this is one pointer.
#[derive(Debug, Clone)]
pub struct MailObject(Arc<(Map, DataSize)>);

impl MailObject {
    pub fn new(fields: Map) -> MailObject {
        let mut size = DataSize::default();
        let unbounded = DataSize {
            items: usize::MAX,
            bytes: usize::MAX,
        };
        super::helpers::measure_map(&fields, &mut size, unbounded, 0);
        MailObject(Arc::new((fields, size)))
    }

    pub fn fields(&self) -> &Map {
        &self.0 .0
    }

    /// What the mail holds, measured once: the memory ceiling of a rule allows for a copy of it.
    pub(super) fn size(&self) -> DataSize {
        self.0 .1
    }

    fn field(&self, name: &str) -> Dynamic {
        self.fields().get(name).cloned().unwrap_or(Dynamic::UNIT)
    }
}

/// The fields [`mail_object`] fills, each with a getter of its own (the indexer answers any other name with `()`,
/// as a map does). Rhai reaches the indexer only after looking for a getter: with getters, evaluating the corpus takes
/// 3 % fewer instructions.
const FIELDS: &[&str] = &[
    "message_id",
    "subject",
    "from",
    "from_name",
    "to",
    "cc",
    "date",
    "received_at",
    "mailbox",
    "text",
    "html",
    "headers",
    "attachments",
    "in_reply_to",
    "references",
    "is_auto",
    "is_reply",
    "inns",
    "kpps",
    "ogrns",
    "demand",
    "search_text",
    "document",
    "own_text",
    "checklist",
    "forwarded_text",
    "quoted_text",
    "new_text",
];

fn read_only(name: &str) -> Box<EvalAltResult> {
    EvalAltResult::ErrorRuntime(
        format!(
            "the mail is read only: `{name}` cannot be set (copy it first: `let v = mail.{name};`, or \
             `let m = mail.to_map();`)"
        )
        .into(),
        Position::NONE,
    )
    .into()
}

/// Whether two of the mail's values are equal: unit, strings, numbers, booleans, and arrays and maps of them (what
/// [`mail_object`] builds). Any other kind of value counts as different.
fn same(a: &Dynamic, b: &Dynamic) -> bool {
    if a.is_unit() || b.is_unit() {
        return a.is_unit() && b.is_unit();
    }
    if let (Some(x), Some(y)) = (
        a.read_lock::<rhai::ImmutableString>(),
        b.read_lock::<rhai::ImmutableString>(),
    ) {
        // A field written back unchanged is the very string the mail holds: no need to compare 512 KiB of text.
        return x.ptr_eq(&y) || *x == *y;
    }
    if let (Some(x), Some(y)) = (a.read_lock::<Array>(), b.read_lock::<Array>()) {
        return x.len() == y.len() && x.iter().zip(y.iter()).all(|(x, y)| same(x, y));
    }
    if let (Some(x), Some(y)) = (a.read_lock::<Map>(), b.read_lock::<Map>()) {
        return x.len() == y.len()
            && x.iter()
                .zip(y.iter())
                .all(|((kx, x), (ky, y))| kx == ky && same(x, y));
    }
    match (a.as_bool(), b.as_bool()) {
        (Ok(x), Ok(y)) => return x == y,
        (Err(_), Err(_)) => {}
        _ => return false,
    }
    match (a.as_int(), b.as_int()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// A write to the mail's field `name`: refused, unless it writes back what the field holds — as Rhai does after a
/// method call on a field it read (`mail.attachments.len()`, `mail.headers.get("precedence")`).
fn write(m: &MailObject, name: &str, value: &Dynamic) -> Result<(), Box<EvalAltResult>> {
    if same(&m.field(name), value) {
        Ok(())
    } else {
        Err(read_only(name))
    }
}

/// Registers the `mail` type: a getter per field, the indexer, the map functions that read (`contains` for `in`,
/// `get`, `keys`, `values`, `len`, `is_empty`), `to_map()` for a copy a rule may change, and setters that refuse
/// any change.
pub(super) fn register(engine: &mut Engine) {
    engine.register_type_with_name::<MailObject>("mail");
    for &name in FIELDS {
        engine.register_get(name, move |m: &mut MailObject| m.field(name));
        engine.register_set(name, move |m: &mut MailObject, value: Dynamic| {
            write(m, name, &value)
        });
    }
    engine.register_indexer_get(|m: &mut MailObject, name: &str| m.field(name));
    engine.register_indexer_set(|m: &mut MailObject, name: &str, value: Dynamic| {
        write(m, name, &value)
    });
    engine.register_fn("contains", |m: &mut MailObject, name: &str| {
        m.fields().contains_key(name)
    });
    engine.register_fn("get", |m: &mut MailObject, name: &str| m.field(name));
    engine.register_fn("keys", |m: &mut MailObject| -> Array {
        m.fields()
            .keys()
            .map(|k| Dynamic::from(k.to_string()))
            .collect()
    });
    engine.register_fn("values", |m: &mut MailObject| -> Array {
        m.fields().values().cloned().collect()
    });
    engine.register_fn("len", |m: &mut MailObject| {
        i64::try_from(m.fields().len()).unwrap_or(i64::MAX)
    });
    engine.register_fn("is_empty", |m: &mut MailObject| m.fields().is_empty());
    engine.register_fn("to_map", |m: &mut MailObject| -> Map { m.fields().clone() });
    engine.register_fn("to_string", |m: &mut MailObject| {
        format!("{:?}", m.fields())
    });
    engine.register_fn("to_debug", |m: &mut MailObject| format!("{:?}", m.fields()));
}

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

/// Builds the `mail` of the rule API (docs/rules-api.md). `received` is the date the mail counts as received (its Date header in
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
    debug_assert!(m.keys().all(|k| FIELDS.contains(&k.as_str())));
    Dynamic::from(MailObject::new(m))
}
