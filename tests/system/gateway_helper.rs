//! The gateway helper as the master's dedicated account runs it (`sudo -n`, allowed nothing
//! but the helper's verbs): hostile arguments and archives find no way to root, to a setuid
//! file, or to any file outside the helper's own folders.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::gateway_lab::Lab;
use crate::system::*;

/// Runs `sudo -n ARGV...` as the lab's dedicated account: (exit code, stderr).
fn sudo_as_admin(lab: &Lab, argv: &[&str], stdin: &[u8]) -> (i32, String) {
    let (code, _, err) = sudo_as_admin_out(lab, argv, stdin);
    (code, err)
}

/// The same, with standard output too: (exit code, stdout, stderr).
fn sudo_as_admin_out(lab: &Lab, argv: &[&str], stdin: &[u8]) -> (i32, String, String) {
    let mut child = Command::new("runuser")
        .args(["-u", &lab.admin, "--", "sudo", "-n"])
        .args(argv)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let _ = input.write_all(stdin);
    drop(input);
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// An archive entry: its path, type, mode, owner, bytes and (for links) target.
struct Entry<'a> {
    path: &'a str,
    kind: tar::EntryType,
    mode: u32,
    owner: &'a str,
    bytes: &'a [u8],
    link: Option<&'a str>,
}

fn file<'a>(path: &'a str, mode: u32, bytes: &'a [u8]) -> Entry<'a> {
    Entry {
        path,
        kind: tar::EntryType::Regular,
        mode,
        owner: "root",
        bytes,
        link: None,
    }
}

/// A tar made by hand, as an attacker holding the master's key would send it (the tar crate
/// refuses `..` in paths, so names are written into the header directly).
fn archive(entries: &[Entry<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        {
            let gnu = h.as_gnu_mut().unwrap();
            gnu.name[..e.path.len()].copy_from_slice(e.path.as_bytes());
        }
        h.set_size(e.bytes.len() as u64);
        h.set_mode(e.mode);
        h.set_entry_type(e.kind);
        h.set_username(e.owner).unwrap();
        h.set_groupname(e.owner).unwrap();
        h.set_uid(0);
        h.set_gid(0);
        if let Some(l) = e.link {
            h.set_link_name(l).unwrap();
        }
        h.set_cksum();
        b.append(&h, e.bytes).unwrap();
    }
    b.into_inner().unwrap()
}

