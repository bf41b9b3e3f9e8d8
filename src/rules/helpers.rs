//! The functions rules may call, besides Rhai's own: identifiers, dates and working days, the directory, regular
//! expressions. Every function is pure or reads an in-memory snapshot; none touches files or the network.

use super::RuleContext;
use crate::mail::dates;
use chrono::NaiveDate;
use regex::{Regex, RegexBuilder};
use rhai::{Array, Dynamic, Engine, EvalAltResult, ImmutableString, Map, NativeCallContext};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

type RhaiResult<T> = Result<T, Box<EvalAltResult>>;

fn fail<T>(message: impl Into<String>) -> RhaiResult<T> {
    Err(message.into().into())
}

/// Compiled patterns by source text. Rules use a handful of literal patterns over and over, so the cache stays
/// small; it is capped all the same — by count and by total compiled size — so a rule building patterns from mail
/// text cannot grow it without bound. A ruleset's literal patterns are compiled into it when the ruleset loads
/// ([`RegexCache::compile_literals`]), and a reload of the context keeps it.
#[derive(Debug, Default)]
pub(crate) struct RegexCache {
    // Looked up for every call a rule makes, with patterns of a few hundred bytes: a fast hasher matters here.
    map: RwLock<HashMap<String, Arc<Regex>, ahash::RandomState>>,
    /// What the cached patterns may take once compiled, summed over [`COMPILED_SIZE_STEPS`] (an upper bound).
    bytes: std::sync::atomic::AtomicUsize,
}

/// Largest compiled pattern accepted; the `regex` crate matches in linear time, this bounds compile time and memory.
const REGEX_SIZE_LIMIT: usize = 1 << 20;
const REGEX_CACHE_ENTRIES: usize = 512;
/// Total compiled size the regex cache (and each phrase cache) may hold: the shipped rules' few dozen patterns take
/// well under a MiB; a rule compiling mail text as patterns stops being cached here, not at 512 × 1 MiB.
const CACHE_BYTES: usize = 16 << 20;
/// Compiled-size bounds a pattern is tried against, smallest first: the `regex` crate does not report the size of
/// what it compiled, but refuses to compile past its `size_limit`, so the first bound that compiles is an upper
/// bound of the pattern's size. Literal patterns fit the first and compile once.
const COMPILED_SIZE_STEPS: [usize; 3] = [16 << 10, 256 << 10, REGEX_SIZE_LIMIT];

/// The helpers whose second argument is a regular expression.
const PATTERN_HELPERS: &[&str] = &[
    "regex_match",
    "regex_capture",
    "regex_captures",
    "regex_find_all",
    "regex_replace",
    "find_date_after",
];

impl RegexCache {
    fn get(&self, pattern: &str) -> RhaiResult<Arc<Regex>> {
        self.compiled(pattern).or_else(fail)
    }

    /// How many patterns are cached.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.read().map_or(0, |m| m.len())
    }

    fn compiled(&self, pattern: &str) -> Result<Arc<Regex>, String> {
        if let Ok(map) = self.map.read() {
            if let Some(re) = map.get(pattern) {
                return Ok(re.clone());
            }
        }
        let mut compiled = None;
        for limit in COMPILED_SIZE_STEPS {
            match RegexBuilder::new(pattern).size_limit(limit).build() {
                Ok(re) => {
                    compiled = Some((re, limit));
                    break;
                }
                Err(regex::Error::CompiledTooBig(_)) if limit < REGEX_SIZE_LIMIT => continue,
                Err(e) => return Err(format!("bad regular expression {pattern:?}: {e}")),
            }
        }
        let Some((re, size)) = compiled else {
            return Err(format!("bad regular expression {pattern:?}: too big"));
        };
        let re = Arc::new(re);
        let size = size + pattern.len();
        if let Ok(mut map) = self.map.write() {
            let used = self.bytes.load(std::sync::atomic::Ordering::Relaxed);
            if map.len() < REGEX_CACHE_ENTRIES && used + size <= CACHE_BYTES {
                map.insert(pattern.to_owned(), re.clone());
                self.bytes
                    .store(used + size, std::sync::atomic::Ordering::Relaxed);
            }
        }
        Ok(re)
    }

    /// Compiles every pattern `ast` passes to a pattern helper as a literal (`regex_match(text, "…")`), so that the
    /// first mails after a load do not wait for them; a pattern that does not compile is `(line, column, why)`.
    /// Patterns a rule builds at run time are compiled at their first use, as before.
    pub(crate) fn compile_literals(&self, ast: &rhai::AST) -> Result<(), (usize, usize, String)> {
        use rhai::{ASTNode, Expr};
        // A file may define a function of a helper's name: its calls are to that function, not to a pattern helper.
        let helper = |name: &str| {
            PATTERN_HELPERS.contains(&name) && !ast.iter_functions().any(|f| f.name == name)
        };
        let mut refused = None;
        ast.walk(&mut |path: &[ASTNode]| {
            let pattern = match path.last() {
                Some(ASTNode::Expr(Expr::FnCall(call, pos))) if helper(&call.name) => {
                    call.args.get(1).map(|arg| (arg, *pos))
                }
                // `text.regex_match("…")`: the text is the object, the pattern the first argument.
                Some(ASTNode::Expr(Expr::MethodCall(call, pos))) if helper(&call.name) => {
                    call.args.first().map(|arg| (arg, *pos))
                }
                _ => None,
            };
            if let Some((Expr::StringConstant(pattern, at), pos)) = pattern {
                if let Err(why) = self.compiled(pattern) {
                    let at = if at.is_none() { pos } else { *at };
                    refused = Some((at.line().unwrap_or(1), at.position().unwrap_or(1), why));
                    return false;
                }
            }
            true
        });
        refused.map_or(Ok(()), Err)
    }
}

