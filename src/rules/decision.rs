//! The decision a rule returns, read from its Rhai map into a typed value.
//!
//! Admins write these maps by hand, so every key is checked: an unknown key or a wrong type is an error that names
//! the key, never a silently ignored typo.

use chrono::NaiveDate;
use rhai::{Dynamic, Map};

/// What a rule decided about one mail.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct Decision {
    /// `tax_demand`, `client_request`, `notice`, `ignore`, …
    pub category: String,
    /// Demand kind (`demands.toml`) or request topic.
    pub kind: Option<String>,
    /// The client the rule named; `ClientChoice::Resolve` lets the engine find it.
    pub client: ClientChoice,
    pub demand: Option<DemandFacts>,
    /// Tasks the rule listed; `None` lets the engine derive them (demands from `demands.toml`).
    pub tasks: Option<Vec<TaskSpec>>,
    /// Free text shown to auditors.
    pub reason: String,
    /// What the demand asks for, replacing the list read from its text (`mail.checklist`); `Some(vec![])` means
    /// none.
    pub checklist: Option<Vec<String>>,
}

/// Whether the rule named the client.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientChoice {
    /// The rule said nothing: resolve from the mail (XML taxpayer, INNs of clients, sender).
    #[default]
    Resolve,
    /// The rule named this INN.
    Inn(String),
    /// The rule said the mail is about no client (`client_inn: ()`).
    None,
}

/// Facts about a demand the rule found.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct DemandFacts {
    pub number: Option<String>,
    pub date: Option<NaiveDate>,
    /// The date the tax office sent it.
    pub sent: Option<NaiveDate>,
    /// A deadline written in the document (payment demands).
    pub deadline: Option<NaiveDate>,
    /// The date of a summons.
    pub appointment: Option<NaiveDate>,
}

/// One task as a rule lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TaskSpec {
    pub step: String,
    pub title: Option<String>,
    pub role: String,
    pub due: TaskDue,
    pub priority: String,
}

/// When a task a rule listed is due.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskDue {
    /// N working days after the received date.
    WorkingDays(u32),
    /// A calendar date, moved to the next working day if needed.
    Date(NaiveDate),
}

fn type_error(key: &str, expected: &str, got: &Dynamic) -> String {
    format!(
        "decision key `{key}`: expected {expected}, got {}",
        got.type_name()
    )
}

fn string(key: &str, v: Dynamic) -> Result<String, String> {
    let shown = v.clone();
    v.into_string()
        .map_err(|_| type_error(key, "a string", &shown))
}

fn opt_string(key: &str, v: Dynamic) -> Result<Option<String>, String> {
    if v.is_unit() {
        return Ok(None);
    }
    string(key, v).map(|s| if s.trim().is_empty() { None } else { Some(s) })
}

fn opt_date(key: &str, v: Dynamic) -> Result<Option<NaiveDate>, String> {
    match opt_string(key, v)? {
        None => Ok(None),
        Some(s) => s
            .parse::<NaiveDate>()
            .map(Some)
            .map_err(|_| format!("decision key `{key}`: {s:?} is not an ISO date (YYYY-MM-DD)")),
    }
}

fn map(key: &str, v: Dynamic) -> Result<Map, String> {
    let shown = v.clone();
    v.try_cast::<Map>()
        .ok_or_else(|| type_error(key, "a map", &shown))
}

impl Decision {
    /// Reads a rule's return value: `()` is "not mine" (`Ok(None)`), a map is a decision, anything else an error.
    pub fn from_dynamic(value: Dynamic) -> Result<Option<Decision>, String> {
        if value.is_unit() {
            return Ok(None);
        }
        if !value.is::<Map>() {
            return Err(format!(
                "classify must return () or a decision map, not {}",
                value.type_name()
            ));
        }
        let m = map("decision", value)?;
        let mut d = Decision::default();
        let mut has_category = false;
        for (key, v) in m {
            match key.as_str() {
                "category" => {
                    d.category = string("category", v)?;
                    has_category = !d.category.trim().is_empty();
                }
                "kind" => d.kind = opt_string("kind", v)?,
                "client_inn" => {
                    d.client = match opt_string("client_inn", v)? {
                        Some(inn) => ClientChoice::Inn(inn),
                        None => ClientChoice::None,
                    }
                }
                "demand" => {
                    if !v.is_unit() {
                        d.demand = Some(demand_facts(map("demand", v)?)?);
                    }
                }
                "tasks" => {
                    if !v.is_unit() {
                        let shown = v.clone();
                        let items = v
                            .try_cast::<rhai::Array>()
                            .ok_or_else(|| type_error("tasks", "an array", &shown))?;
                        d.tasks = Some(items.into_iter().map(task_spec).collect::<Result<_, _>>()?);
                    }
                }
                "reason" => d.reason = opt_string("reason", v)?.unwrap_or_default(),
                "checklist" => {
                    if !v.is_unit() {
                        let shown = v.clone();
                        let items = v.try_cast::<rhai::Array>().ok_or_else(|| {
                            type_error("checklist", "an array of strings", &shown)
                        })?;
                        d.checklist = Some(
                            items
                                .into_iter()
                                .map(|i| string("checklist[]", i))
                                .filter(|i| i.as_ref().map_or(true, |s| !s.trim().is_empty()))
                                .collect::<Result<_, _>>()?,
                        );
                    }
                }
                other => return Err(format!("unknown decision key `{other}`")),
            }
        }
        if !has_category {
            return Err("decision without `category`".into());
        }
        Ok(Some(d))
    }
}

