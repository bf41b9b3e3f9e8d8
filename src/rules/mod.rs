//! The Rhai ruleset that classifies mail.
//!
//! `rules/mail/*.rhai` run in file-name order; each defines `fn classify(mail)` returning `()` (not mine) or a
//! decision map (see [`Decision`]). Files whose name starts with `_` are libraries: their functions are available to
//! every rule file. The engine is a sandbox — no file, network or module access, bounded operations, call depth,
//! string/array/map sizes and wall-clock time per mail — so a bad rule fails for one mail and never for the service.
//! Invariant: this module does no I/O at classification time; the directory and calendars are in-memory snapshots.

pub mod check;
mod decision;
mod helpers;
pub mod live;
mod object;

pub use decision::{ClientChoice, Decision, DemandFacts, TaskDue, TaskSpec};
pub use live::LiveRules;
pub use object::{mail_object, MailObject};

use crate::calendar::{DemandCatalog, ProductionCalendar};
use crate::directory::Directory;
use rhai::{Dynamic, Engine, AST};
use sha2::{Digest as _, Sha256};
use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Limits of the sandbox: the settings' type, defined (with its defaults) once in `settings`.
pub use crate::settings::SandboxLimits as Limits;

/// What the helper functions may consult: in-memory snapshots, shared read-only.
#[derive(Debug, Clone)]
pub struct RuleContext {
    pub directory: Arc<Directory>,
    pub calendar: Arc<ProductionCalendar>,
    pub demands: Arc<DemandCatalog>,
    /// What a mail is decided by (`demands.toml` titles, `notices.toml`, `topics.toml`), compiled.
    pub vocabulary: Arc<crate::evidence::Vocabulary>,
}

/// What the evidence finder reads of `demands.toml`: each kind's titles, form codes, refinement and phrases.
pub fn demand_titles(demands: &DemandCatalog) -> Vec<crate::evidence::DemandTitles> {
    demands
        .kinds()
        .map(|k| crate::evidence::DemandTitles {
            id: k.id.clone(),
            titles: k.titles.clone(),
            knd: k.knd.clone(),
            refines: k.refines.clone(),
            phrases: k.recognise.iter().chain(&k.informal).cloned().collect(),
        })
        .collect()
}

#[cfg(test)]
impl RuleContext {
    /// The shipped calendars, demand catalogue and vocabulary of `rules/`, with an empty directory (unit tests).
    #[allow(clippy::unwrap_used)] // a shipped file that does not load is a failed test
    pub(crate) fn shipped() -> RuleContext {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("rules");
        let demands = DemandCatalog::load(&root.join("demands.toml")).unwrap();
        let vocabulary =
            crate::evidence::Vocabulary::load(&root, &demand_titles(&demands)).unwrap();
        RuleContext {
            directory: Arc::new(Directory::default()),
            calendar: Arc::new(
                ProductionCalendar::load_dir(&root.join("calendar/production")).unwrap(),
            ),
            demands: Arc::new(demands),
            vocabulary: Arc::new(vocabulary),
        }
    }
}

/// A rule file that failed to load, with where.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{file}:{line}:{column}: {message}")]
    Script {
        file: String,
        line: usize,
        /// Rhai positions carry a column; 1 when the error is about the whole file.
        column: usize,
        message: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}: no rule files (*.rhai) found")]
    Empty(String),
}

/// Every `*.rhai` of `dir` as `(file name, text)`, in file-name order (the order rules run in).
pub fn read_sources(dir: &Path) -> Result<Vec<(String, String)>, LoadError> {
    let io = |e| LoadError::Io {
        path: dir.display().to_string(),
        source: e,
    };
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "rhai") && p.is_file())
        .collect();
    paths.sort();
    let mut sources = Vec::with_capacity(paths.len());
    for p in &paths {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = std::fs::read_to_string(p).map_err(|e| LoadError::Io {
            path: p.display().to_string(),
            source: e,
        })?;
        sources.push((name, text));
    }
    Ok(sources)
}