/// What a script value holds, counted as the sandbox's limits count: items (array elements, map entries) against
/// `rules.max_array_size`, bytes (strings, map keys, blobs, a function pointer's curried arguments) against
/// `rules.max_string_size`. Rhai checks the strings inside a value it builds, but not a map's keys: a map of 1,000
/// keys of a megabyte each is a gigabyte that passes its checks, so the helpers and the memory ceiling measure here.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DataSize {
    pub items: usize,
    pub bytes: usize,
}

impl DataSize {
    fn over(&self, max: DataSize) -> bool {
        self.items > max.items || self.bytes > max.bytes
    }
}

/// How deep values nest before the walk stops counting and calls them too big (Rhai builds no deeper data from a
/// script within its expression depth; a value this deep is hostile).
const MAX_NESTING: usize = 128;

/// Adds what `value` holds to `acc`; `false` as soon as `acc` passes `max` (the walk stops there, so measuring a
/// huge value costs no more than measuring `max`). A shared value locked by the script right now is skipped.
pub(crate) fn measure(value: &Dynamic, acc: &mut DataSize, max: DataSize, depth: usize) -> bool {
    if depth > MAX_NESTING {
        return false;
    }
    if value.is_shared() {
        if value.is_locked() {
            return true;
        }
        return match value.read_lock::<Dynamic>() {
            Some(inner) => measure(&inner, acc, max, depth + 1),
            None => true,
        };
    }
    if let Some(s) = value.read_lock::<ImmutableString>() {
        acc.bytes += s.len();
    } else if let Some(a) = value.read_lock::<Array>() {
        return measure_array(&a, acc, max, depth);
    } else if let Some(m) = value.read_lock::<Map>() {
        return measure_map(&m, acc, max, depth);
    } else if let Some(b) = value.read_lock::<rhai::Blob>() {
        acc.bytes += b.len();
    } else if let Some(f) = value.read_lock::<rhai::FnPtr>() {
        acc.bytes += f.fn_name().len();
        for v in f.iter_curry() {
            if !measure(v, acc, max, depth + 1) {
                return false;
            }
        }
    }
    !acc.over(max)
}

fn measure_array(a: &Array, acc: &mut DataSize, max: DataSize, depth: usize) -> bool {
    acc.items += a.len();
    if acc.over(max) {
        return false;
    }
    a.iter().all(|v| measure(v, acc, max, depth + 1))
}

pub(crate) fn measure_map(m: &Map, acc: &mut DataSize, max: DataSize, depth: usize) -> bool {
    acc.items += m.len();
    if acc.over(max) {
        return false;
    }
    m.iter().all(|(k, v)| {
        acc.bytes += k.len();
        !acc.over(max) && measure(v, acc, max, depth + 1)
    })
}

/// The engine's limits as one value's bound: `rules.max_array_size` items, `rules.max_string_size` bytes.
fn value_limit(ctx: &NativeCallContext) -> DataSize {
    let or_max = |n: usize| if n == 0 { usize::MAX } else { n };
    DataSize {
        items: or_max(ctx.engine().max_array_size()),
        bytes: or_max(ctx.engine().max_string_size()),
    }
}

/// Refuses an array or map argument that holds more than the engine's limits allow one value, before the helper
/// copies or lower-cases any of it.
fn check_arg(
    ctx: &NativeCallContext,
    helper: &str,
    what: &str,
    measured: impl FnOnce(&mut DataSize, DataSize) -> bool,
) -> RhaiResult<()> {
    let max = value_limit(ctx);
    let mut acc = DataSize::default();
    if measured(&mut acc, max) {
        return Ok(());
    }
    fail(format!(
        "{helper}: {what} holds more than {} items or {} bytes (rules.max_array_size, rules.max_string_size)",
        max.items, max.bytes
    ))
}

fn check_map(ctx: &NativeCallContext, helper: &str, what: &str, m: &Map) -> RhaiResult<()> {
    check_arg(ctx, helper, what, |acc, max| measure_map(m, acc, max, 0))
}

fn check_array(ctx: &NativeCallContext, helper: &str, what: &str, a: &Array) -> RhaiResult<()> {
    check_arg(ctx, helper, what, |acc, max| measure_array(a, acc, max, 0))
}

/// Every demand kind's phrases in one automaton.
struct DemandKindFinder {
    automaton: Option<aho_corasick::AhoCorasick>,
    owner: Vec<String>,
}

impl DemandKindFinder {
    fn new(demands: &crate::calendar::DemandCatalog) -> DemandKindFinder {
        let mut patterns = Vec::new();
        let mut owner = Vec::new();
        for kind in demands.kinds() {
            for phrase in kind.recognise.iter().chain(&kind.informal) {
                patterns.push(phrase.to_lowercase());
                owner.push(kind.id.clone());
            }
        }
        let automaton = aho_corasick::AhoCorasick::builder()
            .match_kind(aho_corasick::MatchKind::LeftmostLongest)
            .build(&patterns)
            .map_err(|e| tracing::error!("cannot compile the demand phrases: {e}"))
            .ok();
        DemandKindFinder { automaton, owner }
    }

    fn find(&self, text: &str) -> Option<&str> {
        let m = self.automaton.as_ref()?.find(&text.to_lowercase())?;
        self.owner.get(m.pattern().as_usize()).map(String::as_str)
    }
}

