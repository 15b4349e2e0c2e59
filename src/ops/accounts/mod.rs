//! Accounts: sign-up, log-in with throttling, sessions, roles, disabling, and the audit log
//! of every security event. Each operation here is one database transaction: it happens
//! whole, with its audit row, or not at all.

mod addresses;
pub mod directory;
pub mod external;
pub mod keys;
mod manage;
pub mod password;
pub mod sso;

pub use addresses::*;
pub use manage::*;

// The tables accounts live in (`records`), under the names the rest of the code knows.
pub use crate::domain::token;
pub use crate::records::{audit, email_tokens, invites, sessions, users};

use crate::config::Config;
use crate::domain::{DisplayName, Email, FieldError, NewPassword, Role, Username};
use crate::error::{Error, Problems, Result};
use crate::store::{now, Db};

pub use audit::{Actor, Event};
pub use directory::Directory;
pub use sessions::{Lifetimes, Session};
pub use sso::SingleSignOn;
pub use users::{AuthSource, User};

/// The rules that come from configuration.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub life: Lifetimes,
    pub max_failures_per_account: u32,
    pub max_failures_per_address: u32,
    pub window_secs: i64,
    /// Only admins may log in with a password kept here (everyone else through the
    /// directory): `local_logins = "admins"`.
    pub local_logins_admins_only: bool,
}

impl Policy {
    /// How long after the last of `failures` failed tries the next may come, when `free` are
    /// allowed without waiting: none until then, 5 s after the first one over, doubling with
    /// each, at most the window. `None`: no wait.
    pub fn delay_after(&self, failures: u32, free: u32) -> Option<i64> {
        if failures < free.max(1) {
            return None;
        }
        let over = (failures - free.max(1)).min(20);
        Some((5i64 << over).min(self.window_secs.max(5)))
    }

    pub fn from_config(c: &Config) -> Policy {
        Policy {
            life: Lifetimes {
                absolute_secs: (c.session_hours * 3600) as i64,
                idle_secs: (c.session_idle_minutes * 60) as i64,
            },
            max_failures_per_account: c.login_max_failures_per_account,
            max_failures_per_address: c.login_max_failures_per_address,
            window_secs: (c.login_window_minutes * 60) as i64,
            local_logins_admins_only: c.local_logins == "admins",
        }
    }
}

/// Where a request came from (for sessions and the audit log).
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub ip: String,
    pub user_agent: String,
}

/// What the sign-up form sends.
#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize)]
pub struct SignUpForm {
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub display_name: String,
    #[serde(default, skip_serializing)]
    pub password: String,
    #[serde(default, skip_serializing)]
    pub password_confirm: String,
}

/// A checked sign-up.
pub struct NewAccount {
    pub username: Username,
    pub email: Email,
    pub display_name: DisplayName,
    pub password: NewPassword,
}

impl SignUpForm {
    /// Checks every field and reports every problem at once.
    pub fn check(&self) -> Result<NewAccount> {
        let mut problems = Problems::default();
        let username = problems.check(Username::parse_new(&self.username));
        let email = problems.check(Email::parse(&self.email));
        let display_name = problems.check(DisplayName::parse(&self.display_name));
        let password = problems.check(NewPassword::parse(
            "password",
            &self.password,
            self.username.trim(),
            Some(&self.email),
        ));
        if !self.password.is_empty() && self.password != self.password_confirm {
            problems.push(FieldError::new(
                "password_confirm",
                "The two passwords differ.",
            ));
        }
        problems.finish()?;
        match (username, email, display_name, password) {
            (Some(username), Some(email), Some(display_name), Some(password)) => Ok(NewAccount {
                username,
                email,
                display_name,
                password,
            }),
            _ => Err(Error::Internal(anyhow::anyhow!(
                "a checked field had no value"
            ))),
        }
    }
}

/// How an account comes to be: with which role, recorded as which event, by whom, and whether
/// a browser (`origin`) gets a session or an invite link is used up.
pub struct Grant<'a> {
    pub role: Role,
    pub event: Event,
    pub creator: Option<i64>,
    pub origin: Option<&'a Origin>,
    pub invite: Option<&'a str>,
}

