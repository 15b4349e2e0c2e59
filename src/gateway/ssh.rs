//! The SSH gateway target: a real host, reached with ssh2 (libssh2) as root (or an account
//! with password-less sudo), with the master's key and the host key pinned.
//!
//! Everything runs through one helper script (`helper.sh`, shipped in the binary): as root it
//! is sent inline (`sh -c HELPER slices-gateway OP ARGS`); as another account the installed
//! copy runs through `sudo -n`, so that account can do nothing else as root. The arguments
//! are checked types (usernames, paths from the config), each quoted as one word, and checked
//! again by the helper; nothing typed by a user is ever part of a command string. A read is
//! one command (accounts, a tar of the users folder without private keys, the map); an apply
//! is one command whose standard input is a tar of the files to write (owners by name, exact
//! modes), the map among them, renamed over the old one.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use base64::Engine as _;

use super::{
    Actual, ActualUser, Applied, Batch, RemotePath, Settings, Target, TargetSpec, UserFile,
};
use crate::domain::Username;

pub struct SshTarget {
    sess: ssh2::Session,
    settings: Settings,
    /// Logged in as another account than root: the helper runs through `sudo -n`.
    sudo: bool,
    helper: String,
}

/// Output of one remote command.
struct Output {
    code: i32,
    stdout: Vec<u8>,
    stderr: String,
}

/// One shell word for any text: bare when plain, else single-quoted.
pub fn quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'_' | b'.' | b'/' | b'-' | b'=' | b':' | b'@' | b'%' | b'+' | b','
                )
        });
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The fingerprint `ssh-keygen -l` prints for a host key.
fn fingerprint(sess: &ssh2::Session) -> anyhow::Result<String> {
    let hash = sess
        .host_key_hash(ssh2::HashType::Sha256)
        .ok_or_else(|| anyhow!("the gateway sent no host key"))?;
    Ok(format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(hash)
    ))
}

/// The helper script for a gateway whose users folder and map file are these (written into
/// it: the helper takes no path from its caller), with its version (a hash of that text)
/// filled in. A helper made for other folders has another version, which the master refuses.
pub fn helper(users_dir: &RemotePath, map_file: &RemotePath, sshd_config: &RemotePath) -> String {
    use sha2::{Digest, Sha256};
    // Checked paths: letters, digits, `/`, `.`, `_`, `-` only, so safe in single quotes.
    let text = HELPER
        .replace("@USERS_DIR@", users_dir.as_str())
        .replace("@MAP_FILE@", map_file.as_str())
        .replace("@SSHD_CONFIG@", sshd_config.as_str());
    let digest = Sha256::digest(text.as_bytes());
    let version: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    text.replace("@VERSION@", &version)
}

const HELPER: &str = include_str!("helper.sh");

/// The block the helper keeps at the end of the gateway's sshd configuration (taken from the
/// helper itself, so there is one copy): slice users may not forward ports, agents, X11 or
/// tunnels, nor run `~/.ssh/rc`.
pub fn sshd_block() -> String {
    let start = HELPER
        .find("cat <<'BLOCK'\n")
        .map(|i| i + "cat <<'BLOCK'\n".len())
        .expect("the helper holds the sshd block");
    let len = HELPER[start..]
        .find("\nBLOCK\n")
        .expect("the sshd block ends");
    format!("{}\n", &HELPER[start..start + len])
}

/// The sudoers line that lets `account` run the installed helper's verbs, and nothing else.
pub fn sudoers_line(account: &str, helper: &RemotePath) -> String {
    let h = helper.as_str();
    format!(
        "{account} ALL=(root) NOPASSWD: {h} version, {h} read, {h} read *, {h} apply, {h} apply *"
    )
}

fn helper_version(text: &str) -> String {
    text.lines()
        .skip_while(|l| !l.starts_with("version)"))
        .nth(1)
        .and_then(|l| l.trim().strip_prefix("echo \""))
        .and_then(|l| l.strip_suffix('"'))
        .unwrap_or("")
        .to_string()
}