/// Compiles one file, and the regular expressions it writes as literals into `patterns`; a rule file (not a `_`
/// library) must define `fn classify(mail)`.
fn compile_file(
    engine: &Engine,
    patterns: &helpers::RegexCache,
    name: &str,
    text: &str,
) -> Result<AST, LoadError> {
    let mut ast = engine.compile(text).map_err(|e| LoadError::Script {
        file: name.to_owned(),
        line: e.position().line().unwrap_or(1),
        column: e.position().position().unwrap_or(1),
        message: e.err_type().to_string(),
    })?;
    ast.set_source(name);
    patterns
        .compile_literals(&ast)
        .map_err(|(line, column, message)| LoadError::Script {
            file: name.to_owned(),
            line,
            column,
            message,
        })?;
    if !name.starts_with('_')
        && !ast
            .iter_functions()
            .any(|f| f.name == "classify" && f.params.len() == 1)
    {
        return Err(LoadError::Script {
            file: name.to_owned(),
            line: 1,
            column: 1,
            message: "a rule file must define `fn classify(mail)`".into(),
        });
    }
    Ok(ast)
}

/// A rule that failed on one mail.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{file}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct RuleFailure {
    pub file: String,
    pub line: Option<usize>,
    pub message: String,
}

/// The winning rule's decision.
#[derive(Debug, Clone)]
pub struct Classification {
    /// File name of the rule that decided; `None` when no rule claimed the mail.
    pub rule: Option<String>,
    pub decision: Option<Decision>,
    /// The rule files that ran before the decision and returned `()`, in order: the decision trace auditors read.
    pub ran: Vec<String>,
}

struct RuleFile {
    name: String,
    ast: AST,
}

/// A compiled, versioned set of rule files.
pub struct Ruleset {
    engine: Engine,
    files: Vec<RuleFile>,
    version: String,
    dir: PathBuf,
    time_budget: Duration,
    /// What the helper functions consult (directory, calendars, demand catalogue): compiled in, so a mail decided
    /// under this set sees these snapshots and no others ([`Ruleset::with_context`] makes a copy on new ones).
    ctx: RuleContext,
    limits: Limits,
    /// The compiled regular expressions of the pattern helpers, the rules' literal ones compiled at load; kept by
    /// [`Ruleset::with_context`] (same rules, same patterns).
    patterns: Arc<helpers::RegexCache>,
}