/// Creates an account (hashing the password off any transaction), records the event and, when
/// `origin` is given, starts a session for it. Returns the account and the session cookie.
pub fn create_account(
    db: &Db,
    policy: &Policy,
    account: NewAccount,
    grant: Grant<'_>,
) -> Result<(User, Option<String>)> {
    let Grant {
        role,
        event,
        creator,
        origin,
        invite,
    } = grant;
    let hash = password::hash(account.password.expose())?;
    db.write(|tx| {
        let user = users::insert(
            tx,
            &account.username,
            &account.email,
            &account.display_name,
            &hash,
            role,
        )?;
        if let Some(token) = invite {
            if !invites::redeem(tx, token, user.id)? {
                return Err(Error::Forbidden(
                    "This link has been used or has expired. Ask for a new one.".into(),
                ));
            }
        }
        let ip = origin.map(|o| o.ip.as_str()).unwrap_or("");
        let actor = Actor {
            user_id: creator.or(Some(user.id)),
            ip,
        };
        audit::record(
            tx,
            event,
            &actor,
            crate::records::audit::Subject::Account(&user.username),
            &format!("role {role}"),
        )?;
        if event == Event::SignUp {
            // The address is confirmed by a link sent to it (in this same transaction).
            send_verification(tx, user.id)?;
        } else {
            // Made by staff, the shell or an invite link: the address is taken as given.
            users::set_verified(tx, user.id)?;
        }
        let user = users::by_id(tx, user.id)?.ok_or(Error::NotFound("user"))?;
        let session = match origin {
            Some(o) => {
                users::mark_login(tx, user.id)?;
                Some(sessions::create(
                    tx,
                    user.id,
                    policy.life,
                    &o.ip,
                    &o.user_agent,
                )?)
            }
            None => None,
        };
        Ok((user, session))
    })
}

/// The (account, address) pairs whose password check is under way in this process (the
/// account named with its database, for processes that hold several, such as tests).
struct Checking(String, String);

impl Checking {
    fn pairs() -> &'static std::sync::Mutex<std::collections::HashSet<(String, String)>> {
        static PAIRS: std::sync::OnceLock<
            std::sync::Mutex<std::collections::HashSet<(String, String)>>,
        > = std::sync::OnceLock::new();
        PAIRS.get_or_init(Default::default)
    }

    /// Marks the pair as being checked; `None` if it already is.
    fn start(subject: &str, ip: &str) -> Option<Checking> {
        let key = (subject.to_string(), ip.to_string());
        let mut pairs = Checking::pairs().lock().unwrap_or_else(|e| e.into_inner());
        pairs.insert(key.clone()).then(|| Checking(key.0, key.1))
    }
}

impl Drop for Checking {
    fn drop(&mut self) {
        Checking::pairs()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(std::mem::take(&mut self.0), std::mem::take(&mut self.1)));
    }
}

/// "12 seconds", "3 minutes": how long to wait, in words.
fn wait_words(secs: i64) -> String {
    let secs = secs.max(1);
    if secs < 90 {
        format!("{secs} second{}", if secs == 1 { "" } else { "s" })
    } else {
        format!("{} minutes", (secs + 59) / 60)
    }
}

