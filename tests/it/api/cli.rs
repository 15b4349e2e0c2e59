//! The real `slices` binary, as an operator runs it.

use std::io::Write;
use std::process::{Command, Stdio};

use reqwest::StatusCode;

use crate::app::*;

fn slices() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_slices"));
    c.env_remove("SLICES_CONFIG")
        .env("SLICES_SYSTEM_CONFIG", "/nonexistent/slices.toml");
    c
}

#[test]
fn config_defaults_lists_every_setting_and_unknown_keys_are_named() {
    let out = slices().args(["config", "defaults"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for key in slices::config::Config::KEYS {
        assert!(text.contains(&format!("\n{key} = ")), "{key}");
    }
    let out = slices()
        .args(["config", "show"])
        .env("SLICES_LISTNE", "x")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown setting `listne`"));
}

#[test]
fn user_add_creates_an_account_that_can_log_in() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    crate::serve::make_data(None, Some(&data));
    let mut child = slices()
        .args([
            "user",
            "add",
            "root1",
            "--role",
            "admin",
            "--email",
            "ops@example.edu",
            "--password-stdin",
        ])
        .arg("--data")
        .arg(&data)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{PASSWORD}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Created admin account `root1`"));
    // A bad username is refused with the reason.
    let out = slices()
        .args([
            "user",
            "add",
            "Root;",
            "--email",
            "x@example.edu",
            "--password-stdin",
        ])
        .arg("--data")
        .arg(&data)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("username"));

    let db = slices::store::Db::open(&data.join("slices.db"), 1).unwrap();
    let user = db
        .read(|c| slices::accounts::users::by_username(c, "root1"))
        .unwrap()
        .unwrap();
    assert_eq!(user.role, slices::domain::Role::Admin);
}

#[actix_web::test]
async fn healthcheck_exits_zero_only_when_the_server_answers() {
    let app = spawn_app().await;
    let r = app.get(&browser(), "/healthz").await;
    assert_eq!(r.status(), StatusCode::OK);
    let json: serde_json::Value = r.json().await.unwrap();
    assert_eq!(json["status"], "ok");
    let url = app.base.clone();
    let ok = actix_web::rt::task::spawn_blocking(move || {
        slices()
            .args(["healthcheck", "--url", &url])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let out = slices()
        .args(["healthcheck", "--url", &dead])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[actix_web::test]
async fn https_serves_secure_cookies_and_the_healthcheck_pins_the_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let (c2, k2) = (cert_path.clone(), key_path.clone());
    let app = spawn_with(move |c| {
        c.tls_cert = Some(c2);
        c.tls_key = Some(k2);
    })
    .await;
    assert!(app.base.starts_with("https://"));
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap())
        .resolve(
            "localhost",
            format!("127.0.0.1:{}", app.base.rsplit(':').next().unwrap())
                .parse()
                .unwrap(),
        )
        .build()
        .unwrap();
    let port = app.base.rsplit(':').next().unwrap();
    let r = client
        .get(format!("https://localhost:{port}/login"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.starts_with("__Host-slices_csrf="), "{cookie}");
    assert!(cookie.contains("Secure"), "{cookie}");
    assert!(r.headers().contains_key("strict-transport-security"));
    let url = app.base.clone();
    let body = actix_web::rt::task::spawn_blocking(move || {
        slices::cli::http_get(&format!("{url}/healthz"), Some(cert_path))
    })
    .await
    .unwrap()
    .unwrap();
    assert!(body.contains("\"ok\""));
    // Another certificate is not trusted.
    let other = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let other_path = dir.path().join("other.pem");
    std::fs::write(&other_path, other.cert.pem()).unwrap();
    let url = app.base.clone();
    let r = actix_web::rt::task::spawn_blocking(move || {
        slices::cli::http_get(&format!("{url}/healthz"), Some(other_path))
    })
    .await
    .unwrap();
    assert!(r.is_err());
}

#[test]
fn backup_copies_the_database_while_it_is_open_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    crate::serve::make_data(None, Some(&data));
    let out = slices()
        .args([
            "user",
            "add",
            "ops",
            "--role",
            "admin",
            "--email",
            "ops@example.edu",
            "--password-stdin",
        ])
        .arg("--data")
        .arg(&data)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .and_then(|mut c| {
            c.stdin
                .take()
                .unwrap()
                .write_all(format!("{PASSWORD}\n").as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(out.status.success());
    // Another connection holds the database open, mid-transaction, as a running master would.
    let live = rusqlite::Connection::open(data.join("slices.db")).unwrap();
    live.execute_batch("BEGIN; INSERT INTO audit (at, event) VALUES (0, 'x');")
        .unwrap();
    let file = dir.path().join("copy.db");
    let out = slices()
        .arg("backup")
        .arg(&file)
        .arg("--data")
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Keep with it"));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "a backup is its owner's alone: {mode:o}");
    let copy = rusqlite::Connection::open(&file).unwrap();
    let users: i64 = copy
        .query_row(
            "SELECT count(*) FROM users WHERE username = 'ops'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(users, 1);
    let uncommitted: i64 = copy
        .query_row("SELECT count(*) FROM audit WHERE event = 'x'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(uncommitted, 0, "only committed data");
    live.execute_batch("ROLLBACK").unwrap();
    // Never over an existing file.
    let out = slices()
        .arg("backup")
        .arg(&file)
        .arg("--data")
        .arg(&data)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("exists already"));
}

/// `slices user add` refuses a reserved name the same way, before asking for a password.
#[test]
fn the_cli_refuses_a_reserved_username() {
    let dir = tempfile::tempdir().unwrap();
    let out = slices()
        .args([
            "user",
            "add",
            "root",
            "--email",
            "r@example.edu",
            "--password-stdin",
        ])
        .arg("--data")
        .arg(dir.path().join("data"))
        .stdin(Stdio::piped())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("`root` is reserved for the system"), "{err}");
}

/// A command run where no master's data is (no --data, no configuration) refuses, names the
/// folder it looked in, and makes nothing there.
#[test]
fn commands_other_than_serve_make_no_database() {
    let cwd = tempfile::tempdir().unwrap();
    for args in [
        &["jobs", "list"][..],
        &["gateway", "plan"],
        &["node", "list"],
    ] {
        let out = slices()
            .args(args)
            .current_dir(cwd.path())
            .env("SLICES_SYSTEM_CONFIG", cwd.path().join("none.toml"))
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("there is no Slices database in slices-data"),
            "{args:?}: {err}"
        );
    }
    assert_eq!(
        std::fs::read_dir(cwd.path()).unwrap().count(),
        0,
        "nothing was made"
    );
}

/// The operator's configuration is found without being named (`/etc/slices/slices.toml`,
/// here pointed elsewhere by SLICES_SYSTEM_CONFIG), and a flag still wins over it.
#[test]
fn the_operators_configuration_is_found_without_being_named() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("master-data");
    let system = dir.path().join("slices.toml");
    std::fs::write(&system, format!("data = \"{}\"\n", data.display())).unwrap();
    crate::serve::make_data(Some(&system), None);
    let out = slices()
        .args(["jobs", "list"])
        .current_dir(dir.path())
        .env("SLICES_SYSTEM_CONFIG", &system)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "No jobs.\n");
    let out = slices()
        .args(["config", "show"])
        .env("SLICES_SYSTEM_CONFIG", &system)
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains(&format!("data = {}", data.display()))
            || shown.contains(&format!("data = \"{}\"", data.display())),
        "{shown}"
    );
}