fn demand_facts(m: Map) -> Result<DemandFacts, String> {
    let mut f = DemandFacts::default();
    for (key, v) in m {
        match key.as_str() {
            "number" => f.number = opt_string("demand.number", v)?,
            "date" => f.date = opt_date("demand.date", v)?,
            "sent" => f.sent = opt_date("demand.sent", v)?,
            "deadline" => f.deadline = opt_date("demand.deadline", v)?,
            "appointment" => f.appointment = opt_date("demand.appointment", v)?,
            other => return Err(format!("unknown key `demand.{other}`")),
        }
    }
    Ok(f)
}

fn task_spec(v: Dynamic) -> Result<TaskSpec, String> {
    let m = map("tasks[]", v)?;
    let mut step = None;
    let mut title = None;
    let mut role = "accountant".to_owned();
    let mut due = None;
    let mut priority = "normal".to_owned();
    for (key, v) in m {
        match key.as_str() {
            "step" => step = Some(string("tasks[].step", v)?),
            "title" => title = opt_string("tasks[].title", v)?,
            "role" => role = string("tasks[].role", v)?,
            "priority" => priority = string("tasks[].priority", v)?,
            "due_in_working_days" => {
                let n = v.as_int().map_err(|t| {
                    format!(
                        "decision key `tasks[].due_in_working_days`: expected an integer, got {t}"
                    )
                })?;
                let n = u32::try_from(n)
                    .map_err(|_| format!("tasks[].due_in_working_days: {n} is out of range"))?;
                due = Some(TaskDue::WorkingDays(n));
            }
            "due_date" => {
                due = opt_date("tasks[].due_date", v)?.map(TaskDue::Date);
            }
            other => return Err(format!("unknown key `tasks[].{other}`")),
        }
    }
    let step = step.ok_or("a task without `step`")?;
    let due = due
        .ok_or_else(|| format!("task `{step}` has neither `due_in_working_days` nor `due_date`"))?;
    Ok(TaskSpec {
        step,
        title,
        role,
        due,
        priority,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(script: &str) -> Dynamic {
        rhai::Engine::new().eval::<Dynamic>(script).unwrap()
    }

    #[test]
    fn unit_means_the_rule_passes() {
        assert_eq!(Decision::from_dynamic(Dynamic::UNIT).unwrap(), None);
    }

    #[test]
    fn a_full_decision_is_read() {
        let d = Decision::from_dynamic(eval(
            r#"#{category: "tax_demand", kind: "payment", client_inn: "7728997898",
                demand: #{number: "12", date: "2026-03-02", deadline: "2026-03-20"},
                reason: "payment demand"}"#,
        ))
        .unwrap()
        .unwrap();
        assert_eq!(d.category, "tax_demand");
        assert_eq!(d.client, ClientChoice::Inn("7728997898".into()));
        assert_eq!(
            d.demand.unwrap().deadline,
            NaiveDate::from_ymd_opt(2026, 3, 20)
        );
        assert_eq!(d.tasks, None);
    }

    #[test]
    fn a_misspelt_key_is_named() {
        let err =
            Decision::from_dynamic(eval(r#"#{category: "notice", resaon: "x"}"#)).unwrap_err();
        assert!(err.contains("resaon"), "{err}");
    }

    #[test]
    fn a_decision_needs_a_category() {
        assert!(Decision::from_dynamic(eval(r#"#{kind: "x"}"#))
            .unwrap_err()
            .contains("category"));
    }

    #[test]
    fn a_wrong_return_type_is_an_error() {
        assert!(Decision::from_dynamic(eval("42"))
            .unwrap_err()
            .contains("decision map"));
    }

    #[test]
    fn listed_tasks_need_a_due_date() {
        let err = Decision::from_dynamic(eval(
            r#"#{category: "client_request", tasks: [#{step: "request"}]}"#,
        ))
        .unwrap_err();
        assert!(err.contains("due_in_working_days"), "{err}");
        let d = Decision::from_dynamic(eval(
            r#"#{category: "client_request", tasks: [#{step: "request", role: "payroll", due_in_working_days: 2}]}"#,
        ))
        .unwrap()
        .unwrap();
        assert_eq!(d.tasks.unwrap()[0].due, TaskDue::WorkingDays(2));
    }
}
