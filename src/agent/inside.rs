//! What the agent makes inside a running container, the same under every driver: the user
//! with exactly the spec's keys, and root for them (passwordless sudo) when the plan says so.
//! Every file is written from inside the container (`lxc-attach`, `vzctl exec2`): the agent
//! never follows, as host root, a path that root in the slice (or its user) may have made into
//! a link.

use super::driver::{DResult, DriverError};
use super::run::Output;
use crate::slave_link::EnvSpec;

/// The student's sudo rule inside the slice.
pub const SUDOERS_FILE: &str = "/etc/sudoers.d/slices-student";

/// Runs a command inside the container, with optional standard input.
pub type Exec<'a> = &'a dyn Fn(&[&str], Option<&[u8]>) -> DResult<Output>;

/// The user, as the seed's create_env adds it (key-only: no password), exactly the spec's
/// keys, and the plan's root.
pub fn ensure_user(exec: Exec, spec: &EnvSpec) -> DResult<()> {
    let user = spec.username.as_str();
    if exec(&["id", "-u", user], None)?.code != 0 {
        exec(&["useradd", "-m", "-s", "/bin/bash", user], None)?.ok("useradd")?;
    }
    // A key-only account: not locked, no password.
    exec(&["usermod", "-p", "*", user], None)?.ok("usermod")?;
    let ssh = format!("/home/{user}/.ssh");
    let file = format!("{ssh}/authorized_keys");
    exec(
        &["install", "-d", "-m", "700", "-o", user, "-g", user, &ssh],
        None,
    )?
    .ok("making .ssh")?;
    let keys: String = spec.keys.iter().map(|k| format!("{k}\n")).collect();
    exec(&["tee", &file], Some(keys.as_bytes()))?.ok("writing authorized_keys")?;
    exec(&["chown", &format!("{user}:{user}"), &file], None)?.ok("chown")?;
    exec(&["chmod", "600", &file], None)?.ok("chmod")?;
    ensure_root(exec, spec)
}

/// Root for the student (the plan's `root`): passwordless sudo, or none.
fn ensure_root(exec: Exec, spec: &EnvSpec) -> DResult<()> {
    if !spec.root {
        exec(&["rm", "-f", SUDOERS_FILE], None)?.ok("removing the sudo rule")?;
        return Ok(());
    }
    if exec(&["test", "-x", "/usr/bin/sudo"], None)?.code != 0 {
        return Err(DriverError::msg(format!(
            "the template {} has no sudo, so the student would have no root: add sudo to the \
             template, or turn root off in the plan",
            spec.template
        )));
    }
    let rule = format!("{} ALL=(ALL:ALL) NOPASSWD: ALL\n", spec.username);
    exec(&["install", "-d", "-m", "750", "/etc/sudoers.d"], None)?.ok("making /etc/sudoers.d")?;
    exec(&["tee", SUDOERS_FILE], Some(rule.as_bytes()))?.ok("writing the sudo rule")?;
    exec(&["chmod", "440", SUDOERS_FILE], None)?.ok("chmod the sudo rule")?;
    Ok(())
}
