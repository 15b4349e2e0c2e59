//! Accounts another system vouches for (the college directory, single sign-on): made at the
//! first log-in from what that system says, brought up to date at each one, and never merged
//! with a local account silently: staff decide.

use super::{audit, users, Actor, AuthSource, Checked, Event, Origin, User, DIRECTORY_GONE};
use crate::domain::{DisplayName, Email, Role, Username};
use crate::error::{Error, Result};
use crate::store::Db;

/// Someone another system vouches for, as this system will know them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    /// Who they are there, for good: the directory entry's DN, or the provider's subject.
    pub external_id: String,
    pub username: Username,
    pub email: Email,
    pub display_name: DisplayName,
    /// The role its groups give, when that system decides roles.
    pub role: Option<Role>,
    /// The course codes its groups name.
    pub courses: Vec<String>,
}

/// The role group membership gives: admin, staff, or student when neither; `None` when no
/// group decides roles (both lists empty: roles are given here). `is_member` says whether the
/// person is in one of the groups listed.
pub fn role_from_groups(
    admin: &[String],
    staff: &[String],
    is_member: impl Fn(&[String]) -> bool,
) -> Option<Role> {
    if admin.is_empty() && staff.is_empty() {
        None
    } else if is_member(admin) {
        Some(Role::Admin)
    } else if is_member(staff) {
        Some(Role::Staff)
    } else {
        Some(Role::Student)
    }
}

/// The system `source` names, in a sentence ("the ...").
fn from(source: AuthSource) -> &'static str {
    match source {
        AuthSource::Oidc => "single sign-on",
        AuthSource::Ldap => "college directory",
        AuthSource::Local => "password kept here",
    }
}

/// How an account from `source` logs in, in a sentence ("... logs in through ...").
pub fn source_words(source: AuthSource) -> &'static str {
    match source {
        AuthSource::Oidc => "the institution's single sign-on",
        AuthSource::Ldap => "the college directory",
        AuthSource::Local => "a password kept here",
    }
}

/// What `external_id` is for `source`, in an audit row.
fn entry(source: AuthSource) -> &'static str {
    match source {
        AuthSource::Oidc => "single sign-on subject",
        _ => "directory entry",
    }
}

/// The account here of someone `source` vouches for: made at their first log-in, brought up to
/// date (name, address, role when the source decides roles, courses) at each one. `found`: the
/// account of theirs already here, if any. A local account in the way is never taken over.
pub(crate) fn account(
    db: &Db,
    source: AuthSource,
    found: Option<&User>,
    person: Person,
    origin: &Origin,
) -> Result<Checked> {
    db.write(|tx| {
        let actor = |id| Actor {
            user_id: id,
            ip: &origin.ip,
        };
        let subject = crate::records::audit::Subject::Account(person.username.as_str());
        let user = match found {
            Some(user) if user.source == source => {
                let role = person.role.unwrap_or(user.role);
                users::update_external(
                    tx,
                    user.id,
                    &person.external_id,
                    &person.email,
                    &person.display_name,
                    role,
                )?;
                if role != user.role {
                    audit::record(
                        tx,
                        Event::RoleChanged,
                        &actor(None),
                        subject,
                        &format!("{} -> {role} ({} groups)", user.role, from(source)),
                    )?;
                }
                if user.disabled_reason.as_deref() == Some(DIRECTORY_GONE) {
                    users::set_disabled(tx, user.id, None)?;
                    audit::record(
                        tx,
                        Event::AccountEnabled,
                        &actor(None),
                        subject,
                        &format!("vouched for by the {} again", from(source)),
                    )?;
                }
                user.id
            }
            _ => {
                let taken = users::by_username(tx, person.username.as_str())?
                    .or(users::by_email(tx, person.email.as_str())?);
                if let Some(other) = taken {
                    audit::record(
                        tx,
                        Event::DirectoryClash,
                        &actor(None),
                        crate::records::audit::Subject::Account(&other.username),
                        &format!("{} {}", entry(source), person.external_id),
                    )?;
                    return Ok(Checked::Said(Error::Forbidden(format!(
                        "An account here already has the name {} or your college address, and \
                         it is not linked to your college account. The lab staff have been told: \
                         they decide whether to link it.",
                        other.username
                    ))));
                }
                let role = person.role.unwrap_or(Role::Student);
                let user = users::insert_external(
                    tx,
                    source,
                    &person.external_id,
                    &person.username,
                    &person.email,
                    &person.display_name,
                    role,
                )?;
                audit::record(
                    tx,
                    Event::AccountCreated,
                    &actor(Some(user.id)),
                    subject,
                    &format!("role {role}, from the {}", from(source)),
                )?;
                user.id
            }
        };
        crate::records::courses::set_directory_members(tx, user, &person.courses)?;
        let user = users::by_id(tx, user)?.ok_or(Error::NotFound("user"))?;
        Ok(Checked::User(user))
    })
}