fn mode_of(p: &Path) -> (u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::symlink_metadata(p).unwrap();
    (m.mode() & 0o7777, m.uid())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_helper_account_cannot_become_root_or_write_outside_its_folders() {
    let Some(_alone) = alone("gateway helper escalation").await else {
        return;
    };
    let lab = Lab::start();
    let helper = lab.dir.join("slices-gateway");
    let h = helper.to_str().unwrap();
    let users = lab.users();
    let passwd_before = std::fs::read_to_string("/etc/passwd").unwrap();
    let root_line = |p: &str| {
        p.lines()
            .find(|l| l.starts_with("root:"))
            .map(str::to_string)
    };

    // A student made the ordinary way: an account, a login script, keys.
    let u = "slgwh-alice";
    let script = format!("{u}.sh");
    let keys = format!("{u}/.ssh/authorized_keys");
    let good = archive(&[
        file(&script, 0o755, b"#!/bin/sh\nexit 0\n"),
        file(&keys, 0o644, b"ssh-ed25519 AAAA student\n"),
    ]);
    let (code, err) = sudo_as_admin(&lab, &[h, "apply", &format!("+{u}")], &good);
    assert_eq!(code, 0, "the ordinary apply: {err}");
    assert_eq!(mode_of(&users.join(&script)), (0o755, 0));
    assert_eq!(mode_of(&users.join(&keys)), (0o644, 0));

    // Paths from the caller are not taken any more: the old form is refused outright.
    for argv in [
        vec![h, "apply", "/etc", "/etc/passwd"],
        vec![h, "read", "/etc", "/etc/shadow"],
        vec![h, "apply", "+slgwh-x;id"],
    ] {
        let (code, err) = sudo_as_admin(&lab, &argv, b"");
        assert_ne!(code, 0, "{argv:?} was accepted");
        assert!(!err.is_empty(), "{argv:?} said nothing");
    }
    // An existing account that Slices did not make is never taken over: left out, and said.
    let (code, out, err) = sudo_as_admin_out(&lab, &[h, "apply", "+root"], b"");
    assert_eq!((code, out.trim()), (0, "clash root"), "{err}");
    // Nothing else may run as root: another verb, another program.
    for argv in [
        vec![h, "sh"],
        vec!["/bin/sh", "-c", "id"],
        vec!["/usr/bin/id"],
    ] {
        let (code, err) = sudo_as_admin(&lab, &argv, b"");
        assert_ne!(code, 0, "sudo let {argv:?} run: {err}");
    }

    // Hostile archives: each refused whole, nothing written.
    let pwned = Path::new("/etc/slices-helper-pwned");
    let _ = std::fs::remove_file(pwned);
    let escape = "../../../../../etc/slices-helper-pwned".to_string();
    let setuid = archive(&[file(&script, 0o4755, b"#!/bin/sh\n/bin/sh -p\n")]);
    let traversal = archive(&[file(&escape, 0o644, b"x\n")]);
    let symlink = archive(&[Entry {
        path: &keys,
        kind: tar::EntryType::Symlink,
        mode: 0o777,
        owner: "root",
        bytes: b"",
        link: Some("/etc/shadow"),
    }]);
    let hardlink = archive(&[Entry {
        path: &keys,
        kind: tar::EntryType::Link,
        mode: 0o644,
        owner: "root",
        bytes: b"",
        link: Some("/etc/shadow"),
    }]);
    let device = archive(&[Entry {
        path: &keys,
        kind: tar::EntryType::Char,
        mode: 0o666,
        owner: "root",
        bytes: b"",
        link: None,
    }]);
    let other_account = archive(&[file("root/.ssh/authorized_keys", 0o644, b"x\n")]);
    let unknown_file = archive(&[file(&format!("{u}/.bashrc"), 0o644, b"x\n")]);
    for (what, tar) in [
        ("a setuid script", &setuid),
        ("a path out of the folder", &traversal),
        ("a symbolic link", &symlink),
        ("a hard link", &hardlink),
        ("a device", &device),
        ("files for root", &other_account),
        ("a file the helper does not write", &unknown_file),
    ] {
        let (code, err) = sudo_as_admin(&lab, &[h, "apply"], tar);
        assert_ne!(code, 0, "{what} was accepted");
        assert!(err.contains("slices-gateway:"), "{what}: {err}");
    }
    assert!(!pwned.exists(), "a file was written outside the folder");
    assert!(!users.join("root").exists(), "files for root were written");
    assert!(!users.join(u).join(".bashrc").exists());
    assert_eq!(
        mode_of(&users.join(&script)),
        (0o755, 0),
        "the script was changed"
    );
    assert!(
        std::fs::symlink_metadata(users.join(&keys))
            .unwrap()
            .is_file(),
        "the keys became a link"
    );

    // Owners and modes are the helper's, never the archive's: a hop key sent as root-owned
    // 0644 lands as the student's, 0600; a script sent as the student's lands as root's.
    let hop = format!("{u}/.ssh/slice_ed25519");
    let claims = archive(&[
        Entry {
            owner: u,
            ..file(&script, 0o777, b"#!/bin/sh\nexit 0\n")
        },
        file(&hop, 0o644, b"-----BEGIN OPENSSH PRIVATE KEY-----\n"),
    ]);
    let (code, err) = sudo_as_admin(&lab, &[h, "apply"], &claims);
    assert_eq!(code, 0, "{err}");
    let alice_uid: u32 = sh("id", &["-u", u]).trim().parse().unwrap();
    assert_eq!(mode_of(&users.join(&script)), (0o755, 0));
    assert_eq!(mode_of(&users.join(&hop)), (0o600, alice_uid));

    // A student named like an account Slices did not make is left out, and said so; the
    // others in the same apply go ahead.
    let taken = "slgwh-taken";
    let _taken_account = HostAccount::make(taken);
    let bob = "slgwh-bob";
    let both = archive(&[
        file(&format!("{taken}.sh"), 0o755, b"#!/bin/sh\n"),
        file(&format!("{taken}/.ssh/authorized_keys"), 0o644, b"x\n"),
        file(&format!("{bob}.sh"), 0o755, b"#!/bin/sh\n"),
        file(&format!("{bob}/.ssh/authorized_keys"), 0o644, b"x\n"),
    ]);
    let (code, out, err) = sudo_as_admin_out(
        &lab,
        &[h, "apply", &format!("+{taken}"), &format!("+{bob}")],
        &both,
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), format!("clash {taken}"));
    assert!(
        users.join(format!("{bob}.sh")).is_file(),
        "the others go ahead"
    );
    assert!(
        !users.join(format!("{taken}.sh")).exists(),
        "no files for the clash"
    );
    assert!(!users.join(taken).exists());
    let shell = sh("getent", &["passwd", taken]);
    assert!(
        shell.trim().ends_with(":/bin/sh"),
        "the account is untouched: {shell}"
    );

    // No setuid or setgid file anywhere under the gateway's folders; root is as it was.
    let found = sh(
        "find",
        &[lab.dir.to_str().unwrap(), "-perm", "/6000", "-print"],
    );
    assert!(found.trim().is_empty(), "setuid files: {found}");
    let passwd_after = std::fs::read_to_string("/etc/passwd").unwrap();
    assert_eq!(root_line(&passwd_before), root_line(&passwd_after));
}
