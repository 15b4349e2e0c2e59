//! Layered configuration: built-in defaults, then a TOML file, then `SLICES_*` environment
//! variables, then command-line flags. Every setting is declared once, in [`settings!`], with
//! its type, default and the comment that `slices config defaults` prints.
//!
//! Secrets may be given as `KEY_file` (in the file or as `SLICES_KEY_FILE`): the value is
//! read from that file. An unknown key is an error that names the key.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "unknown setting `{key}` (from {source_name}); `slices config defaults` lists them all"
    )]
    UnknownKey { key: String, source_name: String },
    #[error("setting `{key}` (from {source_name}): {message}")]
    BadValue {
        key: String,
        source_name: String,
        message: String,
    },
    #[error("cannot read config file {path}: {message}")]
    File { path: PathBuf, message: String },
}

/// A type a setting can have: parsed from text (file, environment, flag) and shown as text.
pub trait SettingValue: Sized {
    fn parse_setting(raw: &str) -> Result<Self, String>;
    fn show(&self) -> String;
    /// How the value is written in TOML by `config defaults`.
    fn toml_literal(&self) -> String {
        toml_string(&self.show())
    }
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

impl SettingValue for String {
    fn parse_setting(raw: &str) -> Result<Self, String> {
        Ok(raw.to_string())
    }
    fn show(&self) -> String {
        self.clone()
    }
}

impl SettingValue for PathBuf {
    fn parse_setting(raw: &str) -> Result<Self, String> {
        if raw.is_empty() {
            return Err("a path cannot be empty".into());
        }
        Ok(PathBuf::from(raw))
    }
    fn show(&self) -> String {
        self.display().to_string()
    }
}

impl SettingValue for SocketAddr {
    fn parse_setting(raw: &str) -> Result<Self, String> {
        raw.parse()
            .map_err(|_| format!("`{raw}` is not an address like 127.0.0.1:8080"))
    }
    fn show(&self) -> String {
        self.to_string()
    }
}

impl SettingValue for bool {
    fn parse_setting(raw: &str) -> Result<Self, String> {
        match raw.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err(format!("`{raw}` is not true or false")),
        }
    }
    fn show(&self) -> String {
        self.to_string()
    }
    fn toml_literal(&self) -> String {
        self.to_string()
    }
}

macro_rules! integer_setting {
    ($($t:ty),*) => {$(
        impl SettingValue for $t {
            fn parse_setting(raw: &str) -> Result<Self, String> {
                raw.trim().parse().map_err(|_| {
                    format!("`{raw}` is not a whole number from {} to {}", <$t>::MIN, <$t>::MAX)
                })
            }
            fn show(&self) -> String { self.to_string() }
            fn toml_literal(&self) -> String { self.to_string() }
        }
    )*};
}
integer_setting!(u16, u32, u64, usize);

impl<T: SettingValue> SettingValue for Option<T> {
    fn parse_setting(raw: &str) -> Result<Self, String> {
        if raw.is_empty() {
            Ok(None)
        } else {
            T::parse_setting(raw).map(Some)
        }
    }
    fn show(&self) -> String {
        self.as_ref().map(T::show).unwrap_or_default()
    }
}

/// A secret: never printed, never logged.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            f.write_str("Secret(unset)")
        } else {
            f.write_str("Secret(****)")
        }
    }
}

impl SettingValue for Secret {
    fn parse_setting(raw: &str) -> Result<Self, String> {
        Ok(Secret(raw.to_string()))
    }
    fn show(&self) -> String {
        if self.0.is_empty() {
            String::new()
        } else {
            "****".into()
        }
    }
}

