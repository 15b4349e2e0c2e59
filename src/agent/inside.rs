//! What the agent makes inside a running container, the same under every driver: the user
//! with exactly the spec's keys, and root for them (passwordless sudo) when the plan says so.
//!
//! Everything runs inside the container (`lxc-attach`, `vzctl exec2`): the agent never
//! follows, as host root, a path that root in the slice may have made into a link. The user's
//! own files (`~/.ssh`) are written *as the user* (`runuser`), so a link the user made leads
//! only where the user could write anyway: a student without root cannot turn the agent's
//! writes into root's.
//!
//! The steps exist once as a fixed script ([`SETUP`], one call: how the lxc driver runs them)
//! and once as single commands ([`ensure_user`]: for `vzctl exec2`, which joins its arguments
//! into a shell line and so cannot take a script with arguments apart). Values reach either
//! only as separate arguments of checked types, and the keys on standard input.

use super::driver::{DResult, DriverError};
use super::run::Output;
use crate::slave_link::EnvSpec;

/// The student's sudo rule inside the slice.
pub const SUDOERS_FILE: &str = "/etc/sudoers.d/slices-student";

/// `sh -c SETUP slices-setup USER yes|no`, the keys on standard input. Exits 3 when the plan
/// gives root and the template has no sudo.
pub const SETUP: &str = r#"set -eu
user=$1 root=$2
id -u "$user" >/dev/null 2>&1 || useradd -m -s /bin/bash "$user"
usermod -p '*' "$user"
home=$(getent passwd "$user" | cut -d: -f6)
runuser -u "$user" -- sh -c 'set -eu; umask 077; mkdir -p "$1/.ssh"; new="$1/.ssh/.authorized_keys.slices"; cat > "$new"; chmod 600 "$new"; mv -fT "$new" "$1/.ssh/authorized_keys"' sh "$home"
if [ "$root" = yes ]; then
    [ -x /usr/bin/sudo ] || exit 3
    install -d -m 750 /etc/sudoers.d
    printf '%s ALL=(ALL:ALL) NOPASSWD: ALL\n' "$user" > /etc/sudoers.d/.slices-student.new
    chmod 440 /etc/sudoers.d/.slices-student.new
    mv -f /etc/sudoers.d/.slices-student.new /etc/sudoers.d/slices-student
else
    rm -f /etc/sudoers.d/slices-student
fi
"#;

/// The arguments after `sh -c SETUP`.
pub fn setup_args(spec: &EnvSpec) -> Vec<String> {
    vec![
        "slices-setup".into(),
        spec.username.to_string(),
        if spec.root { "yes" } else { "no" }.into(),
    ]
}

/// The keys file's text.
pub fn keys_text(spec: &EnvSpec) -> String {
    spec.keys.iter().map(|k| format!("{k}\n")).collect()
}

/// What a failed [`SETUP`] means.
pub fn setup_failed(spec: &EnvSpec, out: Output) -> DriverError {
    if out.code == 3 {
        no_sudo(spec)
    } else {
        out.ok("setting up the user")
            .err()
            .unwrap_or_else(|| DriverError::msg("setting up the user failed"))
    }
}

fn no_sudo(spec: &EnvSpec) -> DriverError {
    DriverError::msg(format!(
        "the template {} has no sudo, so the student would have no root: add sudo to the \
         template, or turn root off in the plan",
        spec.template
    ))
}

/// Runs a command inside the container, with optional standard input.
pub type Exec<'a> = &'a dyn Fn(&[&str], Option<&[u8]>) -> DResult<Output>;

/// [`SETUP`]'s steps one command at a time.
pub fn ensure_user(exec: Exec, spec: &EnvSpec) -> DResult<()> {
    let user = spec.username.as_str();
    if exec(&["id", "-u", user], None)?.code != 0 {
        exec(&["useradd", "-m", "-s", "/bin/bash", user], None)?.ok("useradd")?;
    }
    // A key-only account: not locked, no password.
    exec(&["usermod", "-p", "*", user], None)?.ok("usermod")?;
    let ssh = format!("/home/{user}/.ssh");
    let new = format!("{ssh}/.authorized_keys.slices");
    let file = format!("{ssh}/authorized_keys");
    let as_user = |args: &[&str], stdin: Option<&[u8]>| {
        let mut a = vec!["runuser", "-u", user, "--"];
        a.extend(args);
        exec(&a, stdin)
    };
    as_user(&["mkdir", "-p", "-m", "700", &ssh], None)?.ok("making .ssh")?;
    as_user(&["tee", &new], Some(keys_text(spec).as_bytes()))?.ok("writing the keys")?;
    as_user(&["chmod", "600", &new], None)?.ok("chmod")?;
    as_user(&["mv", "-fT", &new, &file], None)?.ok("putting the keys in place")?;
    if !spec.root {
        exec(&["rm", "-f", SUDOERS_FILE], None)?.ok("removing the sudo rule")?;
        return Ok(());
    }
    if exec(&["test", "-x", "/usr/bin/sudo"], None)?.code != 0 {
        return Err(no_sudo(spec));
    }
    let rule = format!("{user} ALL=(ALL:ALL) NOPASSWD: ALL\n");
    let tmp = "/etc/sudoers.d/.slices-student.new";
    exec(&["install", "-d", "-m", "750", "/etc/sudoers.d"], None)?.ok("making /etc/sudoers.d")?;
    exec(&["tee", tmp], Some(rule.as_bytes()))?.ok("writing the sudo rule")?;
    exec(&["chmod", "440", tmp], None)?.ok("chmod the sudo rule")?;
    exec(&["mv", "-f", tmp, SUDOERS_FILE], None)?.ok("putting the sudo rule in place")?;
    Ok(())
}