/// The host key fingerprint the gateway offers (no log-in), for staff to compare and accept.
pub fn offered_host_key(settings: &Settings) -> anyhow::Result<String> {
    let TargetSpec::Ssh { host, port, .. } = &settings.target else {
        bail!("not an ssh gateway target");
    };
    let addr = (host.as_str(), *port)
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve the gateway {host}"))?
        .next()
        .ok_or_else(|| anyhow!("the gateway {host} has no address"))?;
    let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        .with_context(|| format!("cannot reach the gateway at {addr}"))?;
    let mut sess = ssh2::Session::new()?;
    sess.method_pref(ssh2::MethodType::HostKey, "ssh-ed25519")?;
    sess.set_tcp_stream(tcp);
    sess.set_timeout(20_000);
    sess.handshake()
        .with_context(|| format!("SSH handshake with the gateway {addr} failed"))?;
    fingerprint(&sess)
}

impl SshTarget {
    pub fn connect(settings: &Settings) -> anyhow::Result<SshTarget> {
        let TargetSpec::Ssh { user, host, port } = &settings.target else {
            bail!("not an ssh gateway target");
        };
        super::master_key(settings)?;
        let addr = (host.as_str(), *port)
            .to_socket_addrs()
            .with_context(|| format!("cannot resolve the gateway {host}"))?
            .next()
            .ok_or_else(|| anyhow!("the gateway {host} has no address"))?;
        let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
            .with_context(|| format!("cannot reach the gateway at {addr}"))?;
        // Many small requests go one after another: without this, Nagle's algorithm and
        // delayed ACKs cost ~40 ms each (seen: 90 ms per command, 5 ms with it).
        tcp.set_nodelay(true)?;
        let mut sess = ssh2::Session::new()?;
        // The key pinned is the gateway's ed25519 host key, whatever else it offers.
        sess.method_pref(ssh2::MethodType::HostKey, "ssh-ed25519")?;
        sess.set_tcp_stream(tcp);
        sess.set_timeout(120_000);
        sess.handshake()
            .with_context(|| format!("SSH handshake with the gateway {addr} failed"))?;
        let seen = fingerprint(&sess)?;
        match &settings.host_key {
            None => bail!(
                "the gateway's host key is not pinned. It offered {seen}: if that is the key \
                 `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` prints on the gateway, \
                 set gateway_host_key = \"{seen}\""
            ),
            Some(k) if *k != seen => bail!(
                "the gateway's host key has changed: expected {k}, offered {seen}. Nothing was \
                 sent. If the gateway was reinstalled, check the key on it and update \
                 gateway_host_key"
            ),
            Some(_) => {}
        }
        sess.userauth_pubkey_file(user, None, &settings.key_file, None)
            .with_context(|| {
                format!(
                    "the gateway refused {user} with the key {}: add the line `slices gateway \
                     key` prints to ~{user}/.ssh/authorized_keys on the gateway",
                    settings.key_file.display()
                )
            })?;
        let target = SshTarget {
            sess,
            settings: settings.clone(),
            sudo: user != "root",
            helper: helper(
                &settings.users_dir,
                &settings.map_file,
                &settings.sshd_config,
            ),
        };
        if target.sudo {
            // Another account runs the installed helper through sudo: it must be this one.
            let out = target.helper_run("version", &[], b"")?;
            let want = helper_version(&target.helper);
            let have = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if out.code != 0 || have != want {
                let helper = &settings.helper;
                let line = sudoers_line(user, helper);
                let state = if have.is_empty() {
                    "missing or not allowed".to_string()
                } else {
                    format!("version {have}")
                };
                let why = out.stderr.trim();
                bail!(
                    "the helper {helper} on the gateway is {state} (this master needs version \
                     {want}): install it as root with `slices gateway helper > {helper}; chmod \
                     755 {helper}`, and let {user} run it: `{line}` in /etc/sudoers.d/slices \
                     ({why})"
                );
            }
        }
        Ok(target)
    }

    /// Runs a helper operation: inline as root, else the installed copy through sudo.
    fn helper_run(&self, op: &str, args: &[&str], stdin: &[u8]) -> anyhow::Result<Output> {
        let mut argv: Vec<&str> = if self.sudo {
            vec!["sudo", "-n", self.settings.helper.as_str()]
        } else {
            vec!["sh", "-c", &self.helper, "slices-gateway"]
        };
        argv.push(op);
        argv.extend_from_slice(args);
        self.exec(&argv, stdin)
    }

