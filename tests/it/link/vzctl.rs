//! The OpenVZ driver, checked against the exact commands it runs (no OpenVZ kernel exists on
//! these machines: a recording runner stands in for the host).

use std::sync::Arc;

use slices::agent::run::{Output, RecordingRunner};
use slices::agent::vzctl::{VzPaths, Vzctl};
use slices::agent::{Agent, DriverKind};
use slices::domain::{Limits, NodeName};
use slices::slave_link::{Command, Handler};

use super::helpers::*;

fn out(stdout: &str, code: i32) -> Output {
    Output {
        code,
        stdout: stdout.into(),
        stderr: if code == 0 {
            String::new()
        } else {
            "failed".into()
        },
    }
}

fn agent() -> (tempfile::TempDir, Arc<RecordingRunner>, Agent) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), &NodeName::parse("vz1").unwrap());
    cfg.driver = DriverKind::Vzctl;
    std::fs::create_dir_all(&cfg.templates).unwrap();
    std::fs::write(cfg.templates.join(format!("{TEMPLATE}.tar.gz")), b"x").unwrap();
    let seed = include_str!("../../fixtures/user_beancounters.seed.txt").replace("1:\t", "101:\t");
    std::fs::write(dir.path().join("beancounters"), seed).unwrap();
    let runner = Arc::new(RecordingRunner::default());
    let paths = VzPaths {
        vzctl: "vzctl".into(),
        beancounters: dir.path().join("beancounters"),
        root: dir.path().join("root"),
    };
    let agent = Agent::new(cfg, Box::new(Vzctl::new(paths, runner.clone()))).unwrap();
    (dir, runner, agent)
}

#[test]
fn create_start_stop_destroy_run_the_seeds_commands() {
    let (_dir, runner, agent) = agent();
    let s = spec(101, "10.77.0.11");
    let r = agent.handle(Command::CreateEnv(Box::new(s.clone())));
    assert_eq!(r.code, 0, "{}", r.text());
    assert_eq!(
        runner.lines(),
        vec![
            "vzctl create 101 --ostemplate debian-12-ssh_amd64",
            "vzctl set 101 --ipadd 10.77.0.11 --hostname alice --nameserver 10.77.0.1 --searchdomain example.edu --save",
            "vzctl set 101 --privvmpages 65536:131072 --numproc 240:240 --cpuunits 1024 --diskspace 10485760:10485760 --save",
        ]
    );

    runner.calls.lock().unwrap().clear();
    runner.answer(
        "vzctl",
        "status 101",
        out("CTID 101 exist unmounted down", 0),
    );
    runner.answer("vzctl", "exec2 101 id -u alice", out("", 1));
    let r = agent.handle(Command::StartEnv(s.id));
    assert_eq!(r.code, 0, "{}", r.text());
    assert_eq!(
        runner.lines(),
        vec![
            "vzctl status 101",
            "vzctl start 101",
            "vzctl exec2 101 id -u alice",
            "vzctl exec2 101 useradd -m -s /bin/bash alice",
            "vzctl exec2 101 usermod -p * alice",
            // The user's own files, as the user (a link they made leads only where they
            // could write), put in place whole.
            "vzctl exec2 101 runuser -u alice -- mkdir -p -m 700 /home/alice/.ssh",
            "vzctl exec2 101 runuser -u alice -- tee /home/alice/.ssh/.authorized_keys.slices",
            "vzctl exec2 101 runuser -u alice -- chmod 600 /home/alice/.ssh/.authorized_keys.slices",
            "vzctl exec2 101 runuser -u alice -- mv -fT /home/alice/.ssh/.authorized_keys.slices /home/alice/.ssh/authorized_keys",
            // Root in the VE: passwordless sudo, the plan's default.
            "vzctl exec2 101 test -x /usr/bin/sudo",
            "vzctl exec2 101 install -d -m 750 /etc/sudoers.d",
            "vzctl exec2 101 tee /etc/sudoers.d/.slices-student.new",
            "vzctl exec2 101 chmod 440 /etc/sudoers.d/.slices-student.new",
            "vzctl exec2 101 mv -f /etc/sudoers.d/.slices-student.new /etc/sudoers.d/slices-student",
        ]
    );
    // Files are written from inside the VE, through tee's standard input; nothing on the host.
    let stdin_of = |args: &str| {
        runner
            .calls
            .lock()
            .unwrap()
            .iter()
            .find(|(_, a, _)| a.join(" ") == args)
            .and_then(|(_, _, stdin)| stdin.clone())
    };
    assert_eq!(
        stdin_of("exec2 101 runuser -u alice -- tee /home/alice/.ssh/.authorized_keys.slices"),
        Some(format!("{KEY}\n"))
    );
    assert_eq!(
        stdin_of("exec2 101 tee /etc/sudoers.d/.slices-student.new"),
        Some("alice ALL=(ALL:ALL) NOPASSWD: ALL\n".into())
    );

    runner.calls.lock().unwrap().clear();
    runner.answer(
        "vzctl",
        "status 101",
        out("CTID 101 exist mounted running", 0),
    );
    let big = Limits {
        memory_mb: 1024,
        memory_limit_mb: 2048,
        processes: 500,
        disk_mb: 10240,
        cpu_shares: 2000,
    };
    assert_eq!(agent.handle(Command::SetLimits(s.id, big)).code, 0);
    assert_eq!(agent.handle(Command::StopEnv(s.id)).code, 0);
    assert_eq!(agent.handle(Command::DestroyEnv(s.id)).code, 0);
    assert_eq!(
        runner.lines(),
        vec![
            "vzctl set 101 --privvmpages 262144:524288 --numproc 500:500 --cpuunits 2000 --diskspace 10485760:10485760 --save",
            "vzctl status 101",
            "vzctl stop 101",
            "vzctl status 101",
            "vzctl stop 101",
            "vzctl destroy 101",
        ]
    );
}