/// `slices ... | head`: a reader that goes away ends the command quietly (the status of a
/// program stopped by SIGPIPE, no panic message).
#[test]
fn a_closed_pipe_ends_quietly() {
    let mut child = slices()
        .args(["config", "defaults"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(141));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}

/// `slices node add` gives nodes subnets of their own; `slices node remove` retires one
/// without slices at once, and with --force only when its name is typed.
#[test]
fn nodes_get_their_own_subnets_and_are_removed_on_purpose() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    crate::serve::make_data(None, Some(&data));
    for (name, port) in [("n1", "7071"), ("n2", "7072")] {
        let out = slices()
            .args([
                "node",
                "add",
                name,
                "--address",
                &format!("10.0.0.9:{port}"),
            ])
            .arg("--bundle")
            .arg(dir.path().join(name))
            .arg("--data")
            .arg(&data)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let toml = |n: &str| std::fs::read_to_string(dir.path().join(n).join("agent.toml")).unwrap();
    assert!(
        toml("n1").contains("subnet = \"10.77.0.0/24\""),
        "{}",
        toml("n1")
    );
    assert!(
        toml("n2").contains("subnet = \"10.77.1.0/24\""),
        "{}",
        toml("n2")
    );
    let out = slices()
        .args([
            "node",
            "add",
            "n3",
            "--address",
            "10.0.0.9:7073",
            "--subnet",
            "10.77.1.128/25",
        ])
        .arg("--bundle")
        .arg(dir.path().join("n3"))
        .arg("--data")
        .arg(&data)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("overlaps node n2"));
    let routes = slices()
        .args(["gateway", "routes", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    let routes = String::from_utf8_lossy(&routes.stdout);
    assert!(
        routes.contains("ip route replace 10.77.0.0/24 via 10.0.0.9"),
        "{routes}"
    );
    // Forced, with the wrong name typed: nothing happens.
    let mut child = slices()
        .args(["node", "remove", "n1", "--force", "--data"])
        .arg(&data)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"n2\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not removed"));
    // Without slices, removed at once.
    let out = slices()
        .args(["node", "remove", "n1", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list = slices()
        .args(["node", "list", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(!list.contains("n1") && list.contains("n2"), "{list}");
}

/// The CLI's refusals are in plain words: no terminal for a password, no folder for a backup.
#[test]
fn cli_errors_are_plain_words() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    crate::serve::make_data(None, Some(&data));
    // `setsid`: no controlling terminal, as under cron or a deploy script.
    let out = Command::new("setsid")
        .arg(env!("CARGO_BIN_EXE_slices"))
        .args([
            "user",
            "add",
            "newbie",
            "--role",
            "student",
            "--email",
            "n@example.edu",
        ])
        .arg("--data")
        .arg(&data)
        .env_remove("SLICES_CONFIG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("there is no terminal to ask for the password")
            && err.contains("--password-stdin"),
        "{err}"
    );
    assert!(!err.contains("os error"), "{err}");
    let out = slices()
        .args(["backup", "/missing-folder/x.db", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("there is no folder /missing-folder"), "{err}");
    assert!(!err.contains("Error code"), "{err}");
    // A one-shot command prints its result and nothing else: no log lines, no colours.
    let out = slices()
        .args(["mail", "test", "someone@example.edu", "--data"])
        .arg(&data)
        .env("SLICES_MAIL_TRANSPORT", "file")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let (said, err) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{said}{err}");
    assert!(
        said.starts_with("Sent: written to ") && said.lines().count() == 1,
        "{said}"
    );
    assert!(err.is_empty(), "{err}");
}
