//! Staff manage accounts: roles, disabling and enabling (with the gateway following), and
//! the first admin's one-time link.

use super::*;
use crate::domain::{FieldError, Role};
use crate::error::{Error, Result};
use crate::store::Db;

/// The account someone with `actor`'s role may act on, or why not.
pub(super) fn may_manage(actor: &User, target: &User) -> Result<()> {
    if !actor.role.is_staff() {
        return Err(Error::Forbidden("Only staff may do this.".into()));
    }
    if actor.id == target.id {
        return Err(Error::Forbidden(
            "You cannot do this to your own account.".into(),
        ));
    }
    if target.role.is_staff() && actor.role != Role::Admin {
        return Err(Error::Forbidden(
            "Only an admin may change a staff or admin account.".into(),
        ));
    }
    Ok(())
}

/// Changes a role (admins only). The last enabled admin keeps the role.
pub fn set_role(db: &Db, actor: &User, username: &str, role: Role, ip: &str) -> Result<User> {
    if actor.role != Role::Admin {
        return Err(Error::Forbidden("Only an admin may change roles.".into()));
    }
    db.write(|tx| {
        let target = users::by_username(tx, username)?.ok_or(Error::NotFound("user"))?;
        may_manage(actor, &target)?;
        if target.role == role {
            return Ok(target);
        }
        if target.role == Role::Admin
            && target.disabled_at.is_none()
            && users::active_admins(tx)? <= 1
        {
            return Err(Error::Forbidden(
                "The last admin cannot stop being an admin.".into(),
            ));
        }
        users::set_role(tx, target.id, role)?;
        audit::record(
            tx,
            Event::RoleChanged,
            &Actor {
                user_id: Some(actor.id),
                ip,
            },
            crate::records::audit::Subject::Account(&target.username),
            &format!("{} -> {}", target.role, role),
        )?;
        users::by_id(tx, target.id)?.ok_or(Error::NotFound("user"))
    })
}

/// Disables an account and ends its sessions at once.
pub fn disable(db: &Db, actor: &User, username: &str, reason: &str, ip: &str) -> Result<User> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(FieldError::new(
            "reason",
            "Say why the account is disabled; the user will see it.",
        )
        .into());
    }
    if reason.chars().count() > 500
        || reason
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\r')
    {
        return Err(FieldError::new(
            "reason",
            "A reason has at most 500 characters of plain text.",
        )
        .into());
    }
    db.write(|tx| {
        let target = users::by_username(tx, username)?.ok_or(Error::NotFound("user"))?;
        may_manage(actor, &target)?;
        if target.is_disabled() {
            return Ok(target);
        }
        users::set_disabled(tx, target.id, Some(reason))?;
        // A disabled user's gateway login goes at once.
        crate::records::jobs::enqueue_gateway(tx, Some(target.id))?;
        let ended = sessions::delete_all_for(tx, target.id)?;
        audit::record(
            tx,
            Event::AccountDisabled,
            &Actor {
                user_id: Some(actor.id),
                ip,
            },
            crate::records::audit::Subject::Account(&target.username),
            &format!("{reason} ({ended} sessions ended)"),
        )?;
        users::by_id(tx, target.id)?.ok_or(Error::NotFound("user"))
    })
}

/// Enables a disabled account.
pub fn enable(db: &Db, actor: &User, username: &str, ip: &str) -> Result<User> {
    db.write(|tx| {
        let target = users::by_username(tx, username)?.ok_or(Error::NotFound("user"))?;
        may_manage(actor, &target)?;
        if !target.is_disabled() {
            return Ok(target);
        }
        users::set_disabled(tx, target.id, None)?;
        // ... and comes back when enabled.
        crate::records::jobs::enqueue_gateway(tx, Some(target.id))?;
        audit::record(
            tx,
            Event::AccountEnabled,
            &Actor {
                user_id: Some(actor.id),
                ip,
            },
            crate::records::audit::Subject::Account(&target.username),
            "",
        )?;
        users::by_id(tx, target.id)?.ok_or(Error::NotFound("user"))
    })
}

/// While no enabled admin exists, makes a fresh one-time link for creating the first one
/// (older unused links stop working). Returns the token, or None when an admin exists.
pub fn first_admin_invite(db: &Db) -> Result<Option<String>> {
    db.write(|tx| {
        if users::active_admins(tx)? > 0 {
            return Ok(None);
        }
        invites::revoke_unused(tx, Role::Admin)?;
        let token = invites::create(tx, Role::Admin, 7 * 24 * 3600, "first admin")?;
        audit::record(
            tx,
            Event::InviteCreated,
            &Actor::default(),
            crate::records::audit::Subject::None,
            "first admin link",
        )?;
        Ok(Some(token))
    })
}