#[test]
fn root_in_the_ve_follows_the_plan_and_a_template_without_sudo_is_a_clear_error() {
    let (_dir, runner, vz) = agent();
    let mut s = spec(101, "10.77.0.11");
    s.root = false;
    assert_eq!(vz.handle(Command::CreateEnv(Box::new(s.clone()))).code, 0);
    runner.answer(
        "vzctl",
        "status 101",
        out("CTID 101 exist unmounted down", 0),
    );
    runner.calls.lock().unwrap().clear();
    let r = vz.handle(Command::StartEnv(s.id));
    assert_eq!(r.code, 0, "{}", r.text());
    let lines = runner.lines();
    assert_eq!(
        lines.last().unwrap(),
        "vzctl exec2 101 rm -f /etc/sudoers.d/slices-student"
    );
    assert!(!lines
        .iter()
        .any(|l| l.contains("NOPASSWD") || l.contains("tee /etc/sudoers")));

    let (_dir2, runner, vz) = agent();
    let s = spec(101, "10.77.0.11");
    vz.handle(Command::CreateEnv(Box::new(s.clone())));
    runner.answer(
        "vzctl",
        "status 101",
        out("CTID 101 exist unmounted down", 0),
    );
    runner.answer("vzctl", "exec2 101 test -x /usr/bin/sudo", out("", 1));
    let r = vz.handle(Command::StartEnv(s.id));
    assert_ne!(r.code, 0);
    assert!(r.text().contains("has no sudo"), "{}", r.text());
}

#[test]
fn usage_reads_the_beancounters_and_failures_carry_stderr() {
    let (_dir, runner, agent) = agent();
    let s = spec(101, "10.77.0.11");
    assert_eq!(
        agent.handle(Command::CreateEnv(Box::new(s.clone()))).code,
        0
    );
    let r = agent.handle(Command::Usage(Some(s.id)));
    let counters = r.returned[0]["counters"].as_array().unwrap().clone();
    let priv_ = counters
        .iter()
        .find(|c| c["resource"] == "privvmpages")
        .unwrap();
    assert_eq!(
        priv_["failcnt"], 36,
        "the seed's sample: not enough to run rails"
    );
    assert_eq!(priv_["barrier"], 131072);

    runner.answer(
        "vzctl",
        "status 101",
        Output {
            code: 1,
            stdout: String::new(),
            stderr: "Unable to open /etc/vz/conf/101.conf\nContainer config file does not exist"
                .into(),
        },
    );
    let r = agent.handle(Command::StartEnv(s.id));
    assert_eq!(r.code, 1);
    assert_eq!(r.returned[0], "vzctl status failed (exit 1)");
    assert_eq!(
        r.returned[2], "Container config file does not exist",
        "stderr comes back line by line"
    );
}

