//! The real `slices serve` binary on an empty data folder, as a newcomer starts it: its
//! address and first-admin link read from what it prints, its log (stderr) kept in a file.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A running master, killed on drop.
pub struct Served {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// The one-time link that makes the first admin.
    pub setup: String,
    /// Whether it said the built-in node is simulated.
    pub simulated: bool,
    /// Where its log goes.
    pub log: PathBuf,
    /// The port of its built-in SSH gateway, as it printed it.
    #[allow(dead_code)]
    pub ssh_port: Option<u16>,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    /// Starts `slices serve --listen 127.0.0.1:0 --data DATA` with no configuration file and
    /// `RUST_LOG` as given; returns once it printed its first-admin link.
    pub fn start(data: &Path, rust_log: &str) -> Served {
        Served::start_under(data, rust_log, &[])
    }

    /// The same, run under `prefix` (such as `prlimit --nofile=1024:1024`).
    pub fn start_under(data: &Path, rust_log: &str, prefix: &[&str]) -> Served {
        Served::start_with(data, rust_log, prefix, &[], &[])
    }

    /// The same with more arguments to `serve` and more environment.
    pub fn start_with(
        data: &Path,
        rust_log: &str,
        prefix: &[&str],
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Served {
        std::fs::create_dir_all(data.parent().unwrap()).unwrap();
        let log = data.with_extension("log");
        // `TEST_SLICES_SERVE_BIN` runs another build (a release one, to measure it).
        let bin = std::env::var("TEST_SLICES_SERVE_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_slices").to_string());
        let mut argv: Vec<&str> = prefix.to_vec();
        argv.push(&bin);
        let mut child = Command::new(argv[0])
            .args(&argv[1..])
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(data)
            .args(args)
            .envs(env.iter().copied())
            .env_remove("SLICES_CONFIG")
            // Several masters run at once in the tests: each gateway on a port of its own.
            .env("SLICES_SSH_LISTEN", "127.0.0.1:0")
            .env("RUST_LOG", rust_log)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        let mut served = Served {
            child,
            base: String::new(),
            setup: String::new(),
            simulated: false,
            log,
            ssh_port: None,
        };
        for line in out.lines() {
            let line = line.unwrap();
            if let Some(rest) = line.strip_prefix("Slices is running at ") {
                served.base = rest
                    .split_whitespace()
                    .next()
                    .unwrap()
                    .trim_end_matches('/')
                    .to_string();
            }
            served.simulated |= line.contains("built-in simulated node `local`");
            if let Some(rest) = line.split("ssh -p ").nth(1) {
                served.ssh_port = rest.split_whitespace().next().and_then(|p| p.parse().ok());
            }
            if line.trim_start().starts_with("http") && line.contains("/setup/") {
                served.setup = line.trim().to_string();
                break;
            }
        }
        assert!(
            !served.base.is_empty() && !served.setup.is_empty(),
            "the start-up lines; its log:\n{}",
            served.log_text()
        );
        served
    }

    /// Makes the first admin from the one-time link; returns their logged-in client.
    pub async fn first_admin(&self, username: &str) -> reqwest::Client {
        let admin = super::http::browser();
        let path = self.setup.strip_prefix(&self.base).unwrap();
        let r = super::http::form(
            &admin,
            &self.base,
            path,
            path,
            &[
                ("username", username),
                ("email", &format!("{username}@example.edu")),
                ("display_name", username),
                ("password", "correct horse battery"),
                ("password_confirm", "correct horse battery"),
            ],
        )
        .await;
        assert_eq!(r, 303, "admin created");
        admin
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What it has logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Makes a master's data folder and database the way `slices serve` does at its first start
/// (commands other than `serve` refuse a folder without one): from a configuration file, or
/// for a data folder alone.
pub fn make_data(config: Option<&Path>, data: Option<&Path>) {
    let flags: Vec<(&str, String)> = data
        .map(|d| ("data", d.display().to_string()))
        .into_iter()
        .collect();
    let config = slices::config::Config::load(config, Vec::<(String, String)>::new(), &flags)
        .expect("the test's configuration");
    slices::context::Context::open(config).expect("a new data folder");
}
