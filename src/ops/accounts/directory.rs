//! The college's directory (LDAP): who may log in, with which name, address, role and courses.
//!
//! A log-in binds as the person (after finding their entry with a service account, or
//! directly by a DN template); the same service account looks each directory account up again
//! now and then, so one the directory no longer finds (left, or marked disabled by the filter)
//! is disabled here. Everything typed reaches the directory escaped, after the username was
//! checked as any username here: filter characters never get that far. A password is sent
//! only over TLS (ldaps:// or StartTLS), or in clear to this machine alone.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use ldap3::{LdapConn, LdapConnSettings, LdapError, Scope, SearchEntry};

use crate::config::Config;
use crate::domain::{DisplayName, Email, Username};

/// How long one exchange with the directory may take.
const TIMEOUT: Duration = Duration::from_secs(8);

/// LDAP's result code for a wrong password (or a DN that does not exist, said the same way).
const INVALID_CREDENTIALS: u32 = 49;

/// The directory, as the settings describe it.
#[derive(Clone)]
pub struct Directory {
    url: String,
    starttls: bool,
    tls: Option<Arc<rustls::ClientConfig>>,
    bind: Option<(String, String)>,
    user_base: String,
    user_filter: String,
    user_dn: String,
    username_attr: String,
    name_attr: String,
    email_attr: String,
    group_base: String,
    group_filter: String,
    admin_groups: Vec<String>,
    staff_groups: Vec<String>,
    course_groups: String,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory").field("url", &self.url).finish()
    }
}

pub use super::external::Person;

/// What a log-in through the directory came to.
#[derive(Debug)]
pub enum Verdict {
    Person(Person),
    /// No such person, or a wrong password: the directory does not say which.
    Refused,
}

/// The directory could not answer, or answered with something unusable.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("the college directory does not answer: {0}")]
    Unreachable(String),
    #[error("the college directory refused the lookup: {0}")]
    Failed(String),
    /// The entry's username, name or address is not one this system accepts.
    #[error("{0}")]
    Unusable(String),
}

impl From<LdapError> for DirectoryError {
    fn from(e: LdapError) -> Self {
        match e {
            LdapError::LdapResult { result } => {
                DirectoryError::Failed(format!("{} ({})", result.text, result.rc))
            }
            other => DirectoryError::Unreachable(other.to_string()),
        }
    }
}

/// Group DNs compared as the directory does, near enough: case and spaces after commas aside.
fn dn_key(dn: &str) -> String {
    dn.split(',')
        .map(|part| part.trim().to_lowercase())
        .collect::<Vec<_>>()
        .join(",")
}

fn dn_list(raw: &str) -> Vec<String> {
    raw.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(dn_key)
        .collect()
}

fn tls_config(ca_file: &Path) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let pem = std::fs::read(ca_file)
        .with_context(|| format!("ldap_ca_file: cannot read {}", ca_file.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert.context("ldap_ca_file: not a PEM certificate")?)?;
    }
    anyhow::ensure!(
        !roots.is_empty(),
        "ldap_ca_file: no certificate in {}",
        ca_file.display()
    );
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ))
}