/// Declares the settings: the struct, its defaults and the documentation, all from one list.
macro_rules! settings {
    ($( $(#[doc = $doc:literal])+ $key:ident : $ty:ty = $default:expr ; )*) => {
        /// Every setting of the master. See `slices config defaults`.
        #[derive(Debug, Clone)]
        pub struct Config {
            $( pub $key: $ty, )*
            /// Where each value that is not the default came from (the file, a variable, a
            /// flag), by setting name.
            pub sources: BTreeMap<String, String>,
        }

        impl Default for Config {
            fn default() -> Self { Config { $( $key: $default, )* sources: BTreeMap::new() } }
        }

        impl Config {
            /// The names of all settings, in declaration order.
            pub const KEYS: &'static [&'static str] = &[$( stringify!($key), )*];

            fn set_raw(&mut self, key: &str, raw: &str) -> Option<Result<(), String>> {
                match key {
                    $( stringify!($key) => Some(
                        <$ty as SettingValue>::parse_setting(raw).map(|v| self.$key = v)
                    ), )*
                    _ => None,
                }
            }

            fn is_secret(key: &str) -> bool {
                match key {
                    $( stringify!($key) => std::any::type_name::<$ty>().ends_with("Secret"), )*
                    _ => false,
                }
            }

            /// The current value of every setting, as TOML literals.
            fn values(&self) -> BTreeMap<&'static str, String> {
                let mut m = BTreeMap::new();
                $( m.insert(stringify!($key), SettingValue::toml_literal(&self.$key)); )*
                m
            }

            /// `(key, default as TOML, documentation)` for every setting.
            pub fn documented() -> Vec<(&'static str, String, String)> {
                let d = Config::default();
                vec![$( (
                    stringify!($key),
                    SettingValue::toml_literal(&d.$key),
                    [$($doc.trim()),+].join("\n"),
                ), )*]
            }
        }
    };
}

