//! `/proc/user_beancounters`, OpenVZ's resource counters: one block per container, one line
//! per resource with held, maxheld, barrier, limit and failcnt.

use std::collections::BTreeMap;

use super::driver::Counter;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("user_beancounters line {line}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

/// The counters of every container, by container id (uid 0 is the host itself).
pub fn parse(text: &str) -> Result<BTreeMap<u32, Vec<Counter>>, ParseError> {
    let err = |line: usize, m: &str| ParseError {
        line,
        message: m.to_string(),
    };
    let mut out: BTreeMap<u32, Vec<Counter>> = BTreeMap::new();
    let mut current: Option<u32> = None;
    let mut seen_version = false;
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(v) = line.strip_prefix("Version:") {
            let v = v.trim();
            if !v.starts_with("2.") {
                return Err(err(
                    n,
                    &format!("unsupported version {v} (2.x is understood)"),
                ));
            }
            seen_version = true;
            continue;
        }
        if !seen_version {
            return Err(err(n, "the file must start with a `Version:` line"));
        }
        let mut fields: Vec<&str> = line.split_whitespace().collect();
        if fields.first() == Some(&"uid") {
            continue; // the header
        }
        if let Some(uid) = fields.first().and_then(|f| f.strip_suffix(':')) {
            current = Some(
                uid.parse()
                    .map_err(|_| err(n, &format!("`{uid}` is not a container id")))?,
            );
            fields.remove(0);
        }
        let uid = current.ok_or_else(|| err(n, "a resource line before any container id"))?;
        if fields.len() != 6 {
            return Err(err(
                n,
                &format!(
                    "expected a resource and 5 numbers, found {} fields",
                    fields.len()
                ),
            ));
        }
        let num = |s: &str| -> Result<u64, ParseError> {
            s.parse()
                .map_err(|_| err(n, &format!("`{s}` is not a number")))
        };
        let resource = fields[0];
        if !resource
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(err(n, &format!("`{resource}` is not a resource name")));
        }
        if resource == "dummy" {
            continue;
        }
        out.entry(uid).or_default().push(Counter {
            resource: resource.to_string(),
            held: num(fields[1])?,
            maxheld: num(fields[2])?,
            barrier: num(fields[3])?,
            limit: num(fields[4])?,
            failcnt: num(fields[5])?,
        });
    }
    if !seen_version {
        return Err(err(0, "empty: no `Version:` line"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = include_str!("../../tests/fixtures/user_beancounters.seed.txt");

    #[test]
    fn the_seeds_sample() {
        let all = parse(SEED).unwrap();
        let ve = &all[&1];
        let priv_ = ve.iter().find(|c| c.resource == "privvmpages").unwrap();
        assert_eq!(
            (
                priv_.held,
                priv_.maxheld,
                priv_.barrier,
                priv_.limit,
                priv_.failcnt
            ),
            (41480, 93087, 131072, 139264, 36)
        );
        assert_eq!(ve.len(), 20, "24 lines less 4 dummies");
        assert_eq!(
            ve.iter().find(|c| c.resource == "numproc").unwrap().limit,
            240
        );
    }

    #[test]
    fn malformed_input_is_a_clear_error() {
        for (text, want) in [
            ("", "Version"),
            ("1: kmemsize 1 2 3 4 5", "Version"),
            ("Version: 9.0\n", "unsupported"),
            ("Version: 2.5\n kmemsize 1 2 3 4 5", "before any container"),
            ("Version: 2.5\n1: kmemsize 1 2 3", "5 numbers"),
            ("Version: 2.5\nx: kmemsize 1 2 3 4 5", "not a container id"),
            ("Version: 2.5\n1: kmemsize 1 2 -3 4 5", "not a number"),
            (
                "Version: 2.5\n1: kmemsize 1 2 99999999999999999999999 4 5",
                "not a number",
            ),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.to_string().contains(want), "{text:?}: {e}");
        }
    }
}