/// The seed's own `create_env [id, template, username]` runs the seed's own commands on
/// OpenVZ: `vzctl create id --ostemplate template`, then the settings the agent chose, then
/// `vzctl start id`.
#[test]
fn the_seeds_create_env_runs_vzctl_create_then_start() {
    let (_dir, runner, agent) = agent();
    // The host's answers: made and down, so it is started (the user exists already).
    runner.answer(
        "vzctl",
        "status 101",
        out("CTID 101 exist unmounted down", 0),
    );
    let r = agent.handle(Command::CreateEnvAsSeed {
        id: slices::domain::VeId::new(101).unwrap(),
        template: slices::domain::TemplateName::parse(TEMPLATE).unwrap(),
        username: slices::domain::Username::parse("alice").unwrap(),
    });
    assert_eq!(r.code, 0, "{}", r.text());
    assert_eq!(r.returned[0], "created");
    let lines = runner.lines();
    assert!(
        lines
            .iter()
            .any(|l| l == &format!("vzctl create 101 --ostemplate {TEMPLATE}")),
        "{lines:#?}"
    );
    let create = lines
        .iter()
        .position(|l| l.starts_with("vzctl create 101"))
        .unwrap();
    let start = lines
        .iter()
        .position(|l| l == "vzctl start 101")
        .unwrap_or_else(|| panic!("vzctl start 101 in {lines:#?} ({})", r.text()));
    assert!(create < start);
    assert!(
        lines.iter().any(|l| l.contains("--hostname alice")),
        "hostname = username: {lines:#?}"
    );
}

/// The archive of /home on OpenVZ: a running VE packs and unpacks its own /home (`vzctl
/// exec2` with the archive as a file on standard output or input); a stopped one is mounted,
/// packed from the host without following a link, and unmounted.
#[test]
fn home_archives_run_tar_in_the_ve_or_on_its_mounted_files() {
    let (dir, runner, agent) = agent();
    let s = spec(101, "10.77.0.11");
    assert_eq!(
        agent.handle(Command::CreateEnv(Box::new(s.clone()))).code,
        0
    );
    runner.answer(
        "vzctl",
        "status 101",
        out("CTID 101 exist mounted running", 0),
    );
    runner.calls.lock().unwrap().clear();
    let r = agent.handle(Command::ExportHome(s.id));
    assert_eq!(r.code, 0, "{}", r.text());
    assert_eq!(
        runner.lines(),
        vec![
            "vzctl status 101".to_string(),
            // Compressed by the agent on the way to its file.
            "vzctl exec2 101 tar --create --numeric-owner --one-file-system --directory /home . |"
                .to_string(),
        ]
    );
    // Stopped: mounted, packed from the host (here its /home is a link: refused), unmounted.
    runner.answer(
        "vzctl",
        "status 101",
        out("CTID 101 exist unmounted down", 0),
    );
    let root = dir.path().join("root/101");
    std::fs::create_dir_all(&root).unwrap();
    std::os::unix::fs::symlink("/etc", root.join("home")).unwrap();
    runner.calls.lock().unwrap().clear();
    let r = agent.handle(Command::ExportHome(s.id));
    assert_eq!(r.code, slices::slave_link::code::FAILED);
    assert!(r.text().contains("not a folder"), "{}", r.text());
    assert_eq!(
        runner.lines(),
        vec!["vzctl status 101", "vzctl mount 101", "vzctl umount 101"]
    );
}

