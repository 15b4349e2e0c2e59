//! `slices user`: accounts made from the shell.

use std::io::BufRead;

use anyhow::bail;
use clap::Subcommand;

use super::ConfigArgs;
use crate::context::Context;
use crate::domain::Role;
use crate::ops::accounts::{self, Event, Grant, SignUpForm};

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Create an account. The password is asked for, or read from standard input.
    Add {
        /// The username (2 to 32 lowercase letters, digits, - or _).
        name: String,
        #[arg(long, default_value = "student")]
        role: Role,
        #[arg(long)]
        email: String,
        /// The person's name (default: the username).
        #[arg(long = "display-name")]
        display_name: Option<String>,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        cfg: ConfigArgs,
    },
    /// Hand a local account over to the college directory (after a clash the audit log shows
    /// as "Directory log-in met a local account"): its password here is dropped, its sessions
    /// end, and its owner logs in with their college password from then on.
    Link {
        /// The username of the account here.
        name: String,
        #[command(flatten)]
        cfg: ConfigArgs,
    },
}

pub async fn run(what: UserCommand) -> anyhow::Result<()> {
    match what {
        UserCommand::Add {
            name,
            role,
            email,
            display_name,
            password_stdin,
            cfg,
        } => {
            // The name and address are checked before anything is asked or opened.
            crate::domain::Username::parse_new(&name)
                .map_err(|e| anyhow::anyhow!("{}", e.message))?;
            crate::domain::Email::parse(&email).map_err(|e| anyhow::anyhow!("{}", e.message))?;
            let ctx = Context::open_existing(cfg.load(&[])?)?;
            let password = read_password(password_stdin)?;
            let form = SignUpForm {
                display_name: display_name.unwrap_or_else(|| name.clone()),
                username: name,
                email,
                password_confirm: password.clone(),
                password,
            };
            let ctx2 = ctx.clone();
            let user = tokio::task::spawn_blocking(move || {
                let account = form.check()?;
                accounts::create_account(
                    &ctx2.db,
                    &ctx2.policy,
                    account,
                    Grant {
                        role,
                        event: Event::AccountCreated,
                        creator: None,
                        origin: None,
                        invite: None,
                    },
                )
            })
            .await?
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .0;
            println!(
                "Created {} account `{}` <{}>.",
                user.role, user.username, user.email
            );
            Ok(())
        }
        UserCommand::Link { name, cfg } => {
            let ctx = Context::open_existing(cfg.load(&[])?)?;
            let Some(source) = ctx.link_source() else {
                bail!(
                    "there is no college directory or single sign-on to link to: set ldap_url \
                     or oidc_issuer first"
                );
            };
            let db = ctx.db.clone();
            let user = tokio::task::spawn_blocking(move || {
                accounts::link_to_directory(&db, &name, source, None, "")
            })
            .await?
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!(
                "`{}` now logs in through {} (its password here is gone).",
                user.username,
                accounts::external::source_words(source)
            );
            Ok(())
        }
    }
}

fn read_password(from_stdin: bool) -> anyhow::Result<String> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        return Ok(line.trim_end_matches(['\n', '\r']).to_string());
    }
    let ask = |prompt: &str| {
        rpassword::prompt_password(prompt).map_err(|e| {
            if e.raw_os_error() == Some(6) || e.kind() == std::io::ErrorKind::NotFound {
                anyhow::anyhow!(
                    "there is no terminal to ask for the password: run it in one, or give the password on standard input with --password-stdin"
                )
            } else {
                anyhow::anyhow!("cannot read the password: {e}")
            }
        })
    };
    let first = ask("Password (at least 10 characters): ")?;
    let second = ask("Password again: ")?;
    if first != second {
        bail!("the two passwords differ");
    }
    Ok(first)
}