settings! {
    /// Folder that holds the database, the secret key and the CA. Created if missing.
    data: PathBuf = PathBuf::from("slices-data");
    /// Address the web interface listens on.
    listen: SocketAddr = "127.0.0.1:8080".parse().expect("valid default");
    /// The address users reach the web interface at, for links in mail and pages
    /// (for example https://slices.example.edu). Empty: derived from the listen address.
    public_url: String = String::new();
    /// PEM certificate chain: with tls_key, serve HTTPS directly.
    tls_cert: Option<PathBuf> = None;
    /// PEM private key for tls_cert.
    tls_key: Option<PathBuf> = None;
    /// Number of HTTP worker threads (0: one per CPU).
    workers: usize = 0;
    /// Largest request body accepted, in bytes; larger ones get 413.
    max_body_bytes: usize = 64 * 1024;
    /// A session ends this many hours after log-in.
    session_hours: u64 = 12;
    /// A session ends after this many minutes without a request.
    session_idle_minutes: u64 = 120;
    /// Failed log-ins for one account from one address, within the window, before further
    /// tries for it from there wait (5 s, doubling with each failure, at most the window).
    /// Other addresses (the owner's) are not held back; a log-in from a new address after
    /// this many failures is mailed to the owner.
    login_max_failures_per_account: u32 = 5;
    /// Failed log-ins from one client address (any accounts) within the window before its
    /// further tries wait, the same way.
    login_max_failures_per_address: u32 = 20;
    /// The throttling window, in minutes.
    login_window_minutes: u64 = 15;
    /// Use the last X-Forwarded-For address (the one the proxy in front wrote) as the client
    /// address: only behind a trusted proxy that every request passes through.
    trust_forwarded_for: bool = false;
    /// Key for signing form tokens. Empty: a random key kept in the data folder.
    secret_key: Secret = Secret::default();
    /// Folder of templates that replace the built-in ones with the same name (optional).
    templates_dir: Option<PathBuf> = None;
    /// Folder of OS templates (NAME.tar.gz) that nodes are kept in step with.
    /// Empty: DATA/os-templates.
    os_templates: Option<PathBuf> = None;
    /// Name servers written into each slice's resolv.conf, comma-separated IPv4 addresses.
    slice_nameservers: String = String::new();
    /// Search domain written into each slice's resolv.conf (empty: none).
    slice_search_domain: String = String::new();
    /// Background jobs running at once, in all.
    jobs_concurrency: usize = 16;
    /// Background jobs running at once on one node.
    jobs_per_node: usize = 4;
    /// A running job's lease, in seconds; a job whose lease runs out is taken again.
    job_lease_secs: u64 = 60;
    /// How many times a job is tried before it fails.
    job_max_attempts: u32 = 8;
    /// The first retry of a failed step waits this long; each next one twice as long.
    job_retry_base_secs: u64 = 2;
    /// How often each node is asked how it is, in seconds.
    node_health_secs: u64 = 30;
    /// How often each node is asked what its slices use, in minutes (0: never).
    usage_minutes: u64 = 5;
    /// How often slices' ends are looked at (warnings 14, 3 and 1 day before, the stop at the
    /// end, the destruction after the grace period), in seconds (0: never).
    term_check_seconds: u64 = 300;
    /// How many days a slice stays stopped after its end before it is destroyed.
    term_grace_days: u64 = 14;
    /// How often each node's containers are compared with the database, in seconds (0: never).
    reconcile_seconds: u64 = 60;
    /// What to do with a slice that should run and was found stopped on its node: `restart`
    /// it, or only `report` it (its state becomes stopped, staff see why).
    reconcile_policy: String = "restart".to_string();
    /// How long usage samples are kept, in days.
    usage_keep_days: u64 = 14;
    /// How often OS templates are synced to every node, in minutes (0: only on demand).
    template_sync_minutes: u64 = 60;
    /// How long to wait for an agent's answer, in seconds.
    agent_timeout_secs: u64 = 330;
    /// The domain under which slices serve web apps: NAME.<domain> (also used in mail).
    domain: String = "slices.localhost".to_string();
    /// The host students ssh to (the gateway), as they should type it.
    gateway_host: String = "localhost".to_string();
    /// The gateway's ssh port, as students type it. 0: the built-in SSH gateway's port when it
    /// is on (see ssh_listen), else 22.
    gateway_port: u16 = 0;
    /// Where the built-in SSH gateway listens: students `ssh -p PORT NAME@gateway_host` with
    /// the keys they registered and land in the slice called NAME. It is on when
    /// gateway_target = "local" (it uses the hop keys the master keeps there); empty: off.
    /// With a remote gateway_target, the Unix-account gateway there takes the logins instead.
    ssh_listen: String = "127.0.0.1:2222".to_string();
    /// A slave host inside the master, registered as node `local`: `sim` (simulated slices,
    /// for trying Slices out), `lxc` (real containers on this host) or `off` (production:
    /// slave hosts are enrolled with `slices node add`).
    embedded_agent: String = "sim".to_string();
    /// The embedded agent's private subnet (its slices' addresses).
    embedded_subnet: String = "10.99.0.0/24".to_string();
    /// The bridge the embedded lxc agent attaches slices to (it holds the subnet's first address).
    embedded_bridge: String = "slices0".to_string();
    /// Where the gateway's logins and web map are kept: `local` (files under DATA/gateway and
    /// no Unix accounts, for trying Slices on one machine) or `ssh://root@HOST[:PORT]` (the
    /// gateway host, reached over SSH with gateway_key).
    gateway_target: String = "local".to_string();
    /// The gateway's SSH host key, as `SHA256:...` (`ssh-keygen -lf` on its host key). Empty:
    /// refused, and `slices gateway plan` prints the key it was offered.
    gateway_host_key: String = String::new();
    /// The master's private key for the gateway (OpenSSH format). Empty: DATA/gateway/master_ed25519,
    /// made on first use; `slices gateway key` prints the line for the gateway's authorized_keys.
    gateway_key: Option<PathBuf> = None;
    /// On the gateway: the folder of login-shell scripts (NAME.sh) and homes (NAME/).
    gateway_users_dir: String = "/home/users".to_string();
    /// On the gateway: Apache's RewriteMap of `NAME PRIVATE_IP` lines.
    gateway_map_file: String = "/etc/apache2/openvz.map".to_string();
    /// The private range node subnets are taken from when `slices node add` (or the Add a node
    /// page) is given none: the next free /24 that overlaps no other node's.
    node_subnet_pool: String = "10.77.0.0/16".to_string();
    /// On the gateway: sshd's configuration file. The helper keeps a block at its end that
    /// stops slice users forwarding ports, agents, X11 or tunnels through the gateway
    /// (`slices gateway sshd-config` prints it); the gateway check reports it missing.
    gateway_sshd_config: String = "/etc/ssh/sshd_config".to_string();
    /// On the gateway: the installed helper, run through sudo when gateway_target logs in as
    /// an account other than root (`slices gateway helper` prints it).
    gateway_helper: String = "/usr/local/sbin/slices-gateway".to_string();
    /// How often the whole gateway is compared with the database and put right, in minutes
    /// (0: only on changes and on demand).
    gateway_sync_minutes: u64 = 10;
    /// How mail leaves: file (each message an .eml file in DATA/mail) or smtp.
    mail_transport: String = "file".to_string();
    /// The sender of every message.
    mail_from: String = "Slices <slices@localhost>".to_string();
    /// SMTP server (with mail_transport = "smtp").
    smtp_host: String = String::new();
    /// SMTP port: 587 for STARTTLS, 465 for implicit TLS, 25 without.
    smtp_port: u16 = 587;
    /// starttls, tls (implicit, port 465) or none.
    smtp_tls: String = "starttls".to_string();
    /// SMTP login (empty: none).
    smtp_username: String = String::new();
    /// SMTP password.
    smtp_password: Secret = Secret::default();
    /// The hour of the day (UTC, 0 to 23) the daily digest of waiting requests goes out.
    digest_hour: u32 = 8;
    /// The first retry of an undelivered message waits this long; each next one twice as long.
    mail_retry_base_secs: u64 = 60;
    /// Connections to SQLite for reading (writing always uses one connection).
    db_readers: u32 = 8;
    /// Who may log in with a password kept here: `all`, or `admins` (a break-glass admin
    /// while everyone else logs in through the college directory).
    local_logins: String = "all".to_string();
    /// The college directory people log in through: `ldap://HOST[:PORT]` (upgraded with
    /// StartTLS) or `ldaps://HOST[:PORT]`. Empty: no directory log-ins.
    ldap_url: String = String::new();
    /// Upgrade an ldap:// connection with StartTLS before anything else is sent. Off only for
    /// a directory on this machine (127.0.0.1): a password never crosses a network in clear.
    ldap_starttls: bool = true;
    /// PEM file of the CA that signed the directory's certificate. Empty: the system's CAs.
    ldap_ca_file: Option<PathBuf> = None;
    /// The service account that looks people up before they bind (search, then bind). Empty:
    /// each person binds directly as ldap_user_dn, and no periodic check can be made.
    ldap_bind_dn: String = String::new();
    /// The service account's password.
    ldap_bind_password: Secret = Secret::default();
    /// Where people are looked up (search, then bind).
    ldap_user_base: String = String::new();
    /// The filter that finds a person who may log in; {username} is the name typed (escaped).
    /// Put the directory's own mark of a disabled account in it, for example
    /// `(&(uid={username})(!(pwdAccountLockedTime=*)))`: someone it no longer finds is refused
    /// at log-in, and disabled here (sessions ended) by the periodic check.
    ldap_user_filter: String = "(&(objectClass=inetOrgPerson)(uid={username}))".to_string();
    /// Direct bind, without a service account: the DN a person binds as, {username} the name
    /// typed (escaped), for example `uid={username},ou=people,dc=example,dc=edu`.
    ldap_user_dn: String = String::new();
    /// The directory attribute that holds the username (checked as any username here).
    ldap_username_attribute: String = "uid".to_string();
    /// The directory attribute that holds the display name.
    ldap_name_attribute: String = "cn".to_string();
    /// The directory attribute that holds the email address (taken as confirmed).
    ldap_email_attribute: String = "mail".to_string();
    /// Where groups are looked up. Empty: no groups, so no roles or courses from them.
    ldap_group_base: String = String::new();
    /// The filter for a person's groups: {dn} is their DN, {username} their username.
    ldap_group_filter: String =
        "(|(member={dn})(uniqueMember={dn})(memberUid={username}))".to_string();
    /// Groups whose members are admins here: DNs separated by `;`. When this or
    /// ldap_staff_groups is set, the directory decides a directory account's role at each
    /// log-in; when both are empty, roles are given here.
    ldap_admin_groups: String = String::new();
    /// Groups whose members are staff here: DNs separated by `;`.
    ldap_staff_groups: String = String::new();
    /// Groups right under this DN are courses: a member of `cn=CS3650,ou=courses,...` belongs
    /// to the course whose code is CS3650 (when it exists here). Empty: none.
    ldap_course_groups: String = String::new();
    /// How often directory accounts are looked up again, in minutes: one no longer found is
    /// disabled here and its sessions end (0: never; needs ldap_bind_dn).
    ldap_check_minutes: u64 = 15;
    /// The institution's OpenID provider, for "Log in with ..." (single sign-on): its issuer
    /// URL, for example `https://login.example.edu/realms/college`. https, or http only to this
    /// machine (127.0.0.1). Empty: no single sign-on.
    oidc_issuer: String = String::new();
    /// This master's client id at the provider. Register `PUBLIC_URL/login/sso/callback` as
    /// its redirect URI there.
    oidc_client_id: String = String::new();
    /// The client secret the provider gave this master.
    oidc_client_secret: Secret = Secret::default();
    /// The name on the log-in button: "Log in with ...".
    oidc_label: String = "your institution".to_string();
    /// PEM file of the CA that signed the provider's certificate. Empty: the usual public CAs.
    oidc_ca_file: Option<PathBuf> = None;
    /// Scopes asked for besides `openid`, separated by spaces.
    oidc_scopes: String = "email profile".to_string();
    /// The ID token claim that holds the username (checked as any username here).
    oidc_username_claim: String = "preferred_username".to_string();
    /// The ID token claim that lists the person's groups. Empty: no roles or courses from it.
    oidc_groups_claim: String = "groups".to_string();
    /// Groups whose members are admins here, separated by `;`. When this or
    /// oidc_staff_groups is set, the provider decides an account's role at each log-in.
    oidc_admin_groups: String = String::new();
    /// Groups whose members are staff here, separated by `;`.
    oidc_staff_groups: String = String::new();
    /// Groups that start with this are courses: with `course:`, a member of `course:CS3650`
    /// belongs to the course CS3650 (when it exists here). Empty: none.
    oidc_course_prefix: String = String::new();
}