/// A compiled set of phrases: which key each pattern belongs to.
struct PhraseSet {
    automaton: aho_corasick::AhoCorasick,
    keys: Vec<String>,
    owner: Vec<usize>,
}

/// Phrase sets by their content. Rules pass the same lists for every mail, so each is compiled once.
#[derive(Default)]
struct PhraseCache {
    map: RwLock<HashMap<String, Arc<PhraseSet>, ahash::RandomState>>,
    bytes: std::sync::atomic::AtomicUsize,
}

impl PhraseCache {
    fn get(&self, phrases: &Map) -> RhaiResult<Arc<PhraseSet>> {
        let mut keys = Vec::new();
        let mut patterns = Vec::new();
        let mut owner = Vec::new();
        let mut cache_key = String::new();
        for (key, list) in phrases {
            let list = list
                .read_lock::<Array>()
                .ok_or_else(|| format!("phrases for `{key}` must be an array of strings"))?;
            keys.push(key.to_string());
            cache_key.push_str(key);
            cache_key.push('\u{1}');
            for p in list.iter() {
                let p = p
                    .read_lock::<ImmutableString>()
                    .ok_or_else(|| format!("phrases for `{key}` must be strings"))?;
                if p.is_empty() {
                    continue;
                }
                cache_key.push_str(&p);
                cache_key.push('\u{2}');
                patterns.push(p.to_lowercase());
                owner.push(keys.len() - 1);
            }
        }
        if let Ok(map) = self.map.read() {
            if let Some(set) = map.get(&cache_key) {
                return Ok(set.clone());
            }
        }
        let automaton = aho_corasick::AhoCorasick::builder()
            .match_kind(aho_corasick::MatchKind::LeftmostLongest)
            .build(&patterns)
            .map_err(|e| format!("cannot compile the phrases: {e}"))?;
        let set = Arc::new(PhraseSet {
            automaton,
            keys,
            owner,
        });
        if let Ok(mut map) = self.map.write() {
            let size = cache_key.len() + set.automaton.memory_usage();
            if admit(&self.bytes, map.len(), size) {
                map.insert(cache_key, set.clone());
            }
        }
        Ok(set)
    }
}

/// Whether a cache of `entries` entries (holding `used` bytes) takes one more of `size` bytes; counts it if so.
fn admit(used: &std::sync::atomic::AtomicUsize, entries: usize, size: usize) -> bool {
    let now = used.load(std::sync::atomic::Ordering::Relaxed);
    if entries >= REGEX_CACHE_ENTRIES || now + size > CACHE_BYTES {
        return false;
    }
    used.store(now + size, std::sync::atomic::Ordering::Relaxed);
    true
}

/// Phrase lists as rules pass them to `count_phrases`, compiled once each. Found by a hash of the list and then
/// compared phrase by phrase with the list kept beside the table: a rule passes the same list of a hundred phrases
/// for every mail, and finding its table copies none of them.
#[derive(Default)]
struct PhraseTableCache {
    map: RwLock<HashMap<u64, Vec<CachedTable>, ahash::RandomState>>,
    /// Hashes the lists; its own seeds, so that the hash of a list is the same at every call.
    hasher: ahash::RandomState,
    bytes: std::sync::atomic::AtomicUsize,
    entries: std::sync::atomic::AtomicUsize,
}

/// One cached phrase list: the phrases as passed, and their table.
struct CachedTable {
    phrases: Vec<ImmutableString>,
    table: Arc<crate::evidence::phrases::PhraseTable>,
}

impl PhraseTableCache {
    fn get(&self, phrases: &Array) -> RhaiResult<Arc<crate::evidence::phrases::PhraseTable>> {
        // Read in place: a rule's literal list, built again at every call, holds the very strings of the list kept
        // beside its table, so the comparison below mostly finds the same pointer and copies nothing.
        let list: Vec<_> = phrases
            .iter()
            .map(|p| {
                p.read_lock::<ImmutableString>()
                    .ok_or_else(|| Box::<EvalAltResult>::from("phrases must be strings"))
            })
            .collect::<RhaiResult<_>>()?;
        let hash = {
            use std::hash::{BuildHasher as _, Hash as _, Hasher as _};
            let mut h = self.hasher.build_hasher();
            for p in &list {
                p.as_str().hash(&mut h);
            }
            h.finish()
        };
        let same = |kept: &[ImmutableString]| {
            kept.len() == list.len()
                && kept
                    .iter()
                    .zip(&list)
                    .all(|(k, p)| k.ptr_eq(p) || k.as_str() == p.as_str())
        };
        if let Ok(map) = self.map.read() {
            if let Some(t) = map
                .get(&hash)
                .and_then(|tables| tables.iter().find(|t| same(&t.phrases)))
            {
                return Ok(t.table.clone());
            }
        }
        let list: Vec<ImmutableString> = list.iter().map(|p| (**p).clone()).collect();
        let table = crate::evidence::phrases::PhraseTable::new(&list)
            .map(Arc::new)
            .map_err(|(i, e)| {
                format!("phrase {:?}: {e}", list.get(i).map_or("", |p| p.as_str()))
            })?;
        if let Ok(mut map) = self.map.write() {
            // The table holds the phrases again, normalised, with an automaton over them: a few times the list.
            let size = 4 * list.iter().map(|p| p.len() + 1).sum::<usize>();
            let entries = self.entries.load(std::sync::atomic::Ordering::Relaxed);
            if admit(&self.bytes, entries, size) {
                self.entries
                    .store(entries + 1, std::sync::atomic::Ordering::Relaxed);
                map.entry(hash).or_default().push(CachedTable {
                    phrases: list,
                    table: table.clone(),
                });
            }
        }
        Ok(table)
    }
}

