//! The layers of `src/`, checked from the source: a lower layer never imports a higher one.
//!
//! From the bottom: `clock`, `error`, `domain`, `store` and `config` know nothing of the rest;
//! `records` (the tables, the only SQL) uses only those; `mail` (the outbox and its rendering)
//! uses those and `records`; `ops` (the use cases) uses all of these. Above them `nodes`,
//! `templates`, `slave_link`, `agent`, `gateway`, `jobs`; `web` and `cli` are used by no one
//! but the binaries, and `jobs` (the loop and its kinds) only by `web`, `cli` and `embedded`:
//! whoever queues a job writes its row through `records::jobs`. A debt, when one must be
//! taken, is listed by name: the test fails on any import not allowed here, and also when a
//! listed debt is gone (so the list stays true and only shrinks).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The layers from the bottom up: a module may use its own layer and those below it.
const LAYERS: &[&[&str]] = &[
    &["clock", "error", "domain", "store", "config"],
    &["records"],
    &["mail"],
    &["ops"],
];
/// Used by nobody but themselves, `lib.rs` and the binaries.
const TOP: &[&str] = &["web", "cli"];
/// Who may use `jobs` (besides jobs itself).
const JOB_USERS: &[&str] = &["web", "cli", "embedded"];

/// Imports that break the rules, as `file -> module`, each to be paid. None left.
const DEBTS: &[(&str, &str)] = &[];

/// Every `.rs` file under `dir` (also used by the records checks).
pub fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a file belongs to (`src/web/x.rs` -> `web`, `src/clock.rs` -> `clock`).
fn module_of(rel: &str) -> String {
    let rest = rel.strip_prefix("src/").unwrap();
    let first = rest.split('/').next().unwrap();
    first.trim_end_matches(".rs").to_string()
}

/// Every top-level module a file names through `crate::` (also inside `crate::{a, b}`).
fn imports(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (i, _) in text.match_indices("crate::") {
        // `slices::crate::x` cannot happen; skip things like `$crate::`.
        if i > 0 && text.as_bytes()[i - 1] == b'$' {
            continue;
        }
        let rest = &text[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let inner = &group[..group.find('}').unwrap_or(group.len())];
            for part in inner.split(',') {
                let name: String = part
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    found.insert(name);
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.insert(name);
            }
        }
    }
    found
}

fn layer(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

fn allowed(from: &str, to: &str) -> bool {
    if from == to {
        return true;
    }
    if let Some(f) = layer(from) {
        return layer(to).is_some_and(|t| t <= f);
    }
    if TOP.contains(&to) {
        return TOP.contains(&from) || from == "lib" || from == "bin";
    }
    if to == "jobs" {
        return JOB_USERS.contains(&from);
    }
    true
}

#[test]
fn no_module_imports_a_layer_above_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    files.sort();
    let mut broken = Vec::new();
    let mut debts_seen = BTreeSet::new();
    for file in &files {
        let rel = file
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let from = module_of(&rel);
        let text = std::fs::read_to_string(file).unwrap();
        for to in imports(&text) {
            if allowed(&from, &to) {
                continue;
            }
            if DEBTS.contains(&(rel.as_str(), to.as_str())) {
                debts_seen.insert((rel.clone(), to));
                continue;
            }
            broken.push(format!("{rel} ({from}) uses crate::{to}"));
        }
    }
    assert!(
        broken.is_empty(),
        "imports against the layers:\n  {}",
        broken.join("\n  ")
    );
    let paid: Vec<_> = DEBTS
        .iter()
        .filter(|(f, m)| !debts_seen.contains(&(f.to_string(), m.to_string())))
        .collect();
    assert!(
        paid.is_empty(),
        "these debts are paid: take them off DEBTS in tests/it/layers.rs: {paid:?}"
    );
}

#[test]
fn the_checker_sees_grouped_and_plain_imports() {
    let found = imports("use crate::{web::render, jobs};\nlet x = crate::cli::run();\n$crate::no");
    assert_eq!(
        found.into_iter().collect::<Vec<_>>(),
        ["cli", "jobs", "web"]
    );
    assert!(!allowed("store", "web"));
    assert!(!allowed("mail", "web"));
    assert!(!allowed("mail", "ops"));
    assert!(allowed("ops", "mail"));
    assert!(!allowed("domain", "records"));
    assert!(!allowed("records", "ops"));
    assert!(!allowed("ops", "gateway"));
    assert!(allowed("web", "jobs"));
    assert!(!allowed("gateway", "jobs"));
}