/// Logs in by username or email. Refuses, with a clear message, an account or address that has
/// failed too often recently; every outcome is audited.
pub fn login(
    db: &Db,
    policy: &Policy,
    directory: Option<&Directory>,
    login: &str,
    password: &str,
    origin: &Origin,
) -> Result<(User, String)> {
    let login = login.trim().to_lowercase();
    let fail = || {
        Error::Invalid(vec![FieldError::new(
            "login",
            "That username or email and password do not match an account.",
        )])
    };
    if login.is_empty() || login.len() > 254 || password.is_empty() || password.len() > 4000 {
        return Err(fail());
    }
    let found = db.read(|c| users::for_login(c, &login))?;
    let subject = found
        .as_ref()
        .map(|(u, _)| u.username.clone())
        .unwrap_or_else(|| login.chars().filter(|c| !c.is_control()).collect());
    // Throttle: failed tries for this account from this address (and from this address for
    // any account) slow further tries from there, by growing delays; another address, the
    // owner's, is not held back by them.
    let window_start = now() - policy.window_secs;
    let account_since = found
        .as_ref()
        .and_then(|(u, _)| u.last_login_at)
        .map_or(window_start, |t| t.max(window_start));
    let (pair, address) = db.read(|c| {
        Ok::<_, Error>((
            audit::count_since(
                c,
                Event::LoginFailed,
                Some(&subject),
                Some(&origin.ip),
                account_since,
            )?,
            audit::count_since(c, Event::LoginFailed, None, Some(&origin.ip), window_start)?,
        ))
    })?;
    let held = [
        (
            pair,
            policy.max_failures_per_account,
            "Too many failed log-ins for this account from your address. Try again in {t}, or reset your password.",
        ),
        (
            address,
            policy.max_failures_per_address,
            "Too many failed log-ins from your network address. Try again in {t}.",
        ),
    ]
    .into_iter()
    .filter_map(|((failures, last), free, msg)| {
        let until = last? + policy.delay_after(failures, free)?;
        (until > now()).then_some((until, msg))
    })
    .max_by_key(|(until, _)| *until);
    if let Some((until, msg)) = held {
        db.write(|tx| {
            audit::record(
                tx,
                Event::LoginThrottled,
                &Actor {
                    user_id: None,
                    ip: &origin.ip,
                },
                crate::records::audit::Subject::Account(&subject),
                "",
            )
        })?;
        return Err(Error::Throttled(
            msg.replace("{t}", &wait_words(until - now())),
        ));
    }
    // One check at a time for an account from an address: a burst sent the moment a wait ends
    // gets one guess, not one per request.
    let pair = format!("{}\n{subject}", db.path().display());
    let Some(_checking) = Checking::start(&pair, &origin.ip) else {
        return Err(Error::Throttled(
            "A log-in for this account from your address is being checked. Try again in a moment."
                .into(),
        ));
    };
    let ok_user = match check_password(db, policy, directory, &found, &login, password, origin)? {
        Checked::User(user) => Some(user),
        Checked::Refused => None,
        Checked::Said(err) => return Err(err),
    };
    match ok_user.as_ref() {
        Some(user) if user.is_disabled() => {
            login_failed(db, origin, &subject, "account disabled")?;
            Err(Error::Forbidden(DISABLED.into()))
        }
        Some(user) => {
            // A hash made with older parameters is made again now (best effort: a busy
            // server keeps the old one until the next log-in).
            let rehashed = match &found {
                Some((u, hash))
                    if u.source == AuthSource::Local && password::needs_rehash(hash) =>
                {
                    password::hash(password).ok().map(|new| (hash.clone(), new))
                }
                _ => None,
            };
            let token = db.write(|tx| {
                if let Some((old, new)) = &rehashed {
                    users::rehash(tx, user.id, old, new)?;
                }
                // After enough failed tries to slow someone, a log-in from an address this
                // account never logged in from is told to its owner.
                let (failures, _) = audit::count_since(
                    tx,
                    Event::LoginFailed,
                    Some(&user.username),
                    None,
                    account_since,
                )?;
                if failures >= policy.max_failures_per_account
                    && !audit::seen_from(tx, Event::Login, &user.username, &origin.ip)?
                {
                    crate::mail::to_user(
                        tx,
                        crate::mail::Kind::LoginAfterFailures,
                        user.id,
                        serde_json::json!({ "ip": origin.ip, "failures": failures }),
                        None,
                    )?;
                }
                open_session(tx, policy, user, origin, "")
            })?;
            Ok((user.clone(), token))
        }
        None => {
            let why = if found.is_some() {
                "wrong password"
            } else {
                "no such account"
            };
            login_failed(db, origin, &subject, why)?;
            Err(fail())
        }
    }
}

