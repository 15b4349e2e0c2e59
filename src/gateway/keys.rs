//! Keys the master makes: each user's hop key pair and the master's own key for the gateway.

use anyhow::{anyhow, Context as _};

use super::*;
use crate::domain::Username;

/// A new ed25519 key pair in OpenSSH format: (private, public line).
pub(super) fn hop_key_pair(user: &Username) -> anyhow::Result<(String, String)> {
    use ssh_key::{rand_core::OsRng, Algorithm, LineEnding, PrivateKey};
    let mut key = PrivateKey::random(&mut OsRng, Algorithm::Ed25519)
        .map_err(|e| anyhow!("making a key: {e}"))?;
    key.set_comment(format!("slices-hop-{user}"));
    let private = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| anyhow!("encoding a key: {e}"))?
        .to_string();
    let public = key
        .public_key()
        .to_openssh()
        .map_err(|e| anyhow!("encoding a key: {e}"))?;
    Ok((private, format!("{public}\n")))
}

/// The master's key for the SSH target: read, or made (0600) when it is the default path and
/// missing. Returns the public line for the gateway's `authorized_keys`.
pub fn master_key(s: &Settings) -> anyhow::Result<String> {
    use ssh_key::{rand_core::OsRng, Algorithm, LineEnding, PrivateKey};
    let path = &s.key_file;
    let key = match std::fs::read_to_string(path) {
        Ok(text) => PrivateKey::from_openssh(text.trim_end())
            .map_err(|e| anyhow!("{}: not an OpenSSH private key: {e}", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut key = PrivateKey::random(&mut OsRng, Algorithm::Ed25519)
                .map_err(|e| anyhow!("making a key: {e}"))?;
            key.set_comment("slices-master");
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let text = key
                .to_openssh(LineEnding::LF)
                .map_err(|e| anyhow!("encoding a key: {e}"))?;
            write_private(path, text.as_bytes())?;
            key
        }
        Err(e) => return Err(anyhow!("cannot read {}: {e}", path.display())),
    };
    key.public_key()
        .to_openssh()
        .map_err(|e| anyhow!("encoding a key: {e}"))
}

fn write_private(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(bytes)?;
    Ok(())
}