impl Directory {
    /// The directory the settings name, or `None` when `ldap_url` is empty. Settings that
    /// cannot work together are refused here, at start, with the setting's name.
    pub fn from_config(c: &Config) -> anyhow::Result<Option<Directory>> {
        let url = c.ldap_url.trim();
        if url.is_empty() {
            return Ok(None);
        }
        let (secure, rest) = if let Some(rest) = url.strip_prefix("ldaps://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("ldap://") {
            (false, rest)
        } else {
            anyhow::bail!(
                "ldap_url: `{url}` is neither ldap://HOST[:PORT] nor ldaps://HOST[:PORT]"
            );
        };
        let host = rest.trim_end_matches('/');
        anyhow::ensure!(
            !host.is_empty() && !host.contains('/') && !host.contains('?'),
            "ldap_url: `{url}` must name a host (and port) only"
        );
        let host_only = host.rsplit_once(':').map_or(host, |(h, _)| h);
        let loopback = matches!(host_only, "127.0.0.1" | "localhost" | "[::1]");
        anyhow::ensure!(
            secure || c.ldap_starttls || loopback,
            "ldap_starttls: passwords would cross the network in clear to {host}; use \
             ldaps:// or keep ldap_starttls on"
        );
        let bind = (!c.ldap_bind_dn.trim().is_empty()).then(|| {
            (
                c.ldap_bind_dn.trim().to_string(),
                c.ldap_bind_password.0.clone(),
            )
        });
        let user_dn = c.ldap_user_dn.trim().to_string();
        if bind.is_some() {
            anyhow::ensure!(
                !c.ldap_user_base.trim().is_empty(),
                "ldap_user_base: where people are looked up is needed with ldap_bind_dn"
            );
            anyhow::ensure!(
                c.ldap_user_filter.contains("{username}"),
                "ldap_user_filter: must contain {{username}}"
            );
        } else {
            anyhow::ensure!(
                user_dn.contains("{username}"),
                "ldap_user_dn: with no ldap_bind_dn, people bind directly: give the DN with \
                 {{username}} in it"
            );
        }
        for (key, value) in [
            ("ldap_username_attribute", &c.ldap_username_attribute),
            ("ldap_name_attribute", &c.ldap_name_attribute),
            ("ldap_email_attribute", &c.ldap_email_attribute),
        ] {
            anyhow::ensure!(
                !value.is_empty()
                    && value
                        .chars()
                        .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == ';'),
                "{key}: `{value}` is not an attribute name"
            );
        }
        let tls = match &c.ldap_ca_file {
            Some(f) => Some(tls_config(f)?),
            None => None,
        };
        Ok(Some(Directory {
            url: url.to_string(),
            starttls: !secure && c.ldap_starttls,
            tls,
            bind,
            user_base: c.ldap_user_base.trim().to_string(),
            user_filter: c.ldap_user_filter.trim().to_string(),
            user_dn,
            username_attr: c.ldap_username_attribute.clone(),
            name_attr: c.ldap_name_attribute.clone(),
            email_attr: c.ldap_email_attribute.clone(),
            group_base: c.ldap_group_base.trim().to_string(),
            group_filter: c.ldap_group_filter.trim().to_string(),
            admin_groups: dn_list(&c.ldap_admin_groups),
            staff_groups: dn_list(&c.ldap_staff_groups),
            course_groups: dn_key(c.ldap_course_groups.trim()),
        }))
    }

    /// Whether accounts can be looked up without their password (a service account).
    pub fn can_look_up(&self) -> bool {
        self.bind.is_some()
    }

    fn connect(&self) -> Result<LdapConn, DirectoryError> {
        let mut settings = LdapConnSettings::new()
            .set_conn_timeout(TIMEOUT)
            .set_starttls(self.starttls);
        if let Some(tls) = &self.tls {
            settings = settings.set_config(tls.clone());
        }
        let mut conn = LdapConn::with_settings(settings, &self.url)
            .map_err(|e| DirectoryError::Unreachable(e.to_string()))?;
        // For the bind that follows: ldap3's timeout holds for the next operation only, so
        // each search sets it again.
        conn.with_timeout(TIMEOUT);
        Ok(conn)
    }

    /// Binds as the service account.
    fn service(&self) -> Result<LdapConn, DirectoryError> {
        let (dn, password) = self
            .bind
            .as_ref()
            .ok_or_else(|| DirectoryError::Failed("no service account (ldap_bind_dn)".into()))?;
        let mut conn = self.connect()?;
        conn.simple_bind(dn, password)?.success()?;
        Ok(conn)
    }

    /// The attributes read from a person's entry.
    fn entry_attributes(&self) -> [&str; 3] {
        [&self.username_attr, &self.name_attr, &self.email_attr]
    }

    /// The entry the user filter finds for `username`, if exactly one.
    fn find_entry(
        &self,
        conn: &mut LdapConn,
        username: &Username,
    ) -> Result<Option<SearchEntry>, DirectoryError> {
        let filter = self
            .user_filter
            .replace("{username}", &ldap3::ldap_escape(username.as_str()));
        let attrs = self.entry_attributes();
        conn.with_timeout(TIMEOUT);
        let (entries, _) = conn
            .search(&self.user_base, Scope::Subtree, &filter, attrs)?
            .success()?;
        match entries.len() {
            0 => Ok(None),
            1 => Ok(entries.into_iter().next().map(SearchEntry::construct)),
            n => Err(DirectoryError::Failed(format!(
                "{n} entries match {filter}: a username must find one person"
            ))),
        }
    }

    /// The entry at `dn` itself (read after a direct bind).
    fn read_entry(&self, conn: &mut LdapConn, dn: &str) -> Result<SearchEntry, DirectoryError> {
        let attrs = self.entry_attributes();
        conn.with_timeout(TIMEOUT);
        let (entries, _) = conn
            .search(dn, Scope::Base, "(objectClass=*)", attrs)?
            .success()?;
        entries
            .into_iter()
            .next()
            .map(SearchEntry::construct)
            .ok_or_else(|| DirectoryError::Failed(format!("{dn} cannot be read")))
    }

    /// The DNs of the groups `dn` is in (keyed for comparison).
    fn groups(
        &self,
        conn: &mut LdapConn,
        dn: &str,
        username: &Username,
    ) -> Result<Vec<String>, DirectoryError> {
        if self.group_base.is_empty() {
            return Ok(Vec::new());
        }
        let filter = self
            .group_filter
            .replace("{dn}", &ldap3::ldap_escape(dn))
            .replace("{username}", &ldap3::ldap_escape(username.as_str()));
        conn.with_timeout(TIMEOUT);
        let (entries, _) = conn
            .search(&self.group_base, Scope::Subtree, &filter, ["1.1"])?
            .success()?;
        Ok(entries
            .into_iter()
            .map(|e| dn_key(&SearchEntry::construct(e).dn))
            .collect())
    }

    /// The person an entry and its groups describe, checked as any account here is.
    fn person(
        &self,
        entry: SearchEntry,
        typed: &Username,
        groups: &[String],
    ) -> Result<Person, DirectoryError> {
        let first = |attr: &str| {
            entry
                .attrs
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(attr))
                .and_then(|(_, v)| v.first())
                .map(|v| v.trim().to_string())
                .unwrap_or_default()
        };
        let unusable = |what: &str, why: String| {
            DirectoryError::Unusable(format!(
                "Your college account's {what} cannot be used here ({why}). Ask the lab staff."
            ))
        };
        let username = Username::parse_new(&first(&self.username_attr).to_lowercase())
            .map_err(|e| unusable("username", e.message))?;
        if username != *typed {
            return Err(unusable(
                "username",
                format!("the directory calls it {username}"),
            ));
        }
        let email = Email::parse(&first(&self.email_attr))
            .map_err(|e| unusable("email address", e.message))?;
        let name = match first(&self.name_attr) {
            n if n.is_empty() => username.as_str().to_string(),
            n => n,
        };
        let display_name = DisplayName::parse(&name).map_err(|e| unusable("name", e.message))?;
        let role =
            super::external::role_from_groups(&self.admin_groups, &self.staff_groups, |list| {
                groups.iter().any(|g| list.contains(g))
            });
        let courses = if self.course_groups.is_empty() {
            Vec::new()
        } else {
            let under = format!(",{}", self.course_groups);
            let mut codes: Vec<String> = groups
                .iter()
                .filter_map(|g| g.strip_suffix(&under))
                // Right under the base: `cn=CODE`, nothing deeper.
                .filter(|rdn| !rdn.contains(','))
                .filter_map(|rdn| rdn.split_once('=').map(|(_, v)| v.to_string()))
                .collect();
            codes.sort();
            codes.dedup();
            codes
        };
        Ok(Person {
            external_id: entry.dn,
            username,
            email,
            display_name,
            role,
            courses,
        })
    }

    /// Logs `username` in with `password`: the person, or refused. An empty password is
    /// refused here (LDAP takes a bind with an empty password as an anonymous one).
    pub fn authenticate(
        &self,
        username: &Username,
        password: &str,
    ) -> Result<Verdict, DirectoryError> {
        if password.is_empty() {
            return Ok(Verdict::Refused);
        }
        if self.bind.is_some() {
            let mut service = self.service()?;
            let Some(entry) = self.find_entry(&mut service, username)? else {
                let _ = service.unbind();
                return Ok(Verdict::Refused);
            };
            let groups = self.groups(&mut service, &entry.dn, username)?;
            let _ = service.unbind();
            let mut conn = self.connect()?;
            let bound = conn.simple_bind(&entry.dn, password)?;
            let _ = conn.unbind();
            if bound.rc == INVALID_CREDENTIALS {
                return Ok(Verdict::Refused);
            }
            bound.success()?;
            self.person(entry, username, &groups).map(Verdict::Person)
        } else {
            let dn = self
                .user_dn
                .replace("{username}", &ldap3::dn_escape(username.as_str()));
            let mut conn = self.connect()?;
            let bound = conn.simple_bind(&dn, password)?;
            if bound.rc == INVALID_CREDENTIALS {
                let _ = conn.unbind();
                return Ok(Verdict::Refused);
            }
            bound.success()?;
            let entry = self.read_entry(&mut conn, &dn)?;
            let groups = self.groups(&mut conn, &dn, username)?;
            let _ = conn.unbind();
            self.person(entry, username, &groups).map(Verdict::Person)
        }
    }

    /// Looks each of `usernames` up with the service account: the person, or `None` for one
    /// the directory no longer finds (or whose entry is no longer usable here).
    pub fn look_up(
        &self,
        usernames: &[Username],
    ) -> Result<Vec<(Username, Option<Person>)>, DirectoryError> {
        let mut conn = self.service()?;
        let mut out = Vec::with_capacity(usernames.len());
        for username in usernames {
            let person = match self.find_entry(&mut conn, username)? {
                Some(entry) => {
                    let groups = self.groups(&mut conn, &entry.dn, username)?;
                    self.person(entry, username, &groups).ok()
                }
                None => None,
            };
            out.push((username.clone(), person));
        }
        let _ = conn.unbind();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Config {
        let flags: Vec<(&str, String)> = pairs.iter().map(|(k, v)| (*k, v.to_string())).collect();
        Config::load(None, Vec::<(String, String)>::new(), &flags).unwrap()
    }

    #[test]
    fn settings_that_cannot_work_are_refused_by_name() {
        let err = |pairs: &[(&str, &str)]| {
            Directory::from_config(&config(pairs))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert!(Directory::from_config(&config(&[])).unwrap().is_none());
        assert!(err(&[("ldap_url", "http://x")]).starts_with("ldap_url"));
        assert!(err(&[("ldap_url", "ldap://x/dc=a")]).starts_with("ldap_url"));
        assert!(err(&[
            ("ldap_url", "ldap://dir.example.edu"),
            ("ldap_starttls", "false"),
            ("ldap_user_dn", "uid={username},dc=a")
        ])
        .starts_with("ldap_starttls"));
        assert!(err(&[("ldap_url", "ldap://dir.example.edu")]).starts_with("ldap_user_dn"));
        assert!(
            err(&[("ldap_url", "ldaps://d"), ("ldap_bind_dn", "cn=svc")])
                .starts_with("ldap_user_base")
        );
        assert!(err(&[
            ("ldap_url", "ldaps://d"),
            ("ldap_user_dn", "uid={username},dc=a"),
            ("ldap_email_attribute", "mail)(x=*")
        ])
        .starts_with("ldap_email_attribute"));
        // In clear only to this machine.
        assert!(Directory::from_config(&config(&[
            ("ldap_url", "ldap://127.0.0.1:3890"),
            ("ldap_starttls", "false"),
            ("ldap_user_dn", "uid={username},dc=a"),
        ]))
        .unwrap()
        .is_some());
    }

    #[test]
    fn group_dns_compare_without_case_or_spaces() {
        assert_eq!(
            dn_key("CN=Lab Admins, OU=Groups,dc=Example"),
            "cn=lab admins,ou=groups,dc=example"
        );
        assert_eq!(dn_list(" a=1, b=2 ;; c=3 "), vec!["a=1,b=2", "c=3"]);
    }
}