/// Where a value came from, for error messages.
fn source_env(var: &str) -> String {
    format!("environment variable {var}")
}

impl Config {
    /// Builds the configuration from the defaults, an optional TOML file, the environment
    /// (any `SLICES_*` variable) and finally the flags given as `(key, value)` pairs.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        flags: &[(&str, String)],
    ) -> Result<Config, ConfigError> {
        let mut cfg = Config::default();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
            let table: toml::Table =
                text.parse()
                    .map_err(|e: toml::de::Error| ConfigError::File {
                        path: path.to_path_buf(),
                        message: e.to_string(),
                    })?;
            let source = format!("config file {}", path.display());
            for (key, value) in table {
                let raw = match value {
                    toml::Value::String(s) => s,
                    toml::Value::Integer(i) => i.to_string(),
                    toml::Value::Boolean(b) => b.to_string(),
                    other => {
                        return Err(ConfigError::BadValue {
                            key,
                            source_name: source,
                            message: format!(
                                "expected text, a number or true/false, found {}",
                                other.type_str()
                            ),
                        })
                    }
                };
                cfg.apply(&key, &raw, &source)?;
            }
        }
        let mut env: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| {
                k.starts_with("SLICES_") && k != "SLICES_CONFIG" && k != "SLICES_SYSTEM_CONFIG"
            })
            .collect();
        env.sort();
        for (var, raw) in env {
            let key = var["SLICES_".len()..].to_ascii_lowercase();
            cfg.apply(&key, &raw, &source_env(&var))?;
        }
        for (key, raw) in flags {
            cfg.apply(key, raw, &format!("flag --{}", key.replace('_', "-")))?;
        }
        cfg.check()?;
        Ok(cfg)
    }

    fn apply(&mut self, key: &str, raw: &str, source: &str) -> Result<(), ConfigError> {
        let bad = |message: String| ConfigError::BadValue {
            key: key.to_string(),
            source_name: source.to_string(),
            message,
        };
        if let Some(base) = key.strip_suffix("_file") {
            if Self::is_secret(base) {
                let text = std::fs::read_to_string(raw)
                    .map_err(|e| bad(format!("cannot read secret file {raw}: {e}")))?;
                let value = text.trim_end_matches(['\n', '\r']);
                return self.apply(base, value, source);
            }
        }
        match self.set_raw(key, raw) {
            None => Err(ConfigError::UnknownKey {
                key: key.to_string(),
                source_name: source.to_string(),
            }),
            Some(r) => {
                r.map_err(bad)?;
                self.sources.insert(key.to_string(), source.to_string());
                Ok(())
            }
        }
    }

    fn check(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, message: &str| ConfigError::BadValue {
            key: key.into(),
            source_name: "the combined configuration".into(),
            message: message.into(),
        };
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(bad("tls_cert", "tls_cert and tls_key must be set together"));
        }
        let url = &self.public_url;
        if !(url.is_empty() || url.starts_with("http://") || url.starts_with("https://")) {
            return Err(bad("public_url", "must start with http:// or https://"));
        }
        if self.session_hours == 0 || self.session_idle_minutes == 0 {
            return Err(bad("session_hours", "session lifetimes must be above zero"));
        }
        if self.digest_hour > 23 {
            return Err(bad("digest_hour", "an hour of the day is 0 to 23"));
        }
        if self.db_readers == 0 {
            return Err(bad("db_readers", "at least one reader is needed"));
        }
        if self.max_body_bytes < 1024 {
            return Err(bad("max_body_bytes", "must be at least 1024"));
        }
        if !matches!(self.local_logins.as_str(), "all" | "admins") {
            return Err(bad("local_logins", "is `all` or `admins`"));
        }
        Ok(())
    }

    /// The master's OS template folder.
    pub fn os_templates_dir(&self) -> PathBuf {
        self.os_templates
            .clone()
            .unwrap_or_else(|| self.data.join("os-templates"))
    }

    /// True when the web interface is served over HTTPS.
    pub fn https(&self) -> bool {
        self.tls_cert.is_some() || self.public_url.starts_with("https://")
    }

    /// Where the built-in SSH gateway listens, when it is on: ssh_listen is set and the
    /// gateway target is the master's own folder.
    pub fn builtin_ssh(&self) -> anyhow::Result<Option<SocketAddr>> {
        let s = self.ssh_listen.trim();
        if s.is_empty() || self.gateway_target.trim() != "local" {
            return Ok(None);
        }
        s.parse().map(Some).map_err(|_| {
            anyhow::anyhow!(
                "ssh_listen `{s}`: give an address and port such as 0.0.0.0:2222, or \"\" for none"
            )
        })
    }

    /// The ssh port students type.
    pub fn student_ssh_port(&self) -> u16 {
        match self.gateway_port {
            0 => self
                .builtin_ssh()
                .ok()
                .flatten()
                .map(|a| a.port())
                .unwrap_or(22),
            p => p,
        }
    }

    /// The base URL for links (no trailing slash).
    pub fn base_url(&self) -> String {
        if !self.public_url.is_empty() {
            return self.public_url.trim_end_matches('/').to_string();
        }
        let scheme = if self.tls_cert.is_some() {
            "https"
        } else {
            "http"
        };
        let addr = self.listen;
        let host = if addr.ip().is_unspecified() {
            "localhost".to_string()
        } else if addr.is_ipv6() {
            format!("[{}]", addr.ip())
        } else {
            addr.ip().to_string()
        };
        format!("{scheme}://{host}:{}", addr.port())
    }

    /// The current values, as TOML (secrets masked).
    pub fn effective(&self) -> BTreeMap<&'static str, String> {
        let mut out = BTreeMap::new();
        let text = self.render(false);
        for line in text.lines() {
            if let Some((k, v)) = line.split_once(" = ") {
                if let Some(key) = Self::KEYS.iter().find(|key| **key == k) {
                    out.insert(*key, v.to_string());
                }
            }
        }
        out
    }

    fn render(&self, with_docs: bool) -> String {
        let mut out = String::new();
        let values = self.values();
        for (key, _, doc) in Config::documented() {
            if with_docs {
                for line in doc.lines() {
                    let _ = writeln!(out, "# {line}");
                }
                if Self::is_secret(key) {
                    let _ = writeln!(
                        out,
                        "# (secret: may also be given as {key}_file = \"/path\")"
                    );
                }
            }
            let _ = writeln!(out, "{key} = {}", values[key]);
            if with_docs {
                out.push('\n');
            }
        }
        out
    }

    /// Every setting with its default and a comment, as a TOML file an operator can edit.
    pub fn defaults_toml() -> String {
        let mut out = String::from(
            "# Slices master configuration: every setting with its default.\n\
             # Order of precedence: these defaults < this file (--config) < SLICES_<KEY>\n\
             # environment variables < command-line flags.\n\n",
        );
        out.push_str(&Config::default().render(true));
        out
    }
}

