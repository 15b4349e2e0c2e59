//! Where the gateway is and how the master reaches it: the settings, its paths, the target, the host key.

use std::fmt;
use std::path::PathBuf;

use anyhow::{anyhow, bail};
use rusqlite::Connection;

use super::*;
use crate::config::Config;
use crate::domain::Username;
use crate::store::Db;

/// A path on the gateway host: absolute, of plain characters only (it reaches command lines).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemotePath(String);

impl RemotePath {
    pub fn parse(s: &str) -> Result<RemotePath, String> {
        let ok_chars = s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'_' | b'-'));
        if !s.starts_with('/') || s.len() < 2 || s.len() > 200 || !ok_chars {
            return Err(format!(
                "`{s}` must be an absolute path of letters, digits, `/`, `.`, `_` and `-`"
            ));
        }
        if s.split('/').any(|part| part == ".." || part == ".") || s.ends_with('/') {
            return Err(format!(
                "`{s}` must not contain `.` or `..` parts or end in `/`"
            ));
        }
        Ok(RemotePath(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RemotePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where the gateway is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetSpec {
    /// Files under a folder of the master (DATA/gateway), no Unix accounts.
    Local(PathBuf),
    /// A host reached over SSH as `user` (root: it makes accounts).
    Ssh {
        user: String,
        host: String,
        port: u16,
    },
}

impl TargetSpec {
    pub fn parse(s: &str, data: &std::path::Path) -> Result<TargetSpec, String> {
        if s == "local" {
            return Ok(TargetSpec::Local(data.join("gateway")));
        }
        let rest = s.strip_prefix("ssh://").ok_or_else(|| {
            format!("gateway_target `{s}`: use `local` or `ssh://root@HOST[:PORT]`")
        })?;
        let (user, hostport) = rest
            .split_once('@')
            .ok_or_else(|| format!("gateway_target `{s}`: name the account, as ssh://root@HOST"))?;
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse::<u16>()
                    .map_err(|_| format!("gateway_target `{s}`: bad port `{p}`"))?,
            ),
            None => (hostport, 22),
        };
        let plain = |t: &str| {
            !t.is_empty()
                && t.len() <= 253
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        };
        if !plain(user) || !plain(host) {
            return Err(format!(
                "gateway_target `{s}`: the account and host are letters, digits, `.`, `-` and `_`"
            ));
        }
        Ok(TargetSpec::Ssh {
            user: user.into(),
            host: host.into(),
            port,
        })
    }
}

/// The gateway settings, checked.
#[derive(Debug, Clone)]
pub struct Settings {
    pub target: TargetSpec,
    pub users_dir: RemotePath,
    pub map_file: RemotePath,
    /// sshd's configuration file on the gateway (its Slices block).
    pub sshd_config: RemotePath,
    /// The pinned host key fingerprint (`SHA256:...`), if set.
    pub host_key: Option<String>,
    /// Where the pin comes from: the configuration, or staff who accepted it in the web
    /// interface (only when the configuration sets none).
    pub host_key_source: &'static str,
    /// The master's private key for the SSH target.
    pub key_file: PathBuf,
    /// Where the helper is installed on the gateway (used when not logging in as root).
    pub helper: RemotePath,
    /// The web interface's address, which the login shell names when a slice does not answer
    /// (empty when it has a character a shell script should not quote).
    pub dashboard: String,
}

/// The address as the login shell may print it (inside single quotes): printable ASCII
/// without quotes or backslashes, else nothing.
pub fn printable_url(url: &str) -> String {
    if !url.is_empty()
        && url.len() <= 200
        && url
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'\'' | b'"' | b'\\' | b'`' | b'$'))
    {
        format!("{url}/")
    } else {
        String::new()
    }
}

impl Settings {
    pub fn from_config(c: &Config) -> anyhow::Result<Settings> {
        let users_dir = RemotePath::parse(&c.gateway_users_dir)
            .map_err(|e| anyhow!("gateway_users_dir: {e}"))?;
        let map_file =
            RemotePath::parse(&c.gateway_map_file).map_err(|e| anyhow!("gateway_map_file: {e}"))?;
        let sshd_config = RemotePath::parse(&c.gateway_sshd_config)
            .map_err(|e| anyhow!("gateway_sshd_config: {e}"))?;
        let host_key = match c.gateway_host_key.trim() {
            "" => None,
            k if valid_fingerprint(k) => Some(k.to_string()),
            k => bail!(
                "gateway_host_key `{k}`: give the SHA256:... fingerprint (ssh-keygen -lf KEY)"
            ),
        };
        Ok(Settings {
            target: TargetSpec::parse(&c.gateway_target, &c.data).map_err(|e| anyhow!(e))?,
            users_dir,
            map_file,
            sshd_config,
            host_key_source: if host_key.is_some() {
                "the configuration"
            } else {
                ""
            },
            host_key,
            helper: RemotePath::parse(&c.gateway_helper)
                .map_err(|e| anyhow!("gateway_helper: {e}"))?,
            key_file: c
                .gateway_key
                .clone()
                .unwrap_or_else(|| c.data.join("gateway").join("master_ed25519")),
            dashboard: printable_url(&c.base_url()),
        })
    }

    pub fn script(&self, u: &Username) -> String {
        format!("{}/{u}.sh", self.users_dir)
    }
    pub fn home(&self, u: &Username) -> String {
        format!("{}/{u}", self.users_dir)
    }
    pub fn file(&self, u: &Username, f: UserFile) -> String {
        match f {
            UserFile::Script => self.script(u),
            other => format!("{}/{}", self.home(u), other.in_home()),
        }
    }
    pub fn describe(&self) -> String {
        match &self.target {
            TargetSpec::Local(p) => format!("local files under {}", p.display()),
            TargetSpec::Ssh { user, host, port } => format!("ssh://{user}@{host}:{port}"),
        }
    }
}

/// A host key fingerprint as `ssh-keygen -l` prints it: `SHA256:` and 43 base64 characters.
pub fn valid_fingerprint(k: &str) -> bool {
    k.strip_prefix("SHA256:").is_some_and(|b| {
        b.len() == 43
            && b.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'+' || c == b'/')
    })
}

impl Settings {
    /// The settings with the database's accepted host key when the configuration pins none.
    pub fn load(c: &Config, db: &Db) -> anyhow::Result<Settings> {
        let mut s = Settings::from_config(c)?;
        if s.host_key.is_none() {
            let accepted: Option<String> = db
                .read(crate::records::gateway::accepted_host_key)
                .map_err(|e| anyhow!("{e}"))?;
            if let Some(k) = accepted.filter(|k| valid_fingerprint(k)) {
                s.host_key = Some(k);
                s.host_key_source = "staff, in the web interface";
            }
        }
        Ok(s)
    }
}

/// Staff accept the host key the gateway offers (when the configuration pins none).
pub fn accept_host_key(conn: &Connection, fingerprint: &str, by: i64) -> crate::error::Result<()> {
    if !valid_fingerprint(fingerprint) {
        return Err(crate::domain::FieldError::new(
            "fingerprint",
            "That is not a SHA256 host key fingerprint.",
        )
        .into());
    }
    crate::records::gateway::accept_host_key(conn, fingerprint, by)
}