/// Said to someone whose account is disabled, however they log in.
const DISABLED: &str =
    "This account is disabled. Ask the lab staff if you think this is a mistake.";

/// A refused log-in, audited (throttling counts these rows); `subject`: the account named.
fn login_failed(db: &Db, origin: &Origin, subject: &str, detail: &str) -> Result<()> {
    db.write(|tx| {
        audit::record(
            tx,
            Event::LoginFailed,
            &Actor {
                user_id: None,
                ip: &origin.ip,
            },
            crate::records::audit::Subject::Account(subject),
            detail,
        )
    })
}

/// Opens a session for `user`, who has just proved who they are: the log-in is audited
/// (`how` says how, when not by a password).
fn open_session(
    tx: &rusqlite::Connection,
    policy: &Policy,
    user: &User,
    origin: &Origin,
    how: &str,
) -> Result<String> {
    users::mark_login(tx, user.id)?;
    audit::record(
        tx,
        Event::Login,
        &Actor {
            user_id: Some(user.id),
            ip: &origin.ip,
        },
        crate::records::audit::Subject::Account(&user.username),
        how,
    )?;
    sessions::create(tx, user.id, policy.life, &origin.ip, &origin.user_agent)
}

/// Logs in someone the institution's single sign-on vouches for (their ID token checked):
/// their account is found by the provider's subject (or, once, by the username of an account
/// staff linked to single sign-on), made at the first log-in, brought up to date at each.
/// A refusal (a clash with a local account, a disabled account) is audited and said.
pub fn sso_login(
    db: &Db,
    policy: &Policy,
    person: external::Person,
    origin: &Origin,
) -> Result<(User, String)> {
    let subject = person.username.as_str().to_string();
    let found = db.read(|c| {
        Ok::<_, Error>(
            match users::by_external(c, AuthSource::Oidc, &person.external_id)? {
                Some(u) => Some(u),
                None => users::linked_waiting(c, AuthSource::Oidc, person.username.as_str())?,
            },
        )
    })?;
    let refuse = |why: &str, err: Error| -> Result<(User, String)> {
        login_failed(db, origin, &subject, why)?;
        Err(err)
    };
    match external::account(db, AuthSource::Oidc, found.as_ref(), person, origin)? {
        Checked::User(user) if user.is_disabled() => refuse(
            "account disabled (single sign-on)",
            Error::Forbidden(DISABLED.into()),
        ),
        Checked::User(user) => {
            let token = db.write(|tx| open_session(tx, policy, &user, origin, "single sign-on"))?;
            Ok((user, token))
        }
        Checked::Said(e) => refuse("single sign-on refused", e),
        Checked::Refused => refuse(
            "single sign-on refused",
            Error::Forbidden("Single sign-on did not vouch for you.".into()),
        ),
    }
}

/// A single sign-on log-in refused before anyone was known (a forged or replayed answer, the
/// provider's refusal): audited, with `why`.
pub fn sso_refused(db: &Db, origin: &Origin, why: &str) -> Result<()> {
    login_failed(db, origin, "(single sign-on)", why)
}

/// What a password check came to.
pub(crate) enum Checked {
    User(User),
    /// Wrong password or no such account (the same answer for both).
    Refused,
    /// Refused with something to say (the directory is down, a clash, local log-ins off).
    Said(Error),
}

/// Said to someone who tries to set a password here for an account that has none.
pub const COLLEGE_PASSWORD: &str =
    "Your account logs in with your college password: change it where the college says to.";

/// Why an account was disabled by the directory check (and enabled again when the directory
/// vouches for it at a later log-in).
pub const DIRECTORY_GONE: &str = "no longer found in the college directory";

