//! Every SQL statement of `src/records/` is prepared against a freshly migrated database, so a
//! misspelt column or a table that a migration renamed fails here, before any feature test
//! happens to run the statement. And no SQL is written outside `src/records/` (and the store
//! itself: migrations, pragmas, backups).

use std::collections::HashMap;
use std::path::Path;

use super::layers::rust_files;

/// SQL keywords a statement starts with.
const STARTS: &[&str] = &[
    "SELECT", "INSERT", "UPDATE", "DELETE", "WITH", "REPLACE", "CREATE", "ALTER", "DROP", "VACUUM",
    "PRAGMA",
];

/// Pieces of statements that are computed, not literal, and a value that stands for them
/// when the statement is prepared here. A new computed piece must be added with a reason.
const COMPUTED: &[(&str, &str)] = &[
    // sessions::by_token: the users' columns prefixed with `u.`.
    ("cols", "u.id, u.username"),
    // users::for_login: `username` or `email`, by the shape of what was typed.
    ("column", "username"),
    // users::search: the WHERE clause (also a named string; this stands in elsewhere).
    ("filter", "?1 IS NOT NULL AND (?2 IS NULL OR s.state = ?2)"),
];

/// A Rust string literal starting at `text[start]` (the opening quote): its value and where
/// it ends.
fn literal(text: &str, start: usize) -> (String, usize) {
    let bytes = text.as_bytes();
    let mut out = String::new();
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => return (out, i + 1),
            b'\\' => {
                let next = bytes[i + 1];
                match next {
                    b'n' => out.push('\n'),
                    b't' => out.push('\t'),
                    b'\\' => out.push('\\'),
                    b'"' => out.push('"'),
                    b'\'' => out.push('\''),
                    b'r' => out.push('\r'),
                    b'0' => out.push('\0'),
                    b'x' => {
                        let hex = &text[i + 2..i + 4];
                        out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?') as char);
                        i += 4;
                        continue;
                    }
                    b'u' => {
                        let close = text[i..].find('}').unwrap() + i;
                        let hex = &text[i + 3..close];
                        out.push(
                            u32::from_str_radix(hex, 16)
                                .ok()
                                .and_then(char::from_u32)
                                .unwrap_or('?'),
                        );
                        i = close + 1;
                        continue;
                    }
                    b'\n' => {
                        // A line continuation: the newline and the next line's indent go.
                        i += 2;
                        while i < bytes.len() && (bytes[i] == b' ' || bytes[i] == b'\t') {
                            i += 1;
                        }
                        continue;
                    }
                    // A raw string's backslash: kept as it is.
                    other => {
                        out.push('\\');
                        out.push(other as char);
                    }
                }
                i += 2;
            }
            _ => {
                let ch = text[i..].chars().next().unwrap();
                out.push(ch);
                i += ch.len_utf8();
            }
        }
    }
    panic!("an unterminated string literal");
}

/// Every string literal of a file (outside `#[cfg(test)]`), in order.
fn literals(text: &str) -> Vec<String> {
    let text = text.split("#[cfg(test)]").next().unwrap();
    let mut found = Vec::new();
    let mut i = 0;
    let bytes = text.as_bytes();
    while i < bytes.len() {
        match bytes[i] {
            // Comments and char literals are skipped so their quotes do not count.
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                i = text[i..].find('\n').map_or(bytes.len(), |n| i + n);
            }
            b'\'' if bytes.get(i + 2) == Some(&b'\'') => i += 3,
            b'\'' if bytes.get(i + 1) == Some(&b'\\') && bytes.get(i + 3) == Some(&b'\'') => i += 4,
            b'"' => {
                let (s, end) = literal(text, i);
                found.push(s);
                i = end;
            }
            _ => i += 1,
        }
    }
    found
}

fn is_sql(s: &str) -> bool {
    let t = s.trim_start();
    STARTS
        .iter()
        .any(|k| t.starts_with(k) && t[k.len()..].starts_with([' ', '\n']))
}