    /// Like `helper_run`, but a non-zero exit is an error that carries the helper's message.
    fn helper_ok(
        &self,
        what: &str,
        op: &str,
        args: &[&str],
        stdin: &[u8],
    ) -> anyhow::Result<Output> {
        let out = self.helper_run(op, args, stdin)?;
        if out.code != 0 {
            bail!(
                "{what} on the gateway failed (exit {}): {}",
                out.code,
                out.stderr.trim()
            );
        }
        Ok(out)
    }

    fn exec(&self, argv: &[&str], stdin: &[u8]) -> anyhow::Result<Output> {
        let cmd = argv.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" ");
        let mut ch = self.sess.channel_session()?;
        ch.exec(&cmd)?;
        if !stdin.is_empty() {
            ch.write_all(stdin)?;
        }
        ch.send_eof()?;
        let mut stdout = Vec::new();
        ch.read_to_end(&mut stdout)?;
        let mut stderr = String::new();
        ch.stderr().read_to_string(&mut stderr)?;
        ch.wait_close()?;
        Ok(Output {
            code: ch.exit_status()?,
            stdout,
            stderr,
        })
    }
}

/// Above this many users a run reads the whole gateway once rather than each user.
const READ_EACH_UP_TO: usize = 8;

impl Target for SshTarget {
    fn read(&mut self, only: Option<&[Username]>) -> anyhow::Result<Actual> {
        match only {
            None => self.read_one(None),
            Some(us) if us.len() <= READ_EACH_UP_TO => {
                let mut actual = Actual {
                    accounts_managed: true,
                    ..Actual::default()
                };
                for u in us {
                    let one = self.read_one(Some(u))?;
                    actual.users.extend(one.users);
                    (actual.map, actual.sshd) = (one.map, one.sshd);
                }
                Ok(actual)
            }
            Some(us) => {
                let mut actual = self.read_one(None)?;
                actual
                    .users
                    .retain(|name, _| us.iter().any(|u| u.as_str() == name));
                Ok(actual)
            }
        }
    }

    fn apply(&mut self, batch: &Batch) -> anyhow::Result<Applied> {
        self.apply_batch(batch)
    }
}

impl SshTarget {
    fn read_one(&mut self, only: Option<&Username>) -> anyhow::Result<Actual> {
        let dir = self.settings.users_dir.as_str().to_string();
        let args: Vec<&str> = only.map(|u| u.as_str()).into_iter().collect();
        let out = self.helper_ok("reading", "read", &args, b"")?;
        let mut actual = Actual {
            accounts_managed: true,
            ..Actual::default()
        };
        let mut rest = out.stdout.as_slice();
        for want in ["passwd", "tar", "map", "sshd", "hops"] {
            let nl = rest
                .iter()
                .position(|&b| b == b'\n')
                .ok_or_else(|| anyhow!("the helper's answer is cut short"))?;
            let head = String::from_utf8_lossy(&rest[..nl]).into_owned();
            let (name, len) = head
                .split_once(' ')
                .ok_or_else(|| anyhow!("the helper's answer is not understood: {head}"))?;
            let len: usize = len.trim().parse()?;
            let body = rest
                .get(nl + 1..nl + 1 + len)
                .ok_or_else(|| anyhow!("the helper's answer is cut short"))?;
            rest = &rest[nl + 1 + len..];
            match (want, name) {
                ("passwd", "passwd") => {
                    for line in String::from_utf8_lossy(body).lines() {
                        let f: Vec<&str> = line.split(':').collect();
                        if f.len() == 7 && f[6] == format!("{dir}/{}.sh", f[0]) {
                            actual.users.entry(f[0].to_string()).or_default().account = true;
                        }
                    }
                }
                ("tar", "tar") => read_tar(body, &mut actual.users)?,
                ("map", "map") => actual.map = Some(String::from_utf8_lossy(body).into_owned()),
                ("map", "nomap") => {}
                ("sshd", "sshd") => actual.sshd = Some(String::from_utf8_lossy(body).into_owned()),
                // No sshd configuration where the settings say: nothing to compare.
                ("sshd", "nosshd") => {}
                // "NAME HEADER" for each private hop key there: the clear header of the key
                // file, which names its public half (never the key itself).
                ("hops", "hops") => {
                    for line in String::from_utf8_lossy(body).lines() {
                        if let Some((name, header)) = line.split_once(' ') {
                            if let Some(u) = actual.users.get_mut(name) {
                                u.hop_private = super::keys::public_of_private_header(header);
                            }
                        }
                    }
                }
                _ => bail!("the helper's answer is not understood: {head}"),
            }
        }
        Ok(actual)
    }