/// Checks the password: against the directory for its accounts (and for names not known here),
/// against the hash kept here for local ones. A local account whose password fails but whose
/// name the directory knows with that password is a clash, told to the person and to staff,
/// never merged.
fn check_password(
    db: &Db,
    policy: &Policy,
    directory: Option<&Directory>,
    found: &Option<(User, String)>,
    login: &str,
    password: &str,
    origin: &Origin,
) -> Result<Checked> {
    let local = match found {
        Some((user, hash)) if user.source == AuthSource::Local => {
            Some((user, password::verify(hash, password)?))
        }
        _ => None,
    };
    if let Some((user, true)) = local {
        if policy.local_logins_admins_only && user.role != Role::Admin {
            return Ok(Checked::Said(Error::Forbidden(
                "Passwords kept here are for the lab's admins only: log in with your college \
                 account."
                    .into(),
            )));
        }
        return Ok(Checked::User(user.clone()));
    }
    let Some(dir) = directory else {
        if local.is_none() {
            password::verify_dummy(password)?;
        }
        return Ok(Checked::Refused);
    };
    // The directory is asked by username: the one of the account found, or the name typed.
    let name = match found {
        Some((user, _)) if user.source == AuthSource::Oidc => {
            password::verify_dummy(password)?;
            return Ok(Checked::Refused);
        }
        Some((user, _)) => user.username.clone(),
        None => login.to_string(),
    };
    let Ok(username) = Username::parse(&name) else {
        // Not a username (filter characters, an unknown address): the directory never sees it.
        password::verify_dummy(password)?;
        return Ok(Checked::Refused);
    };
    let person = match dir.authenticate(&username, password) {
        Ok(directory::Verdict::Person(p)) => p,
        Ok(directory::Verdict::Refused) => return Ok(Checked::Refused),
        Err(directory::DirectoryError::Unusable(why)) => {
            return Ok(Checked::Said(Error::Forbidden(why)))
        }
        Err(e) => {
            tracing::warn!(error = %e, "directory log-in");
            return Ok(Checked::Said(Error::Throttled(
                "The college directory does not answer right now. Try again in a few minutes."
                    .into(),
            )));
        }
    };
    external::account(
        db,
        AuthSource::Ldap,
        found.as_ref().map(|(u, _)| u),
        person,
        origin,
    )
}

/// What a look at the directory accounts came to.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DirectoryCheck {
    pub looked_up: usize,
    pub disabled: Vec<String>,
}

/// Looks every enabled directory account up again with the service account: one the directory
/// no longer finds (gone, or marked disabled as the user filter says) is disabled here, its
/// sessions ended and its gateway login removed. When the directory finds none of several
/// accounts, its settings are more likely wrong than everyone gone: nobody is disabled.
pub fn check_directory_accounts(db: &Db, dir: &Directory) -> Result<DirectoryCheck> {
    if !dir.can_look_up() {
        return Ok(DirectoryCheck::default());
    }
    let accounts = db.read(|c| users::enabled_from(c, AuthSource::Ldap))?;
    let names: Vec<Username> = accounts
        .iter()
        .filter_map(|u| Username::parse(&u.username).ok())
        .collect();
    if names.is_empty() {
        return Ok(DirectoryCheck::default());
    }
    let found = dir
        .look_up(&names)
        .map_err(|e| Error::Internal(anyhow::anyhow!(e)))?;
    let gone: Vec<String> = found
        .iter()
        .filter(|(_, person)| person.is_none())
        .map(|(u, _)| u.as_str().to_string())
        .collect();
    if gone.len() == names.len() && names.len() > 1 {
        tracing::warn!(
            accounts = names.len(),
            "the college directory found none of its accounts: its settings (ldap_user_base, \
             ldap_user_filter) are likely wrong; nobody was disabled"
        );
        return Ok(DirectoryCheck {
            looked_up: names.len(),
            disabled: Vec::new(),
        });
    }
    let disabled = db.write(|tx| {
        let mut disabled = Vec::new();
        for name in &gone {
            let Some(user) = users::by_username(tx, name)? else {
                continue;
            };
            if user.is_disabled() || user.source != AuthSource::Ldap {
                continue;
            }
            users::set_disabled(tx, user.id, Some(DIRECTORY_GONE))?;
            crate::records::jobs::enqueue_gateway(tx, Some(user.id))?;
            let ended = sessions::delete_all_for(tx, user.id)?;
            audit::record(
                tx,
                Event::AccountDisabled,
                &Actor {
                    user_id: None,
                    ip: "",
                },
                crate::records::audit::Subject::Account(&user.username),
                &format!("{DIRECTORY_GONE} ({ended} sessions ended)"),
            )?;
            disabled.push(user.username);
        }
        Ok::<_, Error>(disabled)
    })?;
    Ok(DirectoryCheck {
        looked_up: names.len(),
        disabled,
    })
}