thread_local! {
    /// The last text `inn_roles` read on this thread, and what it found: the rules ask about the same search text
    /// from several files (each file's `client_of`) and the answer depends on the text alone. Cleared when a
    /// classification ends.
    static INN_ROLES_MEMO: std::cell::RefCell<Option<(ImmutableString, Array)>> =
        const { std::cell::RefCell::new(None) };
}

/// What [`inn_roles`] finds in `text`, read from the memo when the text is the one it read last.
fn inn_roles_memoized(text: ImmutableString) -> Array {
    let hit = INN_ROLES_MEMO.with(|m| {
        m.borrow()
            .as_ref()
            .filter(|(last, _)| *last == text)
            .map(|(_, roles)| roles.clone())
    });
    if let Some(roles) = hit {
        return roles;
    }
    let roles = inn_roles(&text);
    INN_ROLES_MEMO.with(|m| *m.borrow_mut() = Some((text, roles.clone())));
    roles
}

/// Forgets what the helpers remembered of the last mail on this thread (called when a classification ends).
pub(crate) fn forget_mail() {
    INN_ROLES_MEMO.with(|m| *m.borrow_mut() = None);
}

fn date_arg(s: &str) -> RhaiResult<NaiveDate> {
    s.parse::<NaiveDate>()
        .or_else(|_| dates::parse_date(s).ok_or(()))
        .map_err(|()| format!("{s:?} is not a date").into())
}

fn iso(d: NaiveDate) -> Dynamic {
    Dynamic::from(d.format("%Y-%m-%d").to_string())
}

fn opt_region(region: &str) -> Option<&str> {
    let r = region.trim();
    (!r.is_empty()).then_some(r)
}

/// A client as rules see it.
pub fn client_map(c: &crate::directory::Client) -> Map {
    let mut m = Map::new();
    m.insert("inn".into(), c.inn.as_str().into());
    m.insert("name".into(), c.name.clone().into());
    m.insert(
        "kpp".into(),
        c.kpp
            .as_ref()
            .map(|k| Dynamic::from(k.as_str().to_owned()))
            .unwrap_or(Dynamic::UNIT),
    );
    m.insert("regime".into(), c.regime.as_str().into());
    m.insert(
        "region".into(),
        c.region.clone().map(Dynamic::from).unwrap_or(Dynamic::UNIT),
    );
    m.insert("accountant".into(), c.accountant.clone().into());
    m.insert("has_employees".into(), c.has_employees.into());
    m.insert("vat_payer".into(), c.vat_payer.into());
    m.insert(
        "emails".into(),
        c.emails
            .iter()
            .cloned()
            .map(Dynamic::from)
            .collect::<Array>()
            .into(),
    );
    m
}