/// Snapshots on OpenVZ are ploop snapshots of the disk, known to vzctl by a UUID that Slices
/// makes from the VE and the name: taken while the VE runs (no memory dump), listed (only
/// Slices' own), restored with the VE stopped and started again, deleted.
#[test]
fn snapshots_are_ploop_snapshots_by_a_uuid_of_their_own() {
    use slices::agent::vzctl::Vzctl;
    use slices::domain::SnapshotName;
    let (_dir, runner, agent) = agent();
    let s = spec(101, "10.77.0.11");
    assert_eq!(
        agent.handle(Command::CreateEnv(Box::new(s.clone()))).code,
        0
    );
    let name = SnapshotName::parse("s20261203-221501").unwrap();
    let uuid = Vzctl::snapshot_uuid(s.id, &name);
    assert_eq!(uuid.len(), 38, "{{8-4-4-4-12}}: {uuid}");
    assert_ne!(
        uuid,
        Vzctl::snapshot_uuid(slices::domain::VeId::new(102).unwrap(), &name),
        "another VE's snapshot of the same name is another"
    );
    let listed = format!(
        "{uuid} s20261203-221501 2026-12-03 22:15:01\n\
         {{00000000-0000-0000-0000-000000000000}} by-hand 2026-12-01 10:00:00\n"
    );
    runner.answer(
        "vzctl",
        "snapshot-list 101 -H -o uuid,name,date",
        out("", 0),
    );
    runner.calls.lock().unwrap().clear();
    let r = agent.handle(Command::Snapshot(s.id, name.clone()));
    // The list is read before (no such name yet) and after (what was made): the recorder
    // answers both with the empty list, so the agent says the snapshot was not kept.
    assert_eq!(
        runner.lines()[..2],
        [
            "vzctl snapshot-list 101 -H -o uuid,name,date".to_string(),
            format!("vzctl snapshot 101 --id {uuid} --name s20261203-221501 --skip-suspend --skip-config"),
        ]
    );
    assert_ne!(r.code, 0, "{}", r.text());
    runner.answer(
        "vzctl",
        "snapshot-list 101 -H -o uuid,name,date",
        out(&listed, 0),
    );
    let r = agent.handle(Command::ListSnapshots(s.id));
    assert_eq!(r.code, 0, "{}", r.text());
    assert_eq!(r.returned.len(), 1, "only Slices' own: {}", r.text());
    assert_eq!(r.returned[0]["name"], "s20261203-221501");
    assert_eq!(r.returned[0]["created"], 1_796_336_101);
    // Restore: stopped first (it runs), switched, its plan put back, started again.
    runner.answer(
        "vzctl",
        "status 101",
        out("CTID 101 exist mounted running", 0),
    );
    runner.calls.lock().unwrap().clear();
    let r = agent.handle(Command::RestoreSnapshot(s.id, name.clone()));
    assert_eq!(r.code, 0, "{}", r.text());
    let lines = runner.lines();
    let at = |l: &str| {
        lines
            .iter()
            .position(|x| x == l)
            .unwrap_or_else(|| panic!("no `{l}` in {lines:#?}"))
    };
    assert!(
        at("vzctl stop 101")
            < at(&format!(
                "vzctl snapshot-switch 101 --id {uuid} --skip-resume"
            ))
    );
    // Started again (the recorder always says "running", so the start only sees to the
    // user and keys, after the switch).
    assert!(
        at(&format!(
            "vzctl snapshot-switch 101 --id {uuid} --skip-resume"
        )) < at("vzctl exec2 101 id -u alice")
    );
    runner.calls.lock().unwrap().clear();
    let r = agent.handle(Command::DropSnapshot(s.id, name));
    assert_eq!(r.text(), "dropped");
    assert!(runner
        .lines()
        .contains(&format!("vzctl snapshot-delete 101 --id {uuid}")));
    // A name nobody took is absent, and nothing is deleted.
    runner.calls.lock().unwrap().clear();
    let r = agent.handle(Command::DropSnapshot(
        s.id,
        SnapshotName::parse("never").unwrap(),
    ));
    assert_eq!(r.text(), "absent");
    assert!(!runner.lines().iter().any(|l| l.contains("snapshot-delete")));
}
