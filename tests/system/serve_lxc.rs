//! System test: `slices serve --driver lxc` as a newcomer runs it on one machine, through HTTP
//! and the real OpenSSH client only: the master makes its bridge and NAT, builds (here: takes
//! from the machine's cache) and offers an OS template, and a student who signs up, adds a key
//! and is approved reaches a real LXC slice with `ssh -p PORT NAME@localhost`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::http::{approve_first_request, confirmed_student, form, page, wait_status};
use crate::serve::Served;
use crate::system::*;

const BRIDGE: &str = "slbr-serve";
const SUBNET: &str = "10.88.0.0/24";

/// Puts the host back whatever happens: the containers, the network policy, the bridge.
struct Cleanup {
    state: PathBuf,
    root: PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let lxc = self.state.join("lxc");
        if let Ok(dir) = std::fs::read_dir(&lxc) {
            for e in dir.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') {
                    continue;
                }
                let p = lxc.to_string_lossy().into_owned();
                quiet("lxc-stop", &["-P", &p, "-n", &name, "-k"]);
                quiet("lxc-destroy", &["-P", &p, "-n", &name]);
            }
        }
        let run = slices::agent::run::SystemRunner {
            timeout: Duration::from_secs(30),
        };
        let _ = slices::agent::netpolicy::uninstall(&run, BRIDGE, &self.state);
        quiet("ip", &["link", "del", BRIDGE]);
        detach_loops_under(&self.state);
        let _ = std::fs::remove_dir_all(&self.root);
        // (/var/lib/slices-lxc goes too when nothing else is in it.)
        if let Some(base) = self.root.parent() {
            let _ = std::fs::remove_dir(base);
        }
    }
}

fn ssh(port: u16, key: &Path, user: &str, command: &str) -> (i32, String, String) {
    let out = Command::new("timeout")
        .arg("30")
        .arg("ssh")
        .args(SSH_OPTS)
        .args(["-p", &port.to_string(), "-i"])
        .arg(key)
        .arg(format!("{user}@localhost"))
        .arg(command)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_the_lxc_driver_gives_a_real_slice_on_one_machine() {
    let Some(_alone) = alone("serve_lxc").await else {
        return;
    };
    // The OS template the master builds comes from the machine's cache (the test command
    // built it): the same script, so it takes a second here.
    let _ = template();
    quiet("ip", &["link", "del", BRIDGE]);
    let dir = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt;
    let data = dir.path().join("slices-data");
    std::fs::create_dir_all(&data).unwrap();
    let agent_root = slices::embedded::lxc_state_root(&data).unwrap();
    let _cleanup = Cleanup {
        state: agent_root.join("state"),
        root: agent_root.clone(),
    };
    let served = Served::start_with(
        &data,
        "info",
        &[],
        &["--driver", "lxc"],
        &[
            ("SLICES_EMBEDDED_BRIDGE", BRIDGE),
            ("SLICES_EMBEDDED_SUBNET", SUBNET),
        ],
    );
    assert!(!served.simulated);
    let port = served.ssh_port.expect("it says how students log in");
    let base = served.base.clone();
    let admin = served.first_admin("ada").await;

    // It made its bridge, and said nothing about files the in-process agent does not use.
    let log = served.log_text();
    assert!(log.contains("made the slices' bridge"), "{log}");
    for quiet_about in [
        "CA certificate",
        "agent certificate",
        "agent key",
        "no bridge",
        "cannot reach",
    ] {
        assert!(!log.contains(quiet_about), "{quiet_about}: {log}");
    }
    // The data folder stays private; the containers live where their root may pass.
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&agent_root), 0o711);
    // The template is built and offered.
    let start = Instant::now();
    loop {
        let templates = page(&admin, &format!("{base}/staff/templates")).await;
        if templates.contains("debian-12-ssh-sudo_amd64") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "no template offered: {}",
            served.log_text()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    // A student signs up, is confirmed by the admin, adds her key and asks.
    let stu = confirmed_student(&admin, &base, "stu").await;
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = keypair(keys.path(), "stu");
    let r = form(&stu, &base, "/keys", "/keys", &[("key", public.as_str())]).await;
    assert_eq!(r, 303, "key added");
    let r = form(
        &stu,
        &base,
        "/request",
        "/request",
        &[
            ("template", "debian-12-ssh-sudo_amd64"),
            ("course", "CS 101"),
        ],
    )
    .await;
    assert_eq!(r, 303, "requested");
    let id = approve_first_request(&admin, &base).await;
    wait_status(&stu, &base, id, "running", 180).await;
    // The command on her dashboard is the one that works.
    let home = page(&stu, &format!("{base}/")).await;
    assert!(
        home.contains(&format!("ssh -p {port} stu@localhost")),
        "{home}"
    );
    let start = Instant::now();
    loop {
        let (code, out, err) = ssh(port, &key, "stu", "hostname; sudo -n true && echo root-ok");
        if code == 0 {
            assert_eq!(out, "stu\nroot-ok\n");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "ssh: {code} {err}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // She destroys it: the container goes.
    let r = form(
        &stu,
        &base,
        "/",
        &format!("/slices/{id}/destroy"),
        &[("confirm", "stu")],
    )
    .await;
    assert_eq!(r, 303);
    let start = Instant::now();
    while std::fs::read_dir(agent_root.join("state/lxc"))
        .map(|d| {
            d.flatten()
                .any(|e| !e.file_name().to_string_lossy().starts_with('.'))
        })
        .unwrap_or(false)
    {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the container stays"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