/// Registers the helpers on `engine`; the pattern helpers compile into `regexes`.
pub(crate) fn register(engine: &mut Engine, ctx: &RuleContext, regexes: &Arc<RegexCache>) {
    engine.register_fn("is_valid_inn", |s: &str| crate::ids::is_valid_inn(s.trim()));
    engine.register_fn("find_inns", |text: &str| -> Array {
        let mut seen = Vec::<String>::new();
        for (_, s) in digit_runs(text) {
            if (s.len() == 10 || s.len() == 12)
                && crate::ids::is_valid_inn(s)
                && !seen.iter().any(|x| x == s)
            {
                seen.push(s.to_owned());
            }
        }
        seen.into_iter().map(Dynamic::from).collect()
    });
    engine.register_fn("parse_date", |s: &str| -> Dynamic {
        dates::parse_date(s).map(iso).unwrap_or(Dynamic::UNIT)
    });
    engine.register_fn("find_dates", |text: &str| -> Array {
        dates::find_dates(text)
            .into_iter()
            .map(|(_, d)| iso(d))
            .collect()
    });
    // Every date with its byte offset: #{at, date}; lets a rule pick the date nearest a label.
    engine.register_fn("find_dates_at", |text: &str| -> Array {
        dates::find_dates(text)
            .into_iter()
            .map(|(at, d)| {
                let mut m = Map::new();
                m.insert(
                    "at".into(),
                    Dynamic::from(i64::try_from(at).unwrap_or(i64::MAX)),
                );
                m.insert("date".into(), iso(d));
                Dynamic::from(m)
            })
            .collect()
    });

    let cal = ctx.calendar.clone();
    engine.register_fn(
        "add_working_days",
        move |date: &str, n: i64| -> RhaiResult<Dynamic> { add_working_days(&cal, date, n, None) },
    );
    let cal = ctx.calendar.clone();
    engine.register_fn(
        "add_working_days",
        move |date: &str, n: i64, region: &str| -> RhaiResult<Dynamic> {
            add_working_days(&cal, date, n, opt_region(region))
        },
    );
    let cal = ctx.calendar.clone();
    engine.register_fn(
        "next_working_day",
        move |date: &str| -> RhaiResult<Dynamic> { add_working_days(&cal, date, 0, None) },
    );
    let cal = ctx.calendar.clone();
    engine.register_fn(
        "next_working_day",
        move |date: &str, region: &str| -> RhaiResult<Dynamic> {
            add_working_days(&cal, date, 0, opt_region(region))
        },
    );
    let cal = ctx.calendar.clone();
    engine.register_fn("is_working_day", move |date: &str| -> RhaiResult<bool> {
        cal.is_working_day(date_arg(date)?, None)
            .map_err(|e| e.to_string().into())
    });

    let dir = ctx.directory.clone();
    engine.register_fn("client_by_inn", move |inn: &str| -> Dynamic {
        dir.client(inn.trim())
            .map(|c| Dynamic::from(client_map(c)))
            .unwrap_or(Dynamic::UNIT)
    });
    let dir = ctx.directory.clone();
    engine.register_fn("client_by_email", move |address: &str| -> Dynamic {
        dir.client_by_email(address.trim())
            .map(|c| Dynamic::from(client_map(c)))
            .unwrap_or(Dynamic::UNIT)
    });
    let dir = ctx.directory.clone();
    engine.register_fn("clients_by_email", move |address: &str| -> Array {
        dir.clients_by_email(address.trim())
            .into_iter()
            .map(|c| Dynamic::from(client_map(c)))
            .collect()
    });
    let dir = ctx.directory.clone();
    engine.register_fn("is_staff", move |address: &str| -> bool {
        dir.accountant(address.trim()).is_some()
    });
    // The firm's own mail: a person of the directory, or any address at a domain the firm's people write from.
    let firm_domains: Vec<String> = ctx
        .directory
        .accountants()
        .filter_map(|a| {
            a.email
                .rsplit_once('@')
                .map(|(_, d)| format!("@{}", d.to_lowercase()))
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let dir = ctx.directory.clone();
    engine.register_fn("is_firm_address", move |address: &str| -> bool {
        let address = address.trim().to_lowercase();
        dir.accountant(&address).is_some()
            || firm_domains.iter().any(|d| address.ends_with(d.as_str()))
    });

    let demands = ctx.demands.clone();
    engine.register_fn("demand_phrases", move |kind: &str| -> Array {
        demands
            .kind(kind)
            .map(|k| {
                k.recognise
                    .iter()
                    .chain(&k.informal)
                    .cloned()
                    .map(Dynamic::from)
                    .collect()
            })
            .unwrap_or_default()
    });
    // The demand kind whose phrase (demands.toml `recognise` and `informal`) comes first in the text, or ():
    // a document's own title precedes the grounds it cites (a freeze decision cites an unpaid demand).
    // The phrases are compiled once, when the rules are loaded.
    let kinds = DemandKindFinder::new(&ctx.demands);
    engine.register_fn("demand_kind", move |text: &str| -> Dynamic {
        kinds
            .find(text)
            .map(|k| Dynamic::from(k.to_owned()))
            .unwrap_or(Dynamic::UNIT)
    });
    let demands = ctx.demands.clone();
    engine.register_fn("demand_kinds", move || -> Array {
        demands
            .kinds()
            .map(|k| Dynamic::from(k.id.clone()))
            .collect()
    });
    // Of a map `key => [phrases]`, the key whose phrase occurs first in the text (case-insensitive), or ().
    // On a tie (two phrases starting at the same place) the longer phrase wins.
    let phrase_sets = Arc::new(PhraseCache::default());
    engine.register_fn(
        "earliest_phrase",
        move |ctx: NativeCallContext, text: &str, phrases: Map| -> RhaiResult<Dynamic> {
            check_map(&ctx, "earliest_phrase", "the phrase map", &phrases)?;
            let set = phrase_sets.get(&phrases)?;
            let hay = text.to_lowercase();
            Ok(set
                .automaton
                .find(&hay)
                .map(|m| Dynamic::from(set.keys[set.owner[m.pattern().as_usize()]].clone()))
                .unwrap_or(Dynamic::UNIT))
        },
    );
    // How many of `phrases` (the vocabulary files' syntax: `*` ends a word, whole words, case and ё/е ignored) occur
    // in the text, each counted once. Each list is compiled once and cached.
    let phrase_tables = Arc::new(PhraseTableCache::default());
    engine.register_fn(
        "count_phrases",
        move |ctx: NativeCallContext, text: &str, phrases: Array| -> RhaiResult<i64> {
            check_array(&ctx, "count_phrases", "the phrase list", &phrases)?;
            let table = phrase_tables.get(&phrases)?;
            let found = table.find_all(&crate::evidence::phrases::normalize(text));
            let distinct: std::collections::BTreeSet<usize> =
                found.iter().map(|m| m.phrase).collect();
            Ok(i64::try_from(distinct.len()).unwrap_or(i64::MAX))
        },
    );
    engine.register_fn(
        "contains_any",
        |ctx: NativeCallContext, text: &str, needles: Array| -> RhaiResult<bool> {
            check_array(&ctx, "contains_any", "the list of needles", &needles)?;
            let hay = text.to_lowercase();
            Ok(needles.iter().any(|n| {
                n.read_lock::<ImmutableString>()
                    .is_some_and(|n| !n.is_empty() && hay.contains(&n.to_lowercase()))
            }))
        },
    );

    let re = regexes.clone();
    engine.register_fn(
        "regex_match",
        move |text: &str, pattern: &str| -> RhaiResult<bool> {
            Ok(re.get(pattern)?.is_match(text))
        },
    );
    let re = regexes.clone();
    engine.register_fn(
        "regex_capture",
        move |text: &str, pattern: &str| -> RhaiResult<Dynamic> {
            let re = re.get(pattern)?;
            Ok(match re.captures(text) {
                Some(c) => c
                    .get(1)
                    .or_else(|| c.get(0))
                    .map(|m| Dynamic::from(m.as_str().to_owned()))
                    .unwrap_or(Dynamic::UNIT),
                None => Dynamic::UNIT,
            })
        },
    );
    // All groups of the first match (index 0 = whole match; a group that did not take part is ()).
    let re = regexes.clone();
    engine.register_fn(
        "regex_captures",
        move |text: &str, pattern: &str| -> RhaiResult<Dynamic> {
            let re = re.get(pattern)?;
            Ok(match re.captures(text) {
                Some(c) => Dynamic::from(
                    c.iter()
                        .map(|m| {
                            m.map(|m| Dynamic::from(m.as_str().to_owned()))
                                .unwrap_or(Dynamic::UNIT)
                        })
                        .collect::<Array>(),
                ),
                None => Dynamic::UNIT,
            })
        },
    );
    // Every match (group 1 when the pattern has one, else the whole match), in order; capped by the array limit.
    let re = regexes.clone();
    engine.register_fn(
        "regex_find_all",
        move |text: &str, pattern: &str| -> RhaiResult<Array> {
            let re = re.get(pattern)?;
            Ok(re
                .captures_iter(text)
                .take(10_000)
                .filter_map(|c| {
                    c.get(1)
                        .or_else(|| c.get(0))
                        .map(|m| Dynamic::from(m.as_str().to_owned()))
                })
                .collect())
        },
    );
    // The text with quote markers ("> ") dropped and every run of white space made one space: labels and values
    // that a mail client wrapped or quoted read as one line again.
    engine.register_fn("squash", |text: &str| -> String { squash(text) });
    let re = regexes.clone();
    // Built match by match against the engine's string limit: the limit is otherwise checked only on the returned
    // value, and a replacement repeated for every match of a megabyte text would need terabytes before that.
    engine.register_fn(
        "regex_replace",
        move |ctx: NativeCallContext,
              text: &str,
              pattern: &str,
              with: &str|
              -> RhaiResult<String> {
            let re = re.get(pattern)?;
            let limit = match ctx.engine().max_string_size() {
                0 => usize::MAX,
                n => n,
            };
            let mut out = String::new();
            let mut copied = 0;
            for caps in re.captures_iter(text) {
                let Some(m) = caps.get(0) else { continue };
                out.push_str(&text[copied..m.start()]);
                caps.expand(with, &mut out);
                copied = m.end();
                if out.len() > limit {
                    return fail(format!(
                        "regex_replace: the result is longer than the limit of {limit} bytes (rules.max_string_size)"
                    ));
                }
            }
            out.push_str(&text[copied..]);
            if out.len() > limit {
                return fail(format!(
                    "regex_replace: the result is longer than the limit of {limit} bytes (rules.max_string_size)"
                ));
            }
            Ok(out)
        },
    );
    // The first date written within a short distance after a match of `label` (a regular expression), or ().
    let re = regexes.clone();
    engine.register_fn(
        "find_date_after",
        move |text: &str, label: &str| -> RhaiResult<Dynamic> {
            let re = re.get(label)?;
            for m in re.find_iter(text) {
                let tail = &text[m.end()..];
                // Both distances count characters, not bytes: Cyrillic filler ("до «", "— не позднее") is two
                // bytes a letter and would otherwise hide a date that Latin filler of the same length does not.
                let window_end = tail
                    .char_indices()
                    .nth(DATE_AFTER_WINDOW)
                    .map_or(tail.len(), |(i, _)| i);
                let window = &tail[..window_end];
                if let Some((at, d)) = dates::find_dates(window).into_iter().next() {
                    if window[..at].chars().count() <= DATE_AFTER_MAX_GAP {
                        return Ok(iso(d));
                    }
                }
            }
            Ok(Dynamic::UNIT)
        },
    );
    // Every valid INN in the text with the role its label gives it: "taxpayer", "office" (the tax authority's own
    // INN) or "counterparty" (the company a 93.1 demand asks about). FORMAT.md convention 5.
    engine.register_fn("inn_roles", |text: ImmutableString| -> Array {
        inn_roles_memoized(text)
    });
    // Client-request topics by weighted phrases (`topics.toml`): subject, own words, what a forward passes on; never
    // a reply's quoted history. The mail comes by reference (`&mut`, read only): taken by value, Rhai would copy the
    // whole shared map at every call.
    let vocabulary = ctx.vocabulary.clone();
    engine.register_fn(
        "request_topic",
        move |ctx: NativeCallContext, mail: &mut Map| -> RhaiResult<String> {
            let (subject, own, forwarded, is_reply) = topic_texts(&ctx, "request_topic", mail)?;
            Ok(vocabulary.topics.best(&subject, &own, &forwarded, is_reply))
        },
    );
    let vocabulary = ctx.vocabulary.clone();
    engine.register_fn(
        "request_topic",
        move |ctx: NativeCallContext, mail: &mut super::MailObject| -> RhaiResult<String> {
            let (subject, own, forwarded, is_reply) =
                topic_texts(&ctx, "request_topic", mail.fields())?;
            Ok(vocabulary.topics.best(&subject, &own, &forwarded, is_reply))
        },
    );
    let vocabulary = ctx.vocabulary.clone();
    engine.register_fn(
        "topic_scores",
        move |ctx: NativeCallContext, mail: &mut Map| -> RhaiResult<Array> {
            let texts = topic_texts(&ctx, "topic_scores", mail)?;
            Ok(topic_scores(&vocabulary, texts))
        },
    );
    let vocabulary = ctx.vocabulary.clone();
    engine.register_fn(
        "topic_scores",
        move |ctx: NativeCallContext, mail: &mut super::MailObject| -> RhaiResult<Array> {
            let texts = topic_texts(&ctx, "topic_scores", mail.fields())?;
            Ok(topic_scores(&vocabulary, texts))
        },
    );
    let vocabulary = ctx.vocabulary.clone();
    engine.register_fn("topic_role", move |topic: &str| -> Dynamic {
        vocabulary
            .topics
            .role(topic)
            .map(|r| Dynamic::from(r.to_owned()))
            .unwrap_or(Dynamic::UNIT)
    });
    engine.register_fn("fail", |message: &str| -> RhaiResult<Dynamic> {
        fail(message)
    });
}

/// Every topic's score with the phrases that made it, as `topic_scores` returns them.
fn topic_scores(
    vocabulary: &crate::evidence::Vocabulary,
    (subject, own, forwarded, is_reply): (String, String, String, bool),
) -> Array {
    vocabulary
        .topics
        .scores(&subject, &own, &forwarded, is_reply)
        .into_iter()
        .map(|s| {
            let mut m = Map::new();
            m.insert("topic".into(), s.topic.into());
            m.insert("score".into(), Dynamic::from_float(s.score));
            m.insert(
                "phrases".into(),
                s.phrases
                    .into_iter()
                    .map(Dynamic::from)
                    .collect::<Array>()
                    .into(),
            );
            Dynamic::from(m)
        })
        .collect()
}

/// A string field of the `mail` map ("" when absent or not a string).
fn field(mail: &Map, key: &str) -> String {
    mail.get(key)
        .and_then(|v| v.clone().into_string().ok())
        .unwrap_or_default()
}

/// What a request's topic is read from: the subject without `Re:`/`Fwd:`, the own words, what a forward passes on.
/// The map is the `mail` object, bigger than one value's limit with its attachments, so its entry count, its keys
/// and the fields read are checked against the engine's limits, before any is copied.
fn topic_texts(
    ctx: &NativeCallContext,
    helper: &str,
    mail: &Map,
) -> RhaiResult<(String, String, String, bool)> {
    let max = value_limit(ctx);
    let mut acc = DataSize {
        items: mail.len(),
        bytes: 0,
    };
    if !acc.over(max) {
        acc.bytes = mail.keys().map(|k| k.len()).sum();
    }
    for key in ["subject", "own_text", "forwarded_text"] {
        if let Some(v) = mail.get(key) {
            if !measure(v, &mut acc, max, 0) {
                break;
            }
        }
    }
    if acc.over(max) {
        return fail(format!(
            "{helper}: the mail map holds more than {} entries, or its subject and texts more than {} bytes \
             (rules.max_array_size, rules.max_string_size)",
            max.items, max.bytes
        ));
    }
    Ok((
        crate::evidence::document::strip_prefixes(&field(mail, "subject")),
        field(mail, "own_text"),
        field(mail, "forwarded_text"),
        mail.get("is_reply")
            .and_then(|v| v.as_bool().ok())
            .unwrap_or(false),
    ))
}

fn add_working_days(
    cal: &crate::calendar::ProductionCalendar,
    date: &str,
    n: i64,
    region: Option<&str>,
) -> RhaiResult<Dynamic> {
    let n = u32::try_from(n).map_err(|_| format!("working days must be 0 or more, not {n}"))?;
    let d = cal
        .add_working_days(date_arg(date)?, n, region)
        .map_err(|e| e.to_string())?;
    Ok(iso(d))
}

/// Every run of ASCII digits in `text` with its byte offset, in order (what `[0-9]+` finds): a scan of the bytes,
/// run over every mail's whole search text, where a regular expression would start a search per run.
fn digit_runs(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let bytes = text.as_bytes();
    let mut at = 0;
    std::iter::from_fn(move || {
        let start = at + bytes.get(at..)?.iter().position(u8::is_ascii_digit)?;
        let len = bytes[start..]
            .iter()
            .position(|b| !b.is_ascii_digit())
            .unwrap_or(bytes.len() - start);
        at = start + len;
        // ASCII digits start and end the run: both are character boundaries.
        text.get(start..at).map(|run| (start, run))
    })
}

/// How far after a label a date may start, in characters (filler such as ": до «").
const DATE_AFTER_MAX_GAP: usize = 24;
/// How much text after a label is searched for its date, in characters.
const DATE_AFTER_WINDOW: usize = 80;

pub fn squash(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let line = line.trim_start_matches(|c: char| c == '>' || c.is_whitespace());
        for word in line.split_whitespace() {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(word);
        }
    }
    out
}

/// Whether [`squash`] would return `text` unchanged: one line of words each separated by one space, not starting
/// with a quote marker.
fn is_squashed(text: &str) -> bool {
    if text.starts_with(|c: char| c == '>' || c.is_whitespace())
        || text.ends_with(char::is_whitespace)
    {
        return false;
    }
    // Byte by byte: white space outside ASCII (U+0085, U+00A0, U+1680, U+2000…U+3000) starts with one of four
    // lead bytes, decoded only there; Cyrillic and Latin letters pass at one comparison a byte.
    let mut after_space = false;
    for (i, &b) in text.as_bytes().iter().enumerate() {
        let space = match b {
            b' ' => {
                if after_space {
                    return false;
                }
                after_space = true;
                continue;
            }
            0xC2 | 0xE1 | 0xE2 | 0xE3 => text
                .get(i..)
                .and_then(|rest| rest.chars().next())
                .is_some_and(char::is_whitespace),
            b => b.is_ascii_whitespace() || b == 0x0B,
        };
        if space {
            return false;
        }
        after_space = false;
    }
    true
}

/// Labels that say whose an INN is, matched against the text just before it (lower-cased); the nearest decides.
static OFFICE_LABEL: std::sync::LazyLock<Regex> = std::sync::LazyLock::new(|| {
    Regex::new(
        r"ифнс|инспекц|налоговый орган|налогового органа|отправитель|от кого|\(\d{4}\)|код \d{4}",
    )
    .expect("a literal pattern compiles")
});
static COUNTERPARTY_LABEL: std::sync::LazyLock<Regex> = std::sync::LazyLock::new(|| {
    Regex::new(r"проверяемого налогоплательщика|контрагент\w*|в отношении")
        .expect("a literal pattern compiles")
});
/// Labels that name the addressee outright.
static TAXPAYER_LABEL: std::sync::LazyLock<Regex> = std::sync::LazyLock::new(|| {
    Regex::new(r"налогоплательщик\w*|получател\w*|кому|адресат|организаци\w*|клиент\w*\s*:|инн ?/ ?кпп|для ")
        .expect("a literal pattern compiles")
});
/// A company's legal form: names a company (so not the office), but says nothing against a counterparty label.
static ORG_FORM: std::sync::LazyLock<Regex> = std::sync::LazyLock::new(|| {
    Regex::new(r"ооо|(?:^|[^\p{L}])(?:ип|ао)(?:[^\p{L}]|$)|зао|пао")
        .expect("a literal pattern compiles")
});
/// How much text before an INN is read for its label (bytes).
const ROLE_CONTEXT: usize = 200;

/// The role of an INN from the labels before it: a counterparty label wins unless an addressee label follows it;
/// the office's label wins unless an addressee label or a company's legal form follows it; else the taxpayer.
fn role_of(before: &str) -> &'static str {
    let counterparty: Vec<(usize, usize)> = COUNTERPARTY_LABEL
        .find_iter(before)
        .map(|m| (m.start(), m.end()))
        .collect();
    let c = counterparty.last().map(|m| m.1);
    let t = TAXPAYER_LABEL
        .find_iter(before)
        .filter(|m| {
            !counterparty
                .iter()
                .any(|(s, e)| m.start() >= *s && m.start() < *e)
        })
        .last()
        .map(|m| m.end());
    let o = OFFICE_LABEL.find_iter(before).last().map(|m| m.end());
    let g = ORG_FORM.find_iter(before).last().map(|m| m.end());
    if c.is_some() && c > t {
        "counterparty"
    } else if o.is_some() && o > t.max(g) {
        "office"
    } else {
        "taxpayer"
    }
}