/// `const NAME: &str = "...";` and `let name = "...";` of a file, for `{NAME}` in format strings.
fn named_strings(text: &str) -> HashMap<String, String> {
    let mut names = HashMap::new();
    for (i, _) in text
        .match_indices(": &str =")
        .chain(text.match_indices(" = \""))
    {
        let before = &text[..i];
        let name: String = before
            .chars()
            .rev()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect::<String>()
            .chars()
            .rev()
            .collect();
        let Some(q) = text[i..].find('"') else {
            continue;
        };
        if text[i..i + q].contains(';') || name.is_empty() {
            continue;
        }
        let (value, _) = literal(text, i + q);
        names.entry(name).or_insert(value);
    }
    names
}

/// The statement with its `{name}` pieces filled in; Err names a piece nobody knows.
fn fill(sql: &str, names: &HashMap<String, String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = sql;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}').ok_or("an unclosed {")? + open;
        let name = &rest[open + 1..close];
        let value = names
            .get(name)
            .cloned()
            .or_else(|| {
                COMPUTED
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| v.to_string())
            })
            .ok_or(format!("{{{name}}}"))?;
        out.push_str(&value);
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[test]
fn every_statement_in_records_prepares_against_the_migrated_schema() {
    let dir = tempfile::tempdir().unwrap();
    let db = slices::store::Db::open(&dir.path().join("t.db"), 1).unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src/records"), &mut files);
    files.sort();
    let (mut prepared, mut broken) = (0, Vec::new());
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let names = named_strings(&text);
        for sql in literals(&text).into_iter().filter(|s| is_sql(s)) {
            let name = file.strip_prefix(root).unwrap().display().to_string();
            let filled = match fill(&sql, &names) {
                Ok(f) => f,
                Err(piece) => {
                    broken.push(format!("{name}: unknown piece {piece} in: {sql}"));
                    continue;
                }
            };
            let result = db.write(|tx| {
                tx.prepare(&filled)
                    .map(|_| ())
                    .map_err(slices::store::StoreError::from)
            });
            match result {
                Ok(()) => prepared += 1,
                Err(e) => broken.push(format!("{name}: {e}\n    {filled}")),
            }
        }
    }
    assert!(
        broken.is_empty(),
        "statements that do not prepare:\n{}",
        broken.join("\n")
    );
    assert!(
        prepared >= 50,
        "only {prepared} statements found: is the reader blind?"
    );
}

#[test]
fn no_sql_outside_records() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    files.sort();
    let mut found: Vec<(String, usize)> = Vec::new();
    for file in &files {
        let name = file.strip_prefix(root).unwrap().display().to_string();
        if name.starts_with("src/records/") || name.starts_with("src/store/") {
            continue;
        }
        let text = std::fs::read_to_string(file).unwrap();
        let n = literals(&text).iter().filter(|s| is_sql(s)).count();
        if n > 0 {
            found.push((name, n));
        }
    }
    assert!(
        found.is_empty(),
        "SQL outside src/records/ (statements per file): {found:?}. Write it as a function in \
         the table's file under records/ and call that"
    );
}

/// The state words an SQL statement compares or sets (`state = 'x'`, `state IN ('x', 'y')`,
/// also with a table prefix, `<>` and `NOT IN`).
fn state_words(sql: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut rest = sql;
    while let Some(i) = rest.find("state") {
        let before_ok = i == 0 || {
            let b = rest.as_bytes()[i - 1];
            !(b.is_ascii_alphanumeric() || b == b'_')
        };
        let after = &rest[i + "state".len()..];
        rest = after;
        if !before_ok || after.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let t = after.trim_start();
        let t = t.strip_prefix("NOT").map(str::trim_start).unwrap_or(t);
        if let Some(list) = t.strip_prefix("IN") {
            let list = list.trim_start();
            if let Some(inner) = list.strip_prefix('(') {
                let inner = &inner[..inner.find(')').unwrap_or(inner.len())];
                words.extend(
                    inner
                        .split(',')
                        .filter_map(|w| w.trim().strip_prefix('\'')?.strip_suffix('\''))
                        .map(str::to_string),
                );
            }
        } else if let Some(v) = ["=", "<>", "!="].iter().find_map(|op| t.strip_prefix(op)) {
            let v = v.trim_start();
            if let Some(q) = v.strip_prefix('\'') {
                if let Some(end) = q.find('\'') {
                    words.push(q[..end].to_string());
                }
            }
        }
    }
    words
}