/// Hands a local account over to the college directory or single sign-on (`source`), as
/// staff decide after a clash: its password here is dropped and its sessions end; at its next
/// log-in through that source it takes the name, address and groups said there.
/// `actor`: the staff member (None: the shell).
pub fn link_to_directory(
    db: &Db,
    username: &str,
    source: AuthSource,
    actor: Option<&User>,
    ip: &str,
) -> Result<User> {
    if source == AuthSource::Local {
        return Err(Error::Forbidden(
            "An account is linked to the college directory or single sign-on.".into(),
        ));
    }
    db.write(|tx| {
        let user = users::by_username(tx, username)?.ok_or(Error::NotFound("user"))?;
        // As for disabling: staff link students' accounts, only an admin a staff or admin one
        // (whoever holds that name at the source gets the account).
        if let Some(a) = actor {
            manage::may_manage(a, &user)?;
        }
        if user.source == source {
            return Ok(user);
        }
        users::set_source(tx, user.id, source)?;
        let ended = sessions::delete_all_for(tx, user.id)?;
        audit::record(
            tx,
            Event::AccountLinked,
            &Actor {
                user_id: actor.map(|a| a.id),
                ip,
            },
            crate::records::audit::Subject::Account(&user.username),
            &format!(
                "was {}, now {} ({ended} sessions ended)",
                user.source.as_str(),
                source.as_str()
            ),
        )?;
        users::by_id(tx, user.id)?.ok_or(Error::NotFound("user"))
    })
}

/// Ends one session.
pub fn logout(db: &Db, session: &Session, ip: &str) -> Result<()> {
    db.write(|tx| {
        sessions::delete(tx, &session.token_hash)?;
        audit::record(
            tx,
            Event::Logout,
            &Actor {
                user_id: Some(session.user.id),
                ip,
            },
            crate::records::audit::Subject::Account(&session.user.username),
            "",
        )
    })
}

/// Ends every session of the account, this one included.
pub fn logout_everywhere(db: &Db, user: &User, ip: &str) -> Result<usize> {
    db.write(|tx| {
        let n = sessions::delete_all_for(tx, user.id)?;
        audit::record(
            tx,
            Event::LogoutEverywhere,
            &Actor {
                user_id: Some(user.id),
                ip,
            },
            crate::records::audit::Subject::Account(&user.username),
            &format!("{n} sessions ended"),
        )?;
        Ok(n)
    })
}

/// Changes the password after checking the current one; other sessions of the account end.
pub fn change_password(
    db: &Db,
    session: &Session,
    current: &str,
    new: &str,
    confirm: &str,
    ip: &str,
) -> Result<()> {
    let user = &session.user;
    if user.source != AuthSource::Local {
        return Err(Error::Forbidden(COLLEGE_PASSWORD.into()));
    }
    let username = Username::parse(&user.username)?;
    let hash = db.read(|c| users::password_hash(c, user.id))?;
    if !password::verify(&hash, current)? {
        return Err(
            FieldError::new("current_password", "That is not your current password.").into(),
        );
    }
    let new = NewPassword::parse("new_password", new, username.as_str(), Some(&user.email))?;
    if new.expose() != confirm {
        return Err(FieldError::new("new_password_confirm", "The two passwords differ.").into());
    }
    let new_hash = password::hash(new.expose())?;
    db.write(|tx| {
        users::set_password_hash(tx, user.id, &new_hash)?;
        sessions::end_others(tx, user.id, &session.token_hash)?;
        audit::record(
            tx,
            Event::PasswordChanged,
            &Actor {
                user_id: Some(user.id),
                ip,
            },
            crate::records::audit::Subject::Account(&user.username),
            "",
        )
    })
}
