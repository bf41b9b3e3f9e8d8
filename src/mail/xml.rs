//! Reading the FNS transport envelope (`ON_DOCNPNO_…xml`, КНД 1184002) that operators attach to a
//! demand: who the taxpayer is, the demand's own number and date, when the tax office sent it, and
//! which form it is.
//!
//! The envelope is more reliable than the mail text (it is machine-written by the tax office), so the
//! rules prefer it whenever it is present. Anything that is not such an envelope yields `None`.

use crate::ids::{Inn, Kpp};
use chrono::NaiveDate;
use quick_xml::events::{BytesStart, Event};
use quick_xml::{Reader, XmlVersion};

/// The facts of one demand as stated in its FNS envelope.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct XmlDemand {
    pub taxpayer_inn: Option<Inn>,
    pub taxpayer_kpp: Option<Kpp>,
    pub taxpayer_name: Option<String>,
    /// The demand's own number (`ИнфСообДок/@НомФайлДок`).
    pub number: Option<String>,
    /// The demand's own date (`ИнфСообДок/@ДатаФайлДок`).
    pub date: Option<NaiveDate>,
    /// The date the tax office sent the package (`Документ/@ДатаДок`).
    pub sent: Option<NaiveDate>,
    /// The form code of the enclosed document (`КНД_Док`), e.g. 1165013 for a demand for documents.
    pub knd: Option<String>,
    pub office_code: Option<String>,
    pub office_name: Option<String>,
}

/// A bound on elements read: a real envelope has about a dozen, so a huge XML is not an envelope
/// and need not be read to the end.
const MAX_EVENTS: usize = 10_000;

#[derive(Default)]
struct Party {
    inn: Option<Inn>,
    kpp: Option<Kpp>,
    name: Option<String>,
}

#[derive(Default)]
struct Fio {
    surname: String,
    name: String,
    patronymic: String,
}

impl Fio {
    fn full(&self) -> Option<String> {
        let parts: Vec<&str> = [&self.surname, &self.name, &self.patronymic]
            .into_iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .collect();
        (!parts.is_empty()).then(|| parts.join(" "))
    }
}