impl std::fmt::Debug for Ruleset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ruleset")
            .field("version", &self.version)
            .field(
                "files",
                &self
                    .files
                    .iter()
                    .map(|r| r.name.as_str())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

thread_local! {
    /// The wall-clock deadline of the classification running on this thread (rules run synchronously).
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// What the script's variables may hold during one mail, beyond the mail itself, in multiples of the engine's
/// limits for one value: `MEMORY_CEILING_VALUES × rules.max_string_size` bytes (16 MiB by default) and as many times
/// `rules.max_array_size` items. A rule that lower-cases a few texts and keeps some lists is far below it; a rule
/// that keys a map by megabyte strings (Rhai counts a map's values, not its keys) meets it within a few megabytes.
const MEMORY_CEILING_VALUES: usize = 16;

/// Variable reads between two measurements of the script's own variables; the walk itself stops at the ceiling,
/// and the next one waits longer when the variables hold many items, so measuring costs a few item visits per read.
const MEMORY_CHECK_EVERY: usize = 64;

/// Variable reads between two measurements of the shared values in scope — variables a closure captured — at least,
/// and at most (a big value is walked in proportion to its size, not at every measurement). The mail itself is a
/// read-only [`MailObject`], measured once when it is built.
const SHARED_CHECK_EVERY: (usize, usize) = (1024, 32_768);

/// The memory ceiling of the classification running on this thread, and the reads left before the next measurement.
#[derive(Debug, Clone, Copy)]
struct Ceiling {
    max: helpers::DataSize,
    reads_left: usize,
    /// Reads left before the shared values are measured again, and what they held when last measured.
    shared_reads_left: usize,
    shared: helpers::DataSize,
}

thread_local! {
    static CEILING: Cell<Option<Ceiling>> = const { Cell::new(None) };
}

/// Sets the deadline and the memory ceiling for one classification of `mail` on this thread; the guard clears them.
/// The ceiling allows for a copy of the mail (`let a = mail.attachments;`) beyond what the limits allow.
fn enter_budget(limits: &Limits, budget: Duration, mail: &Dynamic) -> BudgetGuard {
    DEADLINE.with(|d| d.set(Some(Instant::now() + budget)));
    let or_max = |n: usize| if n == 0 { usize::MAX } else { n };
    let of_mail = mail
        .read_lock::<MailObject>()
        .map(|m| m.size())
        .unwrap_or_default();
    let max = helpers::DataSize {
        items: of_mail
            .items
            .saturating_add(or_max(limits.max_array_size).saturating_mul(MEMORY_CEILING_VALUES)),
        bytes: of_mail
            .bytes
            .saturating_add(or_max(limits.max_string_size).saturating_mul(MEMORY_CEILING_VALUES)),
    };
    CEILING.with(|c| {
        c.set(Some(Ceiling {
            max,
            reads_left: MEMORY_CHECK_EVERY,
            shared_reads_left: 0,
            shared: helpers::DataSize::default(),
        }))
    });
    BudgetGuard
}

/// Clears the thread's deadline and memory ceiling when a classification ends, however it ends.
struct BudgetGuard;

impl Drop for BudgetGuard {
    fn drop(&mut self) {
        DEADLINE.with(|d| d.set(None));
        CEILING.with(|c| c.set(None));
        helpers::forget_mail();
    }
}

/// Called on every variable read: counts down, then measures what the script's scope holds (its own variables
/// every few reads, shared values — what closures captured — less often) and stops the script when
/// it is over the ceiling.
fn check_memory(scope: &rhai::Scope) -> Result<(), Box<rhai::EvalAltResult>> {
    let Some(mut ceiling) = CEILING.with(Cell::get) else {
        return Ok(());
    };
    if ceiling.reads_left > 0 {
        ceiling.reads_left -= 1;
        CEILING.with(|c| c.set(Some(ceiling)));
        return Ok(());
    }
    let walk_shared = ceiling.shared_reads_left == 0;
    let mut own = helpers::DataSize::default();
    let mut shared = helpers::DataSize::default();
    let mut within = true;
    for (_, _, value) in scope.iter_raw() {
        let held = if value.is_shared() {
            if !walk_shared {
                continue;
            }
            helpers::measure(value, &mut shared, ceiling.max, 0)
        } else {
            helpers::measure(value, &mut own, ceiling.max, 0)
        };
        if !held {
            within = false;
            break;
        }
    }
    if walk_shared {
        ceiling.shared = shared;
    }
    let used = helpers::DataSize {
        items: own.items.saturating_add(ceiling.shared.items),
        bytes: own.bytes.saturating_add(ceiling.shared.bytes),
    };
    if !within || used.items > ceiling.max.items || used.bytes > ceiling.max.bytes {
        return Err(format!(
            "stopped: memory ceiling exceeded (the rule's variables hold more than {} bytes or {} items: \
             {MEMORY_CEILING_VALUES} × rules.max_string_size and rules.max_array_size beyond the mail)",
            ceiling.max.bytes, ceiling.max.items
        )
        .into());
    }
    ceiling.reads_left = MEMORY_CHECK_EVERY.max(own.items / 4);
    ceiling.shared_reads_left = if walk_shared {
        ceiling
            .shared
            .items
            .clamp(SHARED_CHECK_EVERY.0, SHARED_CHECK_EVERY.1)
    } else {
        ceiling
            .shared_reads_left
            .saturating_sub(ceiling.reads_left + 1)
    };
    CEILING.with(|c| c.set(Some(ceiling)));
    Ok(())
}

/// How often (in Rhai operations) the wall clock is read: often enough to stop a runaway rule within a few
/// milliseconds of its budget, rarely enough that reading the clock costs nothing measurable.
const CLOCK_CHECK_EVERY: u64 = 4096;

fn build_engine(limits: &Limits, ctx: &RuleContext, patterns: &Arc<helpers::RegexCache>) -> Engine {
    let mut engine = Engine::new();
    engine.set_max_operations(limits.max_operations);
    engine.set_max_call_levels(limits.max_call_depth);
    engine.set_max_string_size(limits.max_string_size);
    engine.set_max_array_size(limits.max_array_size);
    engine.set_max_map_size(limits.max_array_size);
    engine.set_max_expr_depths(128, 64);
    engine.set_max_variables(10_000);
    engine.set_max_functions(10_000);
    engine.set_max_modules(0);
    // No interning of the strings scripts bind to variables: Rhai's interner takes a lock and hashes every such
    // string, and sweeps its whole table when full — a cost on every `let` of every mail, for no saving here (a
    // rule's strings live for one mail). Values and comparisons are the same either way.
    engine.set_max_strings_interned(0);
    engine.set_module_resolver(rhai::module_resolvers::DummyModuleResolver::new());
    engine.disable_symbol("eval");
    engine.set_strict_variables(true);
    engine.on_print(|s| tracing::debug!(target: "taxinbox::rules", "{s}"));
    engine.on_debug(|s, src, pos| tracing::debug!(target: "taxinbox::rules", source = src, line = pos.line(), "{s}"));
    engine.on_progress(|ops| {
        if ops % CLOCK_CHECK_EVERY == 0 {
            if let Some(deadline) = DEADLINE.with(Cell::get) {
                if Instant::now() > deadline {
                    return Some(Dynamic::from("time budget exceeded"));
                }
            }
        }
        None
    });
    // The variable resolver is Rhai's one hook with the scope in hand; it resolves nothing (`None`: read the
    // variable as usual) and only measures. Marked volatile by Rhai, hence the allow.
    #[allow(deprecated)]
    engine.on_var(|_, _, ctx| check_memory(ctx.scope()).map(|()| None));
    object::register(&mut engine);
    helpers::register(&mut engine, ctx, patterns);
    engine
}

impl Ruleset {
    /// Compiles every `*.rhai` in `dir`. Any error refuses the whole set, naming file and line, so the caller keeps
    /// the rules it had.
    pub fn load(dir: &Path, limits: &Limits, ctx: &RuleContext) -> Result<Ruleset, LoadError> {
        let sources = read_sources(dir)?;
        Self::from_sources(dir, &sources, limits, ctx)
    }

    /// Compiles rule files given as `(file name, text)`, in the given order (tests, the playground).
    pub fn from_sources(
        dir: &Path,
        sources: &[(String, String)],
        limits: &Limits,
        ctx: &RuleContext,
    ) -> Result<Ruleset, LoadError> {
        let patterns = Arc::new(helpers::RegexCache::default());
        let engine = build_engine(limits, ctx, &patterns);
        let mut hasher = Sha256::new();
        let mut library = AST::empty();
        let mut files = Vec::new();
        for (name, text) in sources {
            hasher.update(name.as_bytes());
            hasher.update([0]);
            hasher.update(text.as_bytes());
            hasher.update([0]);
            let ast = compile_file(&engine, &patterns, name, text)?;
            if name.starts_with('_') {
                library = library.merge(&ast.clone_functions_only());
            } else {
                files.push(RuleFile {
                    name: name.clone(),
                    ast,
                });
            }
        }
        if files.is_empty() {
            return Err(LoadError::Empty(dir.display().to_string()));
        }
        // Library functions are merged under each rule file, so a rule's own function of the same name wins.
        for f in &mut files {
            f.ast = library.merge(&f.ast);
        }
        Ok(Ruleset {
            engine,
            files,
            version: format!("sha256:{}", hex::encode(hasher.finalize())),
            dir: dir.to_path_buf(),
            time_budget: limits.time_budget,
            ctx: ctx.clone(),
            limits: limits.clone(),
            patterns,
        })
    }

    /// The directory, calendars and demand catalogue this set decides with.
    pub fn ctx(&self) -> &RuleContext {
        &self.ctx
    }

    /// The same compiled rules (same version) on other snapshots of the directory, calendars and demand catalogue:
    /// what a reload of the directory or of `demands.toml`/calendars puts in force without reading the rule files.
    pub fn with_context(&self, ctx: RuleContext) -> Ruleset {
        Ruleset {
            engine: build_engine(&self.limits, &ctx, &self.patterns),
            files: self
                .files
                .iter()
                .map(|f| RuleFile {
                    name: f.name.clone(),
                    ast: f.ast.clone(),
                })
                .collect(),
            version: self.version.clone(),
            dir: self.dir.clone(),
            time_budget: self.time_budget,
            ctx,
            limits: self.limits.clone(),
            patterns: self.patterns.clone(),
        }
    }

    /// `sha256:` of the file names and contents: names the exact rules behind every decision.
    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn file_names(&self) -> impl Iterator<Item = &str> {
        self.files.iter().map(|f| f.name.as_str())
    }

    /// Runs the rules in order on one mail; the first decision wins.
    pub fn classify(&self, mail: &Dynamic) -> Result<Classification, RuleFailure> {
        let mail = read_only(mail);
        let _budget = enter_budget(&self.limits, self.time_budget, &mail);
        self.run(&mail)
    }

    /// Calls one file's `classify` with the read-only mail; a failure names the file and, where known, the line.
    fn call_classify(&self, file: &RuleFile, mail: &Dynamic) -> Result<Dynamic, RuleFailure> {
        let mut scope = rhai::Scope::new();
        let options = rhai::CallFnOptions::new()
            .eval_ast(false)
            .rewind_scope(true);
        self.engine
            .call_fn_with_options::<Dynamic>(
                options,
                &mut scope,
                &file.ast,
                "classify",
                (mail.clone(),),
            )
            .map_err(|e| RuleFailure {
                file: file.name.clone(),
                line: e.position().line(),
                message: runtime_message(&e),
            })
    }

    fn run(&self, mail: &Dynamic) -> Result<Classification, RuleFailure> {
        let mut ran = Vec::new();
        for file in &self.files {
            let value = self.call_classify(file, mail)?;
            let decision = Decision::from_dynamic(value).map_err(|message| RuleFailure {
                file: file.name.clone(),
                line: None,
                message,
            })?;
            if let Some(decision) = decision {
                return Ok(Classification {
                    rule: Some(file.name.clone()),
                    decision: Some(decision),
                    ran,
                });
            }
            ran.push(file.name.clone());
        }
        Ok(Classification {
            rule: None,
            decision: None,
            ran,
        })
    }

    /// Runs every rule file on one mail, each on its own (not first-wins), and returns what each returned. The
    /// linter uses it to see decisions that a file earlier in the order hides on the fixtures.
    pub fn run_each(&self, mail: &Dynamic) -> Vec<(String, Result<Dynamic, RuleFailure>)> {
        let mail = read_only(mail);
        self.files
            .iter()
            .map(|file| {
                let _budget = enter_budget(&self.limits, self.time_budget, &mail);
                let value = self.call_classify(file, &mail);
                (file.name.clone(), value)
            })
            .collect()
    }
}

/// The mail as every rule file gets it: the read-only [`MailObject`] (a map, as tests and callers may pass, is made
/// one), handed from file to file by pointer.
fn read_only(mail: &Dynamic) -> Dynamic {
    if mail.is::<MailObject>() {
        return mail.clone();
    }
    match mail.read_lock::<rhai::Map>() {
        Some(map) => Dynamic::from(MailObject::new(map.clone())),
        None => mail.clone(),
    }
}

fn runtime_message(e: &rhai::EvalAltResult) -> String {
    match e {
        rhai::EvalAltResult::ErrorTerminated(reason, _) => format!("stopped: {reason}"),
        rhai::EvalAltResult::ErrorTooManyOperations(_) => {
            "stopped: operation limit exceeded".into()
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> RuleContext {
        RuleContext::shipped()
    }

    fn ruleset(files: &[(&str, &str)], limits: &Limits) -> Result<Ruleset, LoadError> {
        let sources: Vec<(String, String)> = files
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect();
        Ruleset::from_sources(Path::new("test"), &sources, limits, &ctx())
    }

    fn mail() -> Dynamic {
        let mut m = rhai::Map::new();
        m.insert("subject".into(), "Требование № 1 от 02.03.2026".into());
        m.insert("text".into(), "ИНН 7728997898".into());
        Dynamic::from(m)
    }

    /// A rule that keys `n` entries by variants of the same 1 MiB string (Rhai counts a map's values, not its
    /// keys) — as a map, or as an array of one-entry maps — and hands them to `call`.
    fn key_bomb(n: usize, array: bool, call: &str) -> String {
        let put = if array {
            "let e = #{}; e[k] = \"x\"; bomb.push(e);"
        } else {
            "bomb[k] = [\"x\"];"
        };
        let init = if array { "[]" } else { "#{}" };
        format!(
            "fn classify(mail) {{ let s = \"x\"; while s.len() < 1000000 {{ s += s; }} let bomb = {init}; \
             for i in 0..{n} {{ let k = s; k[i] = 'y'; {put} }} {call}; #{{category: \"notice\"}} }}"
        )
    }

    fn failure(rule: &str) -> String {
        let rs = ruleset(&[("10-bomb.rhai", rule)], &Limits::default()).unwrap();
        rs.classify(&mail()).unwrap_err().message
    }

    #[test]
    fn a_helper_refuses_a_map_or_array_over_one_values_limits_before_copying_it() {
        // Eight megabytes of keys: under the memory ceiling, over what one value may hold.
        for (helper, array, call) in [
            ("earliest_phrase", false, "earliest_phrase(mail.text, bomb)"),
            ("count_phrases", true, "count_phrases(mail.text, bomb)"),
            ("contains_any", true, "contains_any(mail.text, bomb)"),
            ("request_topic", false, "request_topic(bomb)"),
            ("topic_scores", false, "topic_scores(bomb)"),
        ] {
            let message = failure(&key_bomb(8, array, call));
            assert!(
                message.contains(&format!("{helper}: "))
                    && message.contains("rules.max_string_size"),
                "{helper}: {message}"
            );
        }
    }

    #[test]
    fn a_rule_whose_variables_pass_the_memory_ceiling_is_stopped_before_the_clock() {
        let message = failure(&key_bomb(1000, false, "earliest_phrase(mail.text, bomb)"));
        assert!(message.contains("memory ceiling exceeded"), "{message}");
    }

    #[test]
    fn a_rule_within_the_limits_still_passes_maps_and_arrays_to_helpers() {
        let rule = r#"fn classify(mail) {
            let k = earliest_phrase(mail.text, #{inn: ["инн"], other: ["нет"]});
            let n = count_phrases(mail.text, ["инн"]);
            if k == "inn" && n == 1 && contains_any(mail.text, ["ИНН"]) { #{category: "notice"} } else { () }
        }"#;
        let rs = ruleset(&[("10-ok.rhai", rule)], &Limits::default()).unwrap();
        assert_eq!(
            rs.classify(&mail()).unwrap().rule.as_deref(),
            Some("10-ok.rhai")
        );
    }

    /// A mail with the kinds of values the real one has: strings, a map of headers, an array of attachment maps.
    fn mail_with_headers() -> Dynamic {
        let mut m = rhai::Map::new();
        m.insert("subject".into(), "Требование № 1 от 02.03.2026".into());
        let mut headers = rhai::Map::new();
        headers.insert("precedence".into(), "bulk".into());
        m.insert("headers".into(), headers.into());
        let mut attachment = rhai::Map::new();
        attachment.insert("name".into(), "a.xml".into());
        m.insert("attachments".into(), vec![Dynamic::from(attachment)].into());
        m.insert("demand".into(), Dynamic::UNIT);
        Dynamic::from(m)
    }

    #[test]
    fn a_rule_reads_the_mail_and_changes_its_own_copies_never_the_mail_the_next_file_reads() {
        let rs = ruleset(
            &[
                (
                    "10-read.rhai",
                    r#"fn classify(mail) {
                        let h = mail.headers; h["precedence"] = "list";
                        let m = mail.to_map(); m.subject = "changed";
                        let read = mail.attachments.len() == 1 && mail.headers.get("precedence") == "bulk"
                            && "subject" in mail && !("nope" in mail) && mail.nope == () && mail.demand == ()
                            && mail["subject"] == mail.get("subject") && mail.keys().len() == 4
                            && h.precedence == "list" && m.subject == "changed" && type_of(mail) == "mail";
                        if read { () } else { #{category: "ignore", reason: "a read went wrong"} }
                    }"#,
                ),
                (
                    "20-decide.rhai",
                    r#"fn classify(mail) { #{category: "notice", reason: mail.subject + " " + mail.headers.precedence} }"#,
                ),
            ],
            &Limits::default(),
        )
        .unwrap();
        let c = rs.classify(&mail_with_headers()).unwrap();
        assert_eq!(c.rule.as_deref(), Some("20-decide.rhai"));
        assert_eq!(
            c.decision.unwrap().reason,
            "Требование № 1 от 02.03.2026 bulk"
        );
    }

    #[test]
    fn writing_to_the_mail_fails_that_mail_naming_the_field_and_the_line() {
        for (rule, field, line) in [
            (
                "fn classify(mail) {\n  mail.subject = \"x\";\n  ()\n}",
                "subject",
                2,
            ),
            (
                "fn classify(mail) {\n  mail.headers[\"x\"] = 1;\n  ()\n}",
                "headers",
                2,
            ),
            (
                "fn classify(mail) {\n  mail.headers.remove(\"precedence\");\n  ()\n}",
                "headers",
                2,
            ),
            (
                "fn classify(mail) {\n  mail[\"demand\"] = #{};\n  ()\n}",
                "demand",
                2,
            ),
            (
                "fn tidy(m) {\n  m.subject = \"\";\n}\nfn classify(mail) {\n  tidy(mail);\n  ()\n}",
                "subject",
                5,
            ),
        ] {
            let rs = ruleset(&[("10-write.rhai", rule)], &Limits::default()).unwrap();
            let err = rs.classify(&mail_with_headers()).unwrap_err();
            assert!(
                err.message.contains("read only") && err.message.contains(&format!("`{field}`")),
                "{rule}: {}",
                err.message
            );
            assert_eq!(
                (err.file.as_str(), err.line),
                ("10-write.rhai", Some(line)),
                "{rule}"
            );
        }
    }

    #[test]
    fn the_first_rule_that_decides_wins_and_is_named() {
        let rs = ruleset(
            &[
                ("10-pass.rhai", "fn classify(mail) { () }"),
                (
                    "20-notice.rhai",
                    r#"fn classify(mail) { #{category: "notice"} }"#,
                ),
                (
                    "30-never.rhai",
                    r#"fn classify(mail) { #{category: "ignore"} }"#,
                ),
            ],
            &Limits::default(),
        )
        .unwrap();
        let c = rs.classify(&mail()).unwrap();
        assert_eq!(c.rule.as_deref(), Some("20-notice.rhai"));
        assert_eq!(c.decision.unwrap().category, "notice");
        assert!(rs.version().starts_with("sha256:"));
    }

    #[test]
    fn library_functions_are_shared_by_every_rule_file() {
        let rs = ruleset(
            &[
                (
                    "_lib.rhai",
                    r#"fn verdict() { #{category: "notice", reason: "from the library"} }"#,
                ),
                ("10-use.rhai", "fn classify(mail) { verdict() }"),
            ],
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(
            rs.classify(&mail()).unwrap().decision.unwrap().reason,
            "from the library"
        );
    }

    #[test]
    fn an_endless_loop_is_stopped_for_that_mail_within_the_budget() {
        let limits = Limits {
            max_operations: u64::MAX,
            time_budget: Duration::from_millis(200),
            ..Limits::default()
        };
        let rs = ruleset(
            &[("10-loop.rhai", "fn classify(mail) { loop { } }")],
            &limits,
        )
        .unwrap();
        let started = Instant::now();
        let err = rs.classify(&mail()).unwrap_err();
        assert!(err.message.contains("time budget"), "{err}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "stopped late: {:?}",
            started.elapsed()
        );
        // The next mail runs with a fresh budget.
        assert!(rs
            .classify(&mail())
            .unwrap_err()
            .message
            .contains("time budget"));
    }

    #[test]
    fn operation_depth_and_size_limits_fail_the_mail_not_the_service() {
        let limits = Limits {
            max_operations: 10_000,
            ..Limits::default()
        };
        for (name, script) in [
            (
                "ops.rhai",
                "fn classify(mail) { let x = 0; while true { x += 1; } }",
            ),
            (
                "depth.rhai",
                "fn f(n) { f(n + 1) } fn classify(mail) { f(0) }",
            ),
            (
                "string.rhai",
                r#"fn classify(mail) { let s = "x"; loop { s += s; } }"#,
            ),
            (
                "array.rhai",
                "fn classify(mail) { let a = []; loop { a.push(1); a += a; } }",
            ),
            (
                "missing.rhai",
                "fn classify(mail) { no_such_function(mail) }",
            ),
            ("type.rhai", "fn classify(mail) { 42 }"),
            (
                "file.rhai",
                r#"fn classify(mail) { import "/etc/passwd" as p; () }"#,
            ),
        ] {
            let rs = ruleset(&[(name, script)], &limits).unwrap();
            let err = rs.classify(&mail()).unwrap_err();
            assert_eq!(err.file, name, "{err}");
        }
    }

    #[test]
    fn a_syntax_error_names_file_and_line() {
        let err = ruleset(
            &[("10-bad.rhai", "fn classify(mail) {\n  let = 1;\n}")],
            &Limits::default(),
        )
        .unwrap_err();
        assert!(err.to_string().starts_with("10-bad.rhai:2:"), "{err}");
    }

    #[test]
    fn a_literal_pattern_that_does_not_compile_refuses_the_set_naming_file_and_line() {
        for (file, text) in [
            (
                "10-bad.rhai",
                "fn classify(mail) {\n  if regex_match(mail.subject, \"(unclosed\") { return #{category: \"notice\"}; }\n  ()\n}",
            ),
            // In a library, called the method way, and by the other pattern helpers.
            ("_lib.rhai", "fn f(t) {\n  t.regex_capture(\"[z-a]\")\n}"),
            (
                "20-date.rhai",
                "fn classify(mail) {\n  let d = find_date_after(mail.text, \"срок(\");\n  ()\n}",
            ),
        ] {
            let err = ruleset(
                &[(file, text), ("30-ok.rhai", "fn classify(mail) { () }")],
                &Limits::default(),
            )
            .unwrap_err();
            assert!(err.to_string().starts_with(&format!("{file}:2:")), "{err}");
            assert!(err.to_string().contains("bad regular expression"), "{err}");
        }
        // A file's own function of a helper's name takes any text.
        ruleset(
            &[(
                "10-own.rhai",
                "fn regex_match(t, p) { t == p }\nfn classify(mail) { if regex_match(mail.subject, \"(\") { return (); } () }",
            )],
            &Limits::default(),
        )
        .unwrap();
    }

    #[test]
    fn literal_patterns_are_compiled_at_load_and_kept_on_a_new_context() {
        let rs = ruleset(
            &[(
                "10-x.rhai",
                r#"fn classify(mail) {
                    let built = "(?i)" + mail.subject;
                    if regex_match(mail.subject, "^a") || regex_match(mail.text, "^a") { return (); }
                    if mail.text.regex_find_all("b+").len() > 0 { return (); }
                    regex_match(mail.subject, built);
                    ()
                }"#,
            )],
            &Limits::default(),
        )
        .unwrap();
        // The two literal patterns, once each; the built one waits for a mail.
        assert_eq!(rs.patterns.len(), 2);
        let again = rs.with_context(ctx());
        assert!(Arc::ptr_eq(&rs.patterns, &again.patterns));
        again.classify(&mail()).unwrap();
        assert_eq!(again.patterns.len(), 3);
    }

    #[test]
    fn a_rule_file_without_classify_is_refused() {
        let err = ruleset(
            &[("10-x.rhai", "fn other(mail) { () }")],
            &Limits::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("fn classify(mail)"), "{err}");
    }

    #[test]
    fn helpers_compute_working_days_and_identifiers() {
        let rs = ruleset(
            &[(
                "10-h.rhai",
                r#"fn classify(mail) {
                    if !is_valid_inn("7728997898") || is_valid_inn("9999000014") { return #{category: "bad-inn"}; }
                    if find_inns(mail.text) != ["7728997898"] { return #{category: "bad-find"}; }
                    if parse_date("«02» марта 2026 года") != "2026-03-02" { return #{category: "bad-date"}; }
                    if add_working_days("2026-03-03", 16) != "2026-03-26" { return #{category: "bad-wd"}; }
                    if add_working_days("2026-03-19", 1, "16") != "2026-03-23" { return #{category: "bad-region"}; }
                    if next_working_day("2026-03-07") != "2026-03-10" { return #{category: "bad-next"}; }
                    if regex_capture(mail.subject, "№ (\\d+)") != "1" { return #{category: "bad-re"}; }
                    #{category: "ok"}
                }"#,
            )],
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(
            rs.classify(&mail()).unwrap().decision.unwrap().category,
            "ok"
        );
    }
}