    fn apply_batch(&mut self, batch: &Batch) -> anyhow::Result<Applied> {
        let mut b = tar::Builder::new(Vec::new());
        let mtime = crate::store::now().max(0) as u64;
        let mut entry = |path: &str, owner: &str, mode: u32, bytes: &[u8]| -> anyhow::Result<()> {
            let mut h = tar::Header::new_gnu();
            h.set_size(bytes.len() as u64);
            h.set_mode(mode);
            h.set_mtime(mtime);
            h.set_entry_type(tar::EntryType::Regular);
            h.set_username(owner)?;
            h.set_groupname(owner)?;
            h.set_uid(0);
            h.set_gid(0);
            b.append_data(&mut h, path, bytes)?;
            Ok(())
        };
        for (u, f, bytes) in &batch.files {
            let path = match f {
                UserFile::Script => format!("{u}.sh"),
                other => format!("{u}/{}", other.in_home()),
            };
            let owner = if f.user_owned() { u.as_str() } else { "root" };
            entry(&path, owner, f.mode(), bytes)?;
        }
        if let Some(text) = &batch.map {
            entry(".slices-map.new", "root", 0o644, text.as_bytes())?;
        }
        let data = b.into_inner()?;
        let mut args: Vec<String> = Vec::new();
        args.extend(batch.add.iter().map(|u| format!("+{u}")));
        args.extend(batch.remove.iter().map(|u| format!("-{u}")));
        if batch.sshd {
            args.push("sshd".to_string());
        }
        // Thousands of new users fit one command line many times over (names are short),
        // but keep each well under the kernel's 128 KiB per argument string.
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.helper_ok("applying", "apply", &args, &data)?;
        Ok(Applied {
            clashes: String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| l.strip_prefix("clash "))
                .map(str::to_string)
                .collect(),
        })
    }
}

/// Reads a tar of the users folder into the users' files.
fn read_tar(
    bytes: &[u8],
    users: &mut std::collections::BTreeMap<String, ActualUser>,
) -> anyhow::Result<()> {
    if bytes.is_empty() {
        return Ok(());
    }
    let mut archive = tar::Archive::new(bytes);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.to_string_lossy().into_owned();
        let path = path
            .trim_start_matches("./")
            .trim_end_matches('/')
            .to_string();
        let is_dir = entry.header().entry_type().is_dir();
        let mut text = String::new();
        if !is_dir {
            // Files we write are small; anything bigger is not ours to compare.
            if entry.size() > 1 << 20 {
                continue;
            }
            entry.read_to_string(&mut text).ok();
        }
        let parts: Vec<&str> = path.split('/').collect();
        match parts.as_slice() {
            [file] if file.ends_with(".sh") && !is_dir => {
                let name = file.trim_end_matches(".sh");
                users.entry(name.to_string()).or_default().script = Some(text);
            }
            [name] if is_dir && !name.is_empty() => {
                users.entry(name.to_string()).or_default().home = true;
            }
            [name, ".ssh", "authorized_keys"] => {
                users.entry(name.to_string()).or_default().keys = Some(text);
            }
            [name, ".ssh", "slice_ed25519.pub"] => {
                users.entry(name.to_string()).or_default().hop_public = Some(text);
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::quote;

    #[test]
    fn quoting_makes_one_word() {
        assert_eq!(quote("alice"), "alice");
        assert_eq!(quote("/home/users"), "/home/users");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's; rm -rf /"), r"'it'\''s; rm -rf /'");
        assert_eq!(quote("$(id)"), "'$(id)'");
    }
}