/// Every state an SQL statement in `records/` names is one its table knows: the words are
/// checked against the enums and lists the code uses (a misspelt state would match no row
/// and no error would say so).
#[test]
fn states_named_in_sql_are_states_of_their_table() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src/records"), &mut files);
    let (mut checked, mut wrong) = (0, Vec::new());
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let known = |w: &str| match name.as_str() {
            "jobs.rs" => slices::records::jobs::STATES.contains(&w),
            "outbox.rs" => slices::records::outbox::STATES.contains(&w),
            "exports.rs" => slices::records::exports::STATES.contains(&w),
            "snapshots.rs" => slices::records::snapshots::STATES.contains(&w),
            // Slices' states, and those of requests for more time (`extensions`).
            "courses.rs" => {
                slices::records::courses::EXTENSION_STATES.contains(&w)
                    || slices::slices::State::parse(w).is_some()
            }
            _ => slices::slices::State::parse(w).is_some(),
        };
        let text = std::fs::read_to_string(file).unwrap();
        for sql in literals(&text).into_iter().filter(|s| is_sql(s)) {
            for w in state_words(&sql) {
                checked += 1;
                if !known(&w) {
                    wrong.push(format!("{name}: '{w}' in {sql}"));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "unknown states:\n{}", wrong.join("\n"));
    assert!(
        checked >= 30,
        "only {checked} state words found: is the reader blind?"
    );
}

#[test]
fn the_reader_finds_state_words() {
    assert_eq!(
        state_words("UPDATE slices SET state = 'failed' WHERE s.state IN ('running', 'stopped') AND state NOT IN ('x') AND state <> 'y' AND statement = 'z'"),
        ["failed", "running", "stopped", "x", "y"]
    );
}

#[test]
fn the_reader_finds_statements_and_their_pieces() {
    let text = "const C: &str = \"a, b\";\nfn f() { let filter = \"x = 1\"; \
                q(&format!(\"SELECT {C} FROM t WHERE {filter}\")); q(\"UPDATE t SET a = '\\\\' \\\n    WHERE b\"); }";
    let names = named_strings(text);
    let sql: Vec<String> = literals(text).into_iter().filter(|s| is_sql(s)).collect();
    assert_eq!(sql.len(), 2, "{sql:?}");
    assert_eq!(
        fill(&sql[0], &names).unwrap(),
        "SELECT a, b FROM t WHERE x = 1"
    );
    assert_eq!(sql[1], "UPDATE t SET a = '\\' WHERE b");
    assert!(fill("SELECT {nobody}", &names).is_err());
}

/// The card's reading of a node (name, simulated) agrees with the whole node's, whatever its
/// `info` holds: a simulator's, a real host's, none, or text that is not JSON.
#[test]
fn a_cards_node_reading_agrees_with_the_whole_node() {
    let dir = tempfile::tempdir().unwrap();
    let db = slices::store::Db::open(&dir.path().join("t.db"), 1).unwrap();
    for (i, info) in [
        Some(r#"{"simulated": true, "driver": "sim"}"#),
        Some(r#"{"simulated": false}"#),
        Some(r#"{"driver": "lxc"}"#),
        Some("not json {"),
        None,
    ]
    .into_iter()
    .enumerate()
    {
        let id = db
            .write(|tx| {
                tx.execute(
                    "INSERT INTO nodes (name, address, created_at, info, subnet)
                     VALUES (?1, ?2, 0, ?3, ?4)",
                    rusqlite::params![
                        format!("n{i}"),
                        format!("127.0.0.{}:7000", i + 1),
                        info,
                        format!("10.{i}.0.0/24")
                    ],
                )?;
                Ok::<_, slices::error::Error>(tx.last_insert_rowid())
            })
            .unwrap();
        let (whole, card) = db
            .read(|c| {
                Ok::<_, slices::error::Error>((
                    slices::records::nodes::by_id(c, id)?.unwrap(),
                    slices::records::nodes::name_and_simulated(c, id)?.unwrap(),
                ))
            })
            .unwrap();
        assert_eq!(card, (whole.name.clone(), whole.simulated()), "{info:?}");
        assert_eq!(card.1, i == 0, "{info:?}");
    }
}
