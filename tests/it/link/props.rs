//! Thousands of random and mutated requests against the parser and the checks: nothing
//! panics, nothing that fails its check runs, and whatever does run has only safe arguments.

use std::sync::Arc;

use proptest::prelude::*;
use slices::agent::run::RecordingRunner;
use slices::agent::vzctl::{VzPaths, Vzctl};
use slices::agent::Agent;
use slices::domain::NodeName;
use slices::slave_link::{Command, Handler};

use super::helpers::*;

fn valid_lines() -> Vec<String> {
    let s = spec(101, "10.77.0.11");
    [
        Command::CreateEnv(Box::new(s.clone())),
        Command::StartEnv(s.id),
        Command::DestroyEnv(s.id),
        Command::SetLimits(s.id, s.limits),
        Command::Usage(Some(s.id)),
    ]
    .iter()
    .map(|c| serde_json::to_string(&c.to_request()).unwrap())
    .collect()
}

fn safe_arg(a: &str) -> bool {
    a.chars()
        .all(|c| c.is_ascii_alphanumeric() || "._:/@+=,-".contains(c))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, .. ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = Command::parse_line(&bytes);
    }

    #[test]
    fn mutated_requests_are_refused_or_safe(
        which in 0usize..5,
        pos in any::<prop::sample::Index>(),
        insert in prop::sample::select(vec![
            "\"", "\\", ";", "$(id)", "`", "\n", "\\u0000", "..", "/", " ", "-", "{", "}", "[", "]",
            ",", ":", "1", "-1", "99999999999", "\"a\"", "null", "true", "'", "|", "&",
        ]),
        delete in 0usize..4,
    ) {
        let lines = valid_lines();
        let mut line = lines[which].clone();
        let at = pos.index(line.len() + 1);
        let at = (0..=at).rev().find(|i| line.is_char_boundary(*i)).unwrap_or(0);
        let end = (at + delete).min(line.len());
        let end = (end..=line.len()).find(|i| line.is_char_boundary(*i)).unwrap_or(line.len());
        line.replace_range(at..end, insert);

        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path(), &NodeName::parse("p1").unwrap());
        std::fs::create_dir_all(&cfg.templates).unwrap();
        std::fs::write(cfg.templates.join(format!("{TEMPLATE}.tar.gz")), b"x").unwrap();
        let runner = Arc::new(RecordingRunner::default());
        let paths = VzPaths { beancounters: dir.path().join("bc"), ..VzPaths::default() };
        let agent = Agent::new(cfg, Box::new(Vzctl::new(paths, runner.clone()))).unwrap();

        match Command::parse_line(line.as_bytes()) {
            Err(_) => {}
            Ok(cmd) => {
                // What parses must survive a round trip unchanged (it was fully checked)...
                let again = serde_json::to_vec(&cmd.to_request()).unwrap();
                prop_assert_eq!(Command::parse_line(&again).unwrap(), cmd.clone());
                let _ = agent.handle(cmd);
            }
        }
        // ...and every argument that reached a command line is plain.
        for (_, args, _) in runner.calls.lock().unwrap().iter() {
            for a in args {
                prop_assert!(safe_arg(a), "unsafe argument {:?} from {:?}", a, line);
            }
        }
    }
}
