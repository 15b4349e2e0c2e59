//! Email addresses and passwords by mail: confirming an address (by its link or by staff),
//! sending the link again, and resetting a forgotten password.

use super::*;
use crate::domain::FieldError;
use crate::error::{Error, Result};
use crate::store::{now, Db};

/// Mails a fresh single-use link that confirms the account's address (inside the caller's
/// transaction).
pub(super) fn send_verification(tx: &rusqlite::Connection, user_id: i64) -> Result<()> {
    let token = email_tokens::create(tx, user_id, email_tokens::Purpose::Verify)?;
    let data = serde_json::json!({ "token": token });
    crate::mail::to_user(tx, crate::mail::Kind::VerifyEmail, user_id, data, None)?;
    Ok(())
}

/// Confirms an address with the link mailed at sign-up.
pub fn verify_email(db: &Db, token: &str, ip: &str) -> Result<User> {
    db.write(|tx| {
        let id =
            email_tokens::redeem(tx, token, email_tokens::Purpose::Verify)?.ok_or_else(|| {
                Error::Forbidden(
                    "This link has been used or has expired. Log in to get a new one.".into(),
                )
            })?;
        users::set_verified(tx, id)?;
        let user = users::by_id(tx, id)?.ok_or(Error::NotFound("user"))?;
        audit::record(
            tx,
            Event::EmailVerified,
            &Actor {
                user_id: Some(id),
                ip,
            },
            crate::records::audit::Subject::Account(&user.username),
            "by link",
        )?;
        Ok(user)
    })
}

/// Sends a new confirmation link (at most three an hour).
pub fn resend_verification(db: &Db, user: &User) -> Result<bool> {
    db.write(|tx| {
        let since = now() - 3600;
        if user.email_verified_at.is_some()
            || email_tokens::count_since(tx, user.id, email_tokens::Purpose::Verify, since)? >= 3
        {
            return Ok(false);
        }
        send_verification(tx, user.id)?;
        Ok(true)
    })
}

/// Staff confirm an address by hand.
pub fn verify_by_staff(db: &Db, actor: &User, username: &str, ip: &str) -> Result<User> {
    if !actor.role.is_staff() {
        return Err(Error::Forbidden("Only staff may do this.".into()));
    }
    db.write(|tx| {
        let target = users::by_username(tx, username)?.ok_or(Error::NotFound("user"))?;
        users::set_verified(tx, target.id)?;
        audit::record(
            tx,
            Event::EmailVerified,
            &Actor {
                user_id: Some(actor.id),
                ip,
            },
            crate::records::audit::Subject::Account(&target.username),
            "by staff",
        )?;
        users::by_id(tx, target.id)?.ok_or(Error::NotFound("user"))
    })
}

/// Mails a password-reset link to the account with this address or username, if there is
/// one (the answer is the same either way, so it does not tell who has an account). At most
/// three links an hour per account.
pub fn request_reset(db: &Db, login: &str, ip: &str) -> Result<()> {
    let login = login.trim().to_lowercase();
    if login.is_empty() || login.len() > 254 {
        return Err(FieldError::new("login", "Enter your email address or username.").into());
    }
    db.write(|tx| {
        let Some((user, _)) = users::for_login(tx, &login)? else {
            return Ok(());
        };
        // An account with no password here gets no link to set one (the answer is the same).
        if user.is_disabled()
            || user.source != super::AuthSource::Local
            || email_tokens::count_since(tx, user.id, email_tokens::Purpose::Reset, now() - 3600)?
                >= 3
        {
            return Ok(());
        }
        let token = email_tokens::create(tx, user.id, email_tokens::Purpose::Reset)?;
        crate::mail::to_user(
            tx,
            crate::mail::Kind::PasswordReset,
            user.id,
            serde_json::json!({ "token": token }),
            None,
        )?;
        audit::record(
            tx,
            Event::PasswordResetRequested,
            &Actor { user_id: None, ip },
            crate::records::audit::Subject::Account(&user.username),
            "",
        )?;
        Ok(())
    })
}

/// Sets a new password with a reset link; every session of the account ends.
pub fn reset_password(db: &Db, token: &str, new: &str, confirm: &str, ip: &str) -> Result<User> {
    let user_id = db
        .read(|c| email_tokens::peek(c, token, email_tokens::Purpose::Reset))?
        .ok_or_else(|| {
            Error::Forbidden("This link has been used or has expired. Ask for a new one.".into())
        })?;
    let user = db
        .read(|c| users::by_id(c, user_id))?
        .ok_or(Error::NotFound("user"))?;
    if user.source != super::AuthSource::Local {
        return Err(Error::Forbidden(super::COLLEGE_PASSWORD.into()));
    }
    let username = Username::parse(&user.username)?;
    let new = NewPassword::parse("new_password", new, username.as_str(), Some(&user.email))?;
    if new.expose() != confirm {
        return Err(FieldError::new("new_password_confirm", "The two passwords differ.").into());
    }
    let hash = password::hash(new.expose())?;
    db.write(|tx| {
        if email_tokens::redeem(tx, token, email_tokens::Purpose::Reset)?.is_none() {
            return Err(Error::Forbidden(
                "This link has been used or has expired. Ask for a new one.".into(),
            ));
        }
        users::set_password_hash(tx, user_id, &hash)?;
        // Reaching the mail proves the address too.
        users::set_verified(tx, user_id)?;
        sessions::delete_all_for(tx, user_id)?;
        audit::record(
            tx,
            Event::PasswordReset,
            &Actor {
                user_id: Some(user_id),
                ip,
            },
            crate::records::audit::Subject::Account(&user.username),
            "",
        )?;
        Ok(())
    })?;
    Ok(user)
}
