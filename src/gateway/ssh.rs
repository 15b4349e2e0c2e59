//! The SSH gateway target: a real host, reached with ssh2 (libssh2) as root (or an account
//! with password-less sudo), with the master's key and the host key pinned.
//!
//! Nothing typed by a user is ever part of a command string. Each command is a fixed script
//! run as `sh -c SCRIPT sh ARG...`, and the arguments (usernames, paths from the config) are
//! checked types, each quoted as one word. File contents travel on standard input: the files
//! of a whole plan as one tar stream (owners by name, modes exact), the map through a
//! temporary file renamed over the old one.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use base64::Engine as _;

use super::{Actual, ActualUser, Settings, Target, TargetSpec, UserFile};
use crate::domain::Username;

pub struct SshTarget {
    sess: ssh2::Session,
    settings: Settings,
    sudo: bool,
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

const READ_ALL: &str = r#"cd "$1" 2>/dev/null || exit 0
exec tar -cf - --ignore-failed-read --anchored --exclude=./*/.ssh/slice_ed25519 --exclude=./*/.ssh/known_hosts ."#;

const READ_ONE: &str = r#"cd "$1" 2>/dev/null || exit 0
exec tar -cf - --ignore-failed-read --no-recursion "./$2.sh" "./$2" "./$2/.ssh/authorized_keys" "./$2/.ssh/slice_ed25519.pub" 2>/dev/null"#;

const READ_MAP: &str = r#"[ -f "$1" ] || exit 3
exec cat -- "$1""#;

/// Makes accounts `$2...` with homes under `$1`. An existing account is used only if its
/// login shell is ours: Slices never takes over an account it did not make.
const ADD_USERS: &str = r#"d="$1"; shift
install -d -m 755 -o root -g root "$d" || exit 1
for u in "$@"; do
  if shell=$(getent passwd "$u" | cut -d: -f7) && [ -n "$shell" ]; then
    [ "$shell" = "$d/$u.sh" ] || { echo "the account $u exists on the gateway and is not one Slices made" >&2; exit 1; }
  else
    useradd -M -d "$d/$u" -s "$d/$u.sh" -p '*' -U -c "Slices user" "$u" || exit 1
  fi
  install -d -m 755 -o root -g root "$d/$u" "$d/$u/.ssh" || exit 1
  [ -e "$d/$u/.ssh/known_hosts" ] || install -m 600 -o "$u" -g "$(id -g "$u")" /dev/null "$d/$u/.ssh/known_hosts" || exit 1
done"#;

/// Removes user `$2` (only an account whose shell is ours) and its files under `$1`.
const REMOVE_USER: &str = r#"d="$1"; u="$2"
if [ "$(getent passwd "$u" | cut -d: -f7)" = "$d/$u.sh" ]; then
  pkill -KILL -u "$u" 2>/dev/null
  userdel -f "$u" || exit 1
fi
rm -rf -- "$d/$u" "$d/$u.sh""#;

const WRITE_FILES: &str = r#"exec tar -x -C "$1" -f -"#;

const WRITE_MAP: &str = r#"t="$1.slices-new"
cat > "$t" && chmod 644 "$t" && mv -f -- "$t" "$1""#;

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
        Ok(SshTarget {
            sess,
            settings: settings.clone(),
            sudo: user != "root",
        })
    }

    fn exec(&self, argv: &[&str], stdin: &[u8]) -> anyhow::Result<Output> {
        let mut cmd = String::new();
        if self.sudo {
            cmd.push_str("sudo -n ");
        }
        cmd.push_str(&argv.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" "));
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

    /// Runs a fixed script with arguments; a non-zero exit is an error with its stderr.
    fn script(
        &self,
        what: &str,
        script: &str,
        args: &[&str],
        stdin: &[u8],
    ) -> anyhow::Result<Output> {
        let mut argv = vec!["sh", "-c", script, "sh"];
        argv.extend_from_slice(args);
        let out = self.exec(&argv, stdin)?;
        if out.code != 0 && out.code != 3 {
            bail!(
                "{what} on the gateway failed (exit {}): {}",
                out.code,
                out.stderr.trim()
            );
        }
        Ok(out)
    }

    fn dir(&self) -> &str {
        self.settings.users_dir.as_str()
    }
}

impl Target for SshTarget {
    fn read(&mut self, only: Option<&Username>) -> anyhow::Result<Actual> {
        let dir = self.dir().to_string();
        let mut actual = Actual {
            accounts_managed: true,
            ..Actual::default()
        };
        // Accounts whose login shell is one of ours.
        let mut getent = vec!["getent", "passwd"];
        if let Some(u) = only {
            getent.push(u.as_str());
        }
        let out = self.exec(&getent, b"")?;
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() == 7 && f[6] == format!("{dir}/{}.sh", f[0]) {
                actual.users.entry(f[0].to_string()).or_default().account = true;
            }
        }
        let tar = match only {
            None => self.script("reading the users folder", READ_ALL, &[&dir], b"")?,
            Some(u) => self.script(
                "reading the user's files",
                READ_ONE,
                &[&dir, u.as_str()],
                b"",
            )?,
        };
        read_tar(&tar.stdout, &mut actual.users)?;
        let map = self.script(
            "reading the map",
            READ_MAP,
            &[self.settings.map_file.as_str()],
            b"",
        )?;
        if map.code == 0 {
            actual.map = Some(String::from_utf8_lossy(&map.stdout).into_owned());
        }
        Ok(actual)
    }

    fn add_users(&mut self, users: &[Username]) -> anyhow::Result<()> {
        let dir = self.dir().to_string();
        for chunk in users.chunks(200) {
            let mut args = vec![dir.as_str()];
            args.extend(chunk.iter().map(|u| u.as_str()));
            self.script("adding users", ADD_USERS, &args, b"")?;
        }
        Ok(())
    }

    fn remove_user(&mut self, user: &Username) -> anyhow::Result<()> {
        let dir = self.dir().to_string();
        self.script("removing a user", REMOVE_USER, &[&dir, user.as_str()], b"")?;
        Ok(())
    }

    fn write_files(&mut self, files: &[(Username, UserFile, Vec<u8>)]) -> anyhow::Result<()> {
        let mut b = tar::Builder::new(Vec::new());
        let mtime = crate::store::now().max(0) as u64;
        for (u, f, bytes) in files {
            let path = match f {
                UserFile::Script => format!("{u}.sh"),
                other => format!("{u}/{}", other.in_home()),
            };
            let mut h = tar::Header::new_gnu();
            h.set_size(bytes.len() as u64);
            h.set_mode(f.mode());
            h.set_mtime(mtime);
            h.set_entry_type(tar::EntryType::Regular);
            let owner = if f.user_owned() { u.as_str() } else { "root" };
            h.set_username(owner)?;
            h.set_groupname(owner)?;
            h.set_uid(0);
            h.set_gid(0);
            b.append_data(&mut h, &path, bytes.as_slice())?;
        }
        let data = b.into_inner()?;
        let dir = self.dir().to_string();
        self.script("writing files", WRITE_FILES, &[&dir], &data)?;
        Ok(())
    }

    fn write_map(&mut self, text: &str) -> anyhow::Result<()> {
        self.script(
            "writing the map",
            WRITE_MAP,
            &[self.settings.map_file.as_str()],
            text.as_bytes(),
        )?;
        Ok(())
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