/// The value of attribute `name` of `e`, entities unescaped; a value that cannot be unescaped is
/// taken as written rather than dropped.
fn attr(e: &BytesStart<'_>, name: &str) -> Option<String> {
    e.attributes()
        .with_checks(false)
        .flatten()
        .find(|a| a.key.into_inner() == name)
        // An implicit XML 1.0 document: FNS envelopes declare 1.0, and the rules for attribute values are the same.
        .map(|a| match a.normalized_value(XmlVersion::Implicit1_0) {
            Ok(v) => v.into_owned(),
            Err(_) => a.value.clone().into_owned(),
        })
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

fn date_attr(e: &BytesStart<'_>, name: &str) -> Option<NaiveDate> {
    attr(e, name).and_then(|v| super::dates::parse_date(&v))
}

fn read_party(e: &BytesStart<'_>) -> Party {
    Party {
        inn: attr(e, "ИННЮЛ")
            .or_else(|| attr(e, "ИННФЛ"))
            .and_then(|v| Inn::parse(&v).ok()),
        kpp: attr(e, "КПП").and_then(|v| Kpp::parse(&v).ok()),
        name: attr(e, "НаимОрг"),
    }
}

/// Parses `xml` (already decoded to UTF-8) as an FNS envelope. `None` when the document is not one:
/// the root must be `Файл` with a `Документ` and a `ДокНапрИзНО`/`ИнфСообДок` inside. Never panics.
pub fn parse_envelope(xml: &str) -> Option<XmlDemand> {
    let mut reader = Reader::from_str(xml);
    let config = reader.config_mut();
    config.trim_text(true);
    // Real envelopes are well-formed, but a sloppy closing tag must not hide facts already read.
    config.check_end_names = false;
    config.allow_unmatched_ends = true;

    let mut out = XmlDemand::default();
    let mut stack: Vec<String> = Vec::new();
    let mut saw_root = false;
    let mut saw_document = false;
    let mut saw_payload = false;
    let mut taxpayer: Option<Party> = None;
    let mut recipient: Option<Party> = None;
    let mut fio = Fio::default();
    let mut in_individual = false;
    let mut demand_kpp: Option<Kpp> = None;

    for _ in 0..MAX_EVENTS {
        let event = match reader.read_event() {
            Ok(Event::Eof) => break,
            Ok(ev) => ev,
            // Garbage after the facts we need does not make them wrong; garbage before them means
            // the checks below fail and we return None.
            Err(_) => break,
        };
        let (start, is_empty) = match &event {
            Event::Start(e) => (Some(e), false),
            Event::Empty(e) => (Some(e), true),
            Event::End(_) => {
                if let Some(name) = stack.pop() {
                    if name == "НПФЛ" {
                        in_individual = false;
                    }
                }
                continue;
            }
            _ => continue,
        };
        let Some(e) = start else { continue };
        let name = e.local_name().into_inner();
        if stack.is_empty() && !saw_root {
            if name != "Файл" {
                return None;
            }
            saw_root = true;
        }
        let parent = stack.last().map(String::as_str);
        match name {
            "Документ" => {
                saw_document = true;
                out.sent = date_attr(e, "ДатаДок");
            }
            "ОтпрНО" => {
                out.office_code = attr(e, "КодНО");
                out.office_name = attr(e, "НаимНО");
            }
            n if (n == "НПЮЛ" || n == "НПФЛ") && parent == Some("СвНП") => {
                taxpayer = Some(read_party(e));
                if n == "НПФЛ" && !is_empty {
                    in_individual = true;
                }
            }
            // The recipient element is `ОтпрЮЛ` in current formats; older ones used `НПЮЛ`/`НПФЛ`.
            n if parent == Some("СвПолДок") && (n.starts_with("Отпр") || n.starts_with("НП")) =>
            {
                recipient = Some(read_party(e));
            }
            n if n == "ФИО" && in_individual => {
                fio = Fio {
                    surname: attr(e, "Фамилия").unwrap_or_default(),
                    name: attr(e, "Имя").unwrap_or_default(),
                    patronymic: attr(e, "Отчество").unwrap_or_default(),
                };
            }
            "ДокНапрИзНО" => saw_payload = true,
            "ИнфСообДок" => {
                saw_payload = true;
                // Only the first enclosed document describes the demand; later ones are annexes.
                if out.number.is_none() {
                    out.number = attr(e, "НомФайлДок");
                    out.date = date_attr(e, "ДатаФайлДок");
                    out.knd = attr(e, "КНД_Док");
                    demand_kpp = attr(e, "КПП").and_then(|v| Kpp::parse(&v).ok());
                }
            }
            _ => {}
        }
        if !is_empty {
            stack.push(name.to_owned());
        }
    }

    if !(saw_root && saw_document && saw_payload) {
        return None;
    }
    // The taxpayer is whoever `СвНП` names; the recipient (`СвПолДок`) may be a representative, so it
    // is only a fallback for envelopes that omit `СвНП`.
    let mut party = taxpayer.or(recipient).unwrap_or_default();
    if party.name.is_none() {
        party.name = fio.full();
    }
    out.taxpayer_inn = party.inn;
    out.taxpayer_kpp = party.kpp.or(demand_kpp);
    out.taxpayer_name = party.name;
    Some(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    const LEGAL_ENTITY: &str = r#"<?xml version="1.0" encoding="windows-1251"?>
<Файл ИдФайл="ON_DOCNPNO_1650991230165001001_1650991230165001001_1650_20260303_5b0e" ВерсПрог="АИС Налог-3" ВерсФорм="5.02">
  <Документ КНД="1184002" ДатаДок="03.03.2026">
    <СвОтпрДок><ОтпрНО КодНО="1650" НаимНО="Межрайонная ИФНС России № 99 по Республике Татарстан"/></СвОтпрДок>
    <СвПолДок><ОтпрЮЛ НаимОрг="ООО &quot;Представитель&quot;" ИННЮЛ="7728997898" КПП="772801001"/></СвПолДок>
    <СвНП><НПЮЛ НаимОрг="ООО &quot;Ромашка-Тест&quot;" ИННЮЛ="1650991230" КПП="165001001"/></СвНП>
    <Подписант Должн="Начальник отдела"><ФИО Фамилия="Тестова" Имя="Анна" Отчество="Петровна"/></Подписант>
    <ДокНапрИзНО>
      <ИнфСообДок КНД_Док="1165013" НомФайлДок="2817" ДатаФайлДок="02.03.2026" КПП="165001001" КолФайл="1">
        <ИмяФайл>1165013_1650_x.pdf</ИмяФайл>
      </ИнфСообДок>
    </ДокНапрИзНО>
  </Документ>
</Файл>"#;

    const INDIVIDUAL: &str = r#"<?xml version="1.0" encoding="windows-1251"?>
<Файл ИдФайл="ON_DOCNPNO_165099000261_165099000261_1650_20260123_e4c8" ВерсПрог="АИС Налог-3" ВерсФорм="5.02">
  <Документ КНД="1184002" ДатаДок="23.01.2026">
    <СвОтпрДок><ОтпрНО КодНО="1650" НаимНО="Межрайонная ИФНС России № 17"/></СвОтпрДок>
    <СвНП><НПФЛ ИННФЛ="165099000261"><ФИО Фамилия="Медведев" Имя="Максим" Отчество="Юрьевич"/></НПФЛ></СвНП>
    <Подписант Должн="Начальник отдела"><ФИО Фамилия="Абдуллин" Имя="Игорь" Отчество="Юрьевич"/></Подписант>
    <ДокНапрИзНО>
      <ИнфСообДок КНД_Док="1165050" НомФайлДок="13-11/3003@" ДатаФайлДок="22.01.2026" КолФайл="1">
        <ИмяФайл>1165050_x.pdf</ИмяФайл>
      </ИнфСообДок>
    </ДокНапрИзНО>
  </Документ>
</Файл>"#;

    fn ymd(y: i32, m: u32, d: u32) -> Option<NaiveDate> {
        NaiveDate::from_ymd_opt(y, m, d)
    }

    #[test]
    fn an_organisation_envelope_yields_the_taxpayer_from_svnp_and_the_demand_facts() {
        let d = parse_envelope(LEGAL_ENTITY).unwrap();
        assert_eq!(d.taxpayer_inn.as_ref().map(Inn::as_str), Some("1650991230"));
        assert_eq!(d.taxpayer_kpp.as_ref().map(Kpp::as_str), Some("165001001"));
        assert_eq!(d.taxpayer_name.as_deref(), Some("ООО \"Ромашка-Тест\""));
        assert_eq!(d.number.as_deref(), Some("2817"));
        assert_eq!(d.date, ymd(2026, 3, 2));
        assert_eq!(d.sent, ymd(2026, 3, 3));
        assert_eq!(d.knd.as_deref(), Some("1165013"));
        assert_eq!(d.office_code.as_deref(), Some("1650"));
        assert_eq!(
            d.office_name.as_deref(),
            Some("Межрайонная ИФНС России № 99 по Республике Татарстан")
        );
    }

    #[test]
    fn an_individual_envelope_yields_the_twelve_digit_inn_and_the_persons_name() {
        let d = parse_envelope(INDIVIDUAL).unwrap();
        assert_eq!(
            d.taxpayer_inn.as_ref().map(Inn::as_str),
            Some("165099000261")
        );
        assert_eq!(d.taxpayer_kpp, None);
        assert_eq!(d.taxpayer_name.as_deref(), Some("Медведев Максим Юрьевич"));
        assert_eq!(d.number.as_deref(), Some("13-11/3003@"));
        assert_eq!(d.date, ymd(2026, 1, 22));
        assert_eq!(d.sent, ymd(2026, 1, 23));
        assert_eq!(d.knd.as_deref(), Some("1165050"));
    }

    #[test]
    fn the_recipient_is_the_taxpayer_only_when_svnp_is_absent() {
        let without_svnp = LEGAL_ENTITY.replace(
            r#"<СвНП><НПЮЛ НаимОрг="ООО &quot;Ромашка-Тест&quot;" ИННЮЛ="1650991230" КПП="165001001"/></СвНП>"#,
            "",
        );
        let d = parse_envelope(&without_svnp).unwrap();
        assert_eq!(d.taxpayer_inn.as_ref().map(Inn::as_str), Some("7728997898"));
        assert_eq!(d.taxpayer_name.as_deref(), Some("ООО \"Представитель\""));
    }

    #[test]
    fn an_inn_with_a_wrong_check_digit_in_the_envelope_is_dropped() {
        let bad = LEGAL_ENTITY.replace(r#"ИННЮЛ="1650991230""#, r#"ИННЮЛ="1650991231""#);
        let d = parse_envelope(&bad).unwrap();
        assert_eq!(d.taxpayer_inn, None);
        assert_eq!(d.number.as_deref(), Some("2817"));
    }

    #[test]
    fn an_envelope_without_a_declaration_is_still_read() {
        let body = LEGAL_ENTITY.split_once("?>").unwrap().1;
        assert!(parse_envelope(body).is_some());
    }

    #[test]
    fn anything_that_is_not_an_fns_envelope_is_none() {
        for s in [
            "",
            "garbage <<<>>> &&&",
            "<?xml version=\"1.0\"?><root><Файл/></root>",
            "<Файл><Документ ДатаДок=\"03.03.2026\"/></Файл>",
            "<Файл",
            "<Файл ИдФайл=\"x\"><Документ><ДокНапрИзНО><ИнфСообДок НомФайлДок=\"1\"",
            "\u{0}\u{1}\u{2}<\u{ff}",
            "<a><b><c></a></b></c>",
        ] {
            let _ = parse_envelope(s);
        }
        assert_eq!(parse_envelope(""), None);
        assert_eq!(parse_envelope("garbage <<<>>> &&&"), None);
        assert_eq!(
            parse_envelope("<?xml version=\"1.0\"?><root><Файл/></root>"),
            None
        );
        assert_eq!(
            parse_envelope("<Файл><Документ ДатаДок=\"03.03.2026\"/></Файл>"),
            None
        );
    }

    #[test]
    fn a_truncated_envelope_keeps_the_facts_read_before_the_cut() {
        let cut = &LEGAL_ENTITY[..LEGAL_ENTITY.find("<ИмяФайл>").unwrap()];
        let d = parse_envelope(cut).unwrap();
        assert_eq!(d.number.as_deref(), Some("2817"));
    }
}
