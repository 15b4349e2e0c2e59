//! Keys the master makes: each user's hop key pair and the master's own key for the gateway.

use anyhow::{anyhow, Context as _};

use super::*;
use crate::domain::Username;

/// A new ed25519 key pair in OpenSSH format: (private, public line).
pub(super) fn hop_key_pair(user: &Username) -> anyhow::Result<(String, String)> {
    key_pair(&format!("slices-hop-{user}"))
}

/// A new ed25519 key pair in OpenSSH format with this comment: (private, public line).
pub fn key_pair(comment: &str) -> anyhow::Result<(String, String)> {
    use ssh_key::{rand_core::OsRng, Algorithm, LineEnding, PrivateKey};
    let mut key = PrivateKey::random(&mut OsRng, Algorithm::Ed25519)
        .map_err(|e| anyhow!("making a key: {e}"))?;
    key.set_comment(comment);
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

/// The public key an unencrypted OpenSSH private key file holds in its clear header: the
/// file's second and third lines (the first 105 bytes: magic, cipher and KDF "none", one key,
/// then its public half). Those lines hold nothing secret, so the gateway sends them instead
/// of the key; the private half and its check bytes come after them. None for anything else.
pub fn public_of_private_header(lines: &str) -> Option<String> {
    use base64::Engine as _;
    let b64: String = lines.split_whitespace().collect();
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    let mut rest = bytes.strip_prefix(b"openssh-key-v1\0")?;
    // SSH wire format: a u32 length, then that many bytes.
    fn take<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
        let len = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        let s = rest.get(4..4 + len)?;
        *rest = &rest[4 + len..];
        Some(s)
    }
    let (cipher, kdf, _options) = (take(&mut rest)?, take(&mut rest)?, take(&mut rest)?);
    let count = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?);
    rest = &rest[4..];
    if cipher != b"none" || kdf != b"none" || count != 1 {
        return None;
    }
    let blob = take(&mut rest)?;
    let mut in_blob = blob;
    let kind = std::str::from_utf8(take(&mut in_blob)?).ok()?;
    Some(format!(
        "{kind} {}",
        base64::engine::general_purpose::STANDARD.encode(blob)
    ))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clear_header_of_a_private_key_names_its_public_half() {
        let user = Username::parse("alice").unwrap();
        let (private, public) = hop_key_pair(&user).unwrap();
        let header: Vec<&str> = private.lines().skip(1).take(2).collect();
        let derived = public_of_private_header(&header.join("\n")).unwrap();
        let fp = |k: &str| {
            crate::domain::SshPublicKey::parse(k.trim())
                .unwrap()
                .fingerprint()
        };
        assert_eq!(fp(&derived), fp(&public));
        // Another key's header names another key; junk names none.
        let (other, _) = hop_key_pair(&user).unwrap();
        let header: Vec<&str> = other.lines().skip(1).take(2).collect();
        assert_ne!(
            fp(&public_of_private_header(&header.join("")).unwrap()),
            fp(&public)
        );
        assert!(public_of_private_header("not base64 at all").is_none());
        assert!(public_of_private_header("").is_none());
    }
}