/// Where the operator's configuration is looked for when no `--config` or `SLICES_CONFIG`
/// names one: `/etc/slices/slices.toml` (`SLICES_SYSTEM_CONFIG` names another place).
pub fn system_config_path() -> PathBuf {
    std::env::var_os("SLICES_SYSTEM_CONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/etc/slices/slices.toml"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_apply_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:9000\"\nsession_hours = 3\nworkers = 2\n",
        )
        .unwrap();
        let env = vec![
            ("SLICES_SESSION_HOURS".to_string(), "5".to_string()),
            ("PATH".to_string(), "/bin".to_string()),
        ];
        let cfg = Config::load(Some(&file), env, &[("workers", "7".into())]).unwrap();
        assert_eq!(cfg.listen.port(), 9000);
        assert_eq!(cfg.session_hours, 5);
        assert_eq!(cfg.workers, 7);
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = Config::load(None, vec![("SLICES_LISTNE".into(), "x".into())], &[]).unwrap_err();
        assert!(err.to_string().contains("`listne`"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "colour = \"blue\"\n").unwrap();
        let err = Config::load(Some(&file), vec![], &[]).unwrap_err();
        assert!(err.to_string().contains("`colour`"), "{err}");
    }

    #[test]
    fn bad_values_are_explained() {
        let err =
            Config::load(None, vec![("SLICES_LISTEN".into(), "nowhere".into())], &[]).unwrap_err();
        assert!(err.to_string().contains("not an address"), "{err}");
        let err =
            Config::load(None, vec![("SLICES_TLS_CERT".into(), "/c.pem".into())], &[]).unwrap_err();
        assert!(err.to_string().contains("together"), "{err}");
    }

    #[test]
    fn secrets_come_from_files_and_stay_hidden() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("key");
        std::fs::write(&secret, "hunter2hunter2\n").unwrap();
        let env = vec![(
            "SLICES_SECRET_KEY_FILE".into(),
            secret.display().to_string(),
        )];
        let cfg = Config::load(None, env, &[]).unwrap();
        assert_eq!(cfg.secret_key.0, "hunter2hunter2");
        assert!(!format!("{cfg:?}").contains("hunter2"));
        assert_eq!(cfg.effective()["secret_key"], "\"****\"");
        // `_file` is only for secrets.
        let env = vec![("SLICES_LISTEN_FILE".into(), secret.display().to_string())];
        assert!(Config::load(None, env, &[]).is_err());
    }

    #[test]
    fn defaults_document_every_key_and_parse_back() {
        let text = Config::defaults_toml();
        for key in Config::KEYS {
            assert!(text.contains(&format!("\n{key} = ")), "{key} missing");
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("d.toml");
        std::fs::write(&file, &text).unwrap();
        let cfg = Config::load(Some(&file), vec![], &[]).unwrap();
        assert_eq!(cfg.listen, Config::default().listen);
    }
}
