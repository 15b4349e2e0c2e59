//! The text of the files the gateway holds. Every value in them is a checked type (username,
//! IPv4 address, slice id, a path of plain characters), so none can break out of its place.

use std::fmt::Write as _;

use super::{Settings, UserFile, Want};
use crate::domain::{PrivateIp, SshPublicKey};

/// The login shell of a user's gateway account: the seed's `/home/users/USER.sh`.
///
/// sshd runs a login shell as `SHELL -c COMMAND` when the client gives a command (`ssh gw
/// CMD`, scp, and sftp when the gateway's sftp subsystem is an external program), and as
/// `SHELL` for an interactive login. Both become one `ssh` to the slice, whose exit status is
/// the session's. `--` ends ssh's options before the destination, so a command the student
/// types (even one starting with `-o`) is only ever the remote command, run in their slice.
pub fn login_script(s: &Settings, w: &Want) -> String {
    let user = &w.username;
    let key = s.file(user, UserFile::HopPrivate);
    let known = format!("{}/.ssh/known_hosts", s.home(user));
    let dest = format!("{user}@{}", w.ip);
    let opts = format!(
        "-q -i {key} -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=accept-new \
         -o UserKnownHostsFile={known} -o HostKeyAlias=slice-{id} -o LogLevel=ERROR",
        id = w.slice_id
    );
    let mut t = String::new();
    let _ = writeln!(t, "#!/bin/sh");
    let _ = writeln!(
        t,
        "# Written by Slices; do not edit (the next reconcile puts it back).\n\
         # Forwards {user}'s logins to slice {} at {}.",
        w.slice_id, w.ip
    );
    let _ = writeln!(t, "set -f");
    let _ = writeln!(t, "tty=-T; [ -t 0 ] && tty=-t");
    let _ = writeln!(t, "if [ \"$#\" -ge 2 ] && [ \"$1\" = \"-c\" ]; then");
    let _ = writeln!(t, "    /usr/bin/ssh {opts} $tty -- {dest} \"$2\"");
    let _ = writeln!(t, "else");
    let _ = writeln!(t, "    /usr/bin/ssh {opts} $tty -- {dest}");
    let _ = writeln!(t, "fi");
    // ssh says 255 when it could not reach the slice (a command's own codes pass through).
    let _ = writeln!(t, "rc=$?");
    let _ = writeln!(t, "if [ \"$rc\" = 255 ]; then");
    let where_ = if s.dashboard.is_empty() {
        "from the web interface".to_string()
    } else {
        format!("at {}", s.dashboard)
    };
    let _ = writeln!(
        t,
        "    echo 'slices: your slice does not answer: it is stopped or its node is down. Start it {where_}, or ask the lab staff.' >&2"
    );
    let _ = writeln!(t, "fi");
    let _ = writeln!(t, "exit \"$rc\"");
    t
}

/// The student's keys, one per line (empty: nobody can log in yet).
pub fn authorized_keys(keys: &[SshPublicKey]) -> String {
    let mut t =
        String::from("# Written by Slices from the keys in the web interface; do not edit.\n");
    for k in keys {
        let _ = writeln!(t, "{k}");
    }
    t
}

/// Apache's RewriteMap: `NAME PRIVATE_IP` per line, sorted by name.
pub fn map_text(map: &[(String, PrivateIp)]) -> String {
    let mut t =
        String::from("# Written by Slices: NAME.<domain> -> the slice's address. Do not edit.\n");
    for (name, ip) in map {
        let _ = writeln!(t, "{name} {ip}");
    }
    t
}

/// The Apache lines that send `NAME.<domain>` to the slice the map names (mod_rewrite and
/// mod_proxy_http; the seed's RewriteMap, with unknown names answered 404 instead of proxied
/// to nowhere). `slices gateway apache` prints them for the gateway's site configuration.
pub fn apache_config(domain: &crate::domain::DnsName, map_file: &super::RemotePath) -> String {
    let escaped = domain.as_str().replace('.', "\\.");
    format!(
        "# NAME.{domain} -> the web server of NAME's slice (written by `slices gateway apache`).\n\
         RewriteEngine On\n\
         RewriteMap slices \"txt:{map_file}\"\n\
         RewriteMap slices_lc int:tolower\n\
         RewriteCond %{{HTTP_HOST}} ^([a-z0-9-]+)\\.{escaped}(:[0-9]+)?$ [NC]\n\
         RewriteCond ${{slices:${{slices_lc:%1}}|NOTFOUND}} !=NOTFOUND\n\
         RewriteRule ^/(.*)$ http://${{slices:${{slices_lc:%1}}}}/$1 [P,L]\n\
         RewriteCond %{{HTTP_HOST}} ^([a-z0-9-]+)\\.{escaped}(:[0-9]+)?$ [NC]\n\
         RewriteRule ^ - [R=404,L]\n\
         ProxyPreserveHost On\n"
    )
}

/// A DNS label fit for a map key: `[a-z0-9-]`, 1 to 63, no leading or trailing `-`.
pub fn valid_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && !s.starts_with('-')
        && !s.ends_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Username;

    fn settings() -> Settings {
        Settings {
            target: super::super::TargetSpec::Local("/tmp/x".into()),
            users_dir: super::super::RemotePath::parse("/home/users").unwrap(),
            map_file: super::super::RemotePath::parse("/etc/apache2/openvz.map").unwrap(),
            sshd_config: super::super::RemotePath::parse("/etc/ssh/sshd_config").unwrap(),
            host_key: None,
            host_key_source: "",
            key_file: "/tmp/k".into(),
            helper: super::super::RemotePath::parse("/usr/local/sbin/slices-gateway").unwrap(),
            dashboard: super::super::settings::printable_url("https://slices.example.edu"),
        }
    }

    #[test]
    fn script_forwards_to_the_slice_and_ends_options() {
        let w = Want {
            username: Username::parse("alice").unwrap(),
            slice_id: 42,
            ip: PrivateIp::parse("10.77.0.11").unwrap(),
            keys: vec![],
        };
        let t = login_script(&settings(), &w);
        assert!(t.starts_with("#!/bin/sh\n"));
        assert!(t.contains("-i /home/users/alice/.ssh/slice_ed25519"));
        assert!(t.contains("-- alice@10.77.0.11 \"$2\""));
        assert!(t.contains("HostKeyAlias=slice-42"));
        // Every ssh call ends its options before the destination.
        for line in t.lines().filter(|l| l.contains("/usr/bin/ssh")) {
            assert!(line.contains(" -- alice@10.77.0.11"), "{line}");
        }
        // A slice that does not answer gets one human line naming where to start it.
        assert!(
            t.contains(
                "it is stopped or its node is down. Start it at https://slices.example.edu/"
            ),
            "{t}"
        );
        // An address a script should not quote is left out.
        assert_eq!(
            super::super::settings::printable_url("https://x/'; rm -rf /"),
            ""
        );
        assert_eq!(super::super::settings::printable_url("http://a/$(id)"), "");
    }

    #[test]
    fn map_lines_and_labels() {
        let ip = PrivateIp::parse("10.77.0.9").unwrap();
        let t = map_text(&[("alice".into(), ip)]);
        assert!(t.ends_with("alice 10.77.0.9\n"));
        assert!(valid_label("web-1"));
        assert!(!valid_label("-x") && !valid_label("a b") && !valid_label("A"));
    }
}