fn inn_roles(text: &str) -> Array {
    // The rules pass the search text, squashed already: read as it is rather than copied.
    let flat = if is_squashed(text) {
        std::borrow::Cow::Borrowed(text)
    } else {
        std::borrow::Cow::Owned(squash(text))
    };
    let mut out = Array::new();
    for (start, s) in digit_runs(&flat) {
        if !((s.len() == 10 || s.len() == 12) && crate::ids::is_valid_inn(s)) {
            continue;
        }
        let mut from = start.saturating_sub(ROLE_CONTEXT);
        while !flat.is_char_boundary(from) {
            from += 1;
        }
        let before = flat[from..start].to_lowercase();
        let role = role_of(&before);
        let mut item = Map::new();
        item.insert("inn".into(), Dynamic::from(s.to_owned()));
        item.insert("role".into(), Dynamic::from(role));
        out.push(Dynamic::from(item));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::unwrap_used)]
    fn digit_runs_are_what_the_pattern_finds() {
        let re = Regex::new("[0-9]+").unwrap();
        for text in [
            "",
            "7",
            "ИНН 7728997898, КПП 772801001; 02.03.2026",
            "abc",
            "12ab34",
            "№١٢٣ 45",
            "x9",
        ] {
            let by_pattern: Vec<(usize, &str)> = re
                .find_iter(text)
                .map(|m| (m.start(), m.as_str()))
                .collect();
            assert_eq!(digit_runs(text).collect::<Vec<_>>(), by_pattern, "{text:?}");
        }
    }

    #[test]
    fn a_squashed_text_is_known_as_one() {
        for text in [
            "",
            "a",
            "ИНН 7728997898 от 02.03.2026",
            " a",
            "a ",
            "a  b",
            "a\nb",
            "a\tb",
            "> a",
            ">a b",
            "a > b",
            "a\u{a0}b",
            "a\r\nb",
            "\n",
            "a\u{b}b",
            "a\u{85}b",
            "a\u{2028}b",
            "a\u{3000}b",
            "«а» — №\u{2011}1",
        ] {
            assert_eq!(is_squashed(text), squash(text) == text, "{text:?}");
        }
    }

    #[test]
    #[allow(clippy::unwrap_used)]
    fn the_regex_cache_stops_caching_at_its_total_compiled_size() {
        let cache = RegexCache::default();
        // Alternations of a thousand words: each past the smallest size step, so counted at 256 KiB or more.
        let words: String = (0..1000).map(|w| format!("|w{w}x")).collect();
        for i in 0..200 {
            let re = cache.get(&format!("(v{i}{words})")).unwrap();
            assert!(re.is_match(&format!("v{i}")));
        }
        let cached = cache.map.read().unwrap().len();
        let bytes = cache.bytes.load(std::sync::atomic::Ordering::Relaxed);
        assert!(bytes <= CACHE_BYTES, "{bytes}");
        assert!((1..200).contains(&cached), "{cached} patterns cached");
        // A literal pattern still compiles once and is cached while there is room.
        let small = RegexCache::default();
        small.get("ИНН").unwrap();
        assert_eq!(small.map.read().unwrap().len(), 1);
    }
}
