//! The layers of `src/` run one way: the edges between top-level modules, taken from the `crate::` paths of every
//! source file (tests beside the code included, comments left out), form no cycle.
//!
//! `scripts/module-graph` prints the graph; this test fails naming the modules of any cycle and the edges that
//! close it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module → module → number of `crate::` paths.
type Graph = BTreeMap<String, BTreeMap<String, usize>>;

#[test]
fn top_level_modules_form_no_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = module_graph(&src);
    print!("{}", render(&graph));
    let cycles: Vec<_> = strongly_connected(&graph)
        .into_iter()
        .filter(|c| c.len() > 1)
        .collect();
    if !cycles.is_empty() {
        let mut message = String::new();
        for cycle in &cycles {
            message.push_str(&format!(
                "cycle between {}:\n",
                cycle.iter().cloned().collect::<Vec<_>>().join(", ")
            ));
            for from in cycle {
                for (to, n) in &graph[from] {
                    if cycle.contains(to) {
                        message.push_str(&format!("  {from} -> {to} ({n})\n"));
                    }
                }
            }
        }
        panic!("the top-level modules form a cycle:\n{message}");
    }
}

#[test]
fn the_reader_sees_grouped_and_nested_paths_but_not_comments() {
    let text = "use crate::{mail::{self, Facts}, store};\n\
                // crate::web in a comment\n\
                /// links to [`crate::http`]\n\
                /* crate::cli\n in a block */\n\
                fn f() { crate::ids::Inn::parse(\"x\"); let u = \"https://x\"; }\n";
    let targets = crate_paths(text);
    assert_eq!(
        targets,
        BTreeSet::from([
            "http".to_owned(),
            "ids".to_owned(),
            "mail".to_owned(),
            "store".to_owned()
        ])
    );
}

fn module_graph(src: &Path) -> Graph {
    let mut graph = Graph::new();
    for file in rust_files(src) {
        let relative = file.strip_prefix(src).expect("below src");
        let first = relative
            .components()
            .next()
            .expect("a path below src")
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_owned();
        if first == "lib" || first == "main" {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("read a source file");
        let edges = graph.entry(first.clone()).or_default();
        for target in crate_paths(&text) {
            if target != first {
                *edges.entry(target).or_default() += 1;
            }
        }
    }
    let targets: Vec<String> = graph.values().flat_map(|e| e.keys().cloned()).collect();
    for t in targets {
        graph.entry(t).or_default();
    }
    graph
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("read a source folder") {
            let path = entry.expect("a folder entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The top-level modules a file names after `crate::`, grouped imports (`crate::{a, b::c}`) and doc links included.
fn crate_paths(text: &str) -> BTreeSet<String> {
    // Doc comments count: an intra-doc link ([`crate::http`]) is a reference rustdoc resolves. Plain comments don't.
    let docs: String = text
        .lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with("///") || l.starts_with("//!"))
        .map(|l| format!("{}\n", &l[3..]))
        .collect();
    let code = without_comments(text) + &docs;
    let mut found = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // `$crate::`, `my_crate::`
        }
        if let Some(group) = rest.strip_prefix('{') {
            found.extend(group_heads(group));
        } else if let Some(name) = identifier(rest) {
            found.insert(name.to_owned());
        }
    }
    found.remove("self");
    found
}

/// The first identifier of each item of a `{…}` group at its own depth.
fn group_heads(group: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let mut depth = 0usize;
    let mut item_start = true;
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => item_start = true,
            c if item_start && depth == 0 && !c.is_whitespace() => {
                item_start = false;
                if let Some(name) = identifier(&group[i..]) {
                    heads.push(name.to_owned());
                }
            }
            _ => {}
        }
    }
    heads
}

fn identifier(text: &str) -> Option<&str> {
    let end = text
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    (end > 0).then(|| &text[..end])
}

/// The text with `//…` and `/*…*/` comments blanked; string literals are kept whole, so `"https://"` is no comment.
fn without_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match c {
                '\\' => {
                    if let Some(n) = chars.next() {
                        out.push(n);
                    }
                }
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match (c, chars.peek()) {
            ('"', _) => {
                in_string = true;
                out.push(c);
            }
            ('\'', _) => {
                // A char literal such as '"' must not open a string; a lifetime is passed over as it is.
                out.push(c);
                let mut look = chars.clone();
                if let (Some(a), Some('\'')) = (look.next(), look.next()) {
                    out.push(a);
                    out.push('\'');
                    chars.next();
                    chars.next();
                } else if let (Some('\\'), Some(b)) = (chars.clone().next(), chars.clone().nth(1)) {
                    out.push('\\');
                    out.push(b);
                    chars.next();
                    chars.next();
                }
            }
            ('/', Some('/')) => {
                for n in chars.by_ref() {
                    if n == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            ('/', Some('*')) => {
                chars.next();
                let mut depth = 1;
                while depth > 0 {
                    match (chars.next(), chars.peek()) {
                        (Some('*'), Some('/')) => {
                            chars.next();
                            depth -= 1;
                        }
                        (Some('/'), Some('*')) => {
                            chars.next();
                            depth += 1;
                        }
                        (Some('\n'), _) => out.push('\n'),
                        (None, _) => break,
                        _ => {}
                    }
                }
            }
            _ => out.push(c),
        }
    }
    out
}

/// Tarjan's strongly connected components, each sorted.
fn strongly_connected(graph: &Graph) -> Vec<BTreeSet<String>> {
    struct State<'g> {
        graph: &'g Graph,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        components: Vec<BTreeSet<String>>,
    }
    fn visit<'g>(s: &mut State<'g>, v: &'g str) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.graph[v].keys() {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v, low);
            } else if s.on_stack.contains(w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = BTreeSet::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.insert(w.to_owned());
                if w == v {
                    break;
                }
            }
            s.components.push(component);
        }
    }
    let mut state = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        components: Vec::new(),
    };
    for v in graph.keys() {
        if !state.index.contains_key(v.as_str()) {
            visit(&mut state, v);
        }
    }
    state.components
}

/// One line per module, its layer first: a module's layer is one above the highest layer it uses (cycles aside).
fn render(graph: &Graph) -> String {
    let mut layer: BTreeMap<&str, usize> = BTreeMap::new();
    // Bounded: a module's layer is below the number of modules; a cycle stops growing there.
    for _ in 0..graph.len() {
        for (from, edges) in graph {
            let l = edges
                .keys()
                .filter(|to| *to != from)
                .map(|to| layer.get(to.as_str()).map_or(1, |l| l + 1))
                .max()
                .unwrap_or(0)
                .min(graph.len());
            layer.insert(from, l);
        }
    }
    let mut rows: Vec<_> = graph.iter().collect();
    rows.sort_by_key(|(m, _)| (std::cmp::Reverse(layer[m.as_str()]), m.as_str()));
    let mut out = String::new();
    let edges: usize = graph.values().map(BTreeMap::len).sum();
    out.push_str(&format!(
        "{} top-level modules, {edges} edges (layer: module -> what it uses, in files)\n",
        graph.len()
    ));
    for (module, uses) in rows {
        let list: Vec<_> = uses.iter().map(|(to, n)| format!("{to}({n})")).collect();
        out.push_str(&format!(
            "{:>2}: {module:<17} -> {}\n",
            layer[module.as_str()],
            list.join(", ")
        ));
    }
    out
}
