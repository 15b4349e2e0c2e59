//! The `local` gateway target: the same files an SSH gateway gets, under a folder of the
//! master (DATA/gateway), and no Unix accounts. It lets Slices run on one machine with nothing
//! else installed, and shows exactly what a real gateway would hold.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::{Actual, ActualUser, Applied, Batch, Settings, Target, UserFile};
use crate::domain::Username;

pub struct LocalTarget {
    users: PathBuf,
    map: PathBuf,
}

impl LocalTarget {
    pub fn new(root: &Path, settings: &Settings) -> anyhow::Result<LocalTarget> {
        let inside = |p: &str| root.join(p.trim_start_matches('/'));
        let t = LocalTarget {
            users: inside(settings.users_dir.as_str()),
            map: inside(settings.map_file.as_str()),
        };
        std::fs::create_dir_all(&t.users)
            .with_context(|| format!("cannot create {}", t.users.display()))?;
        Ok(t)
    }

    fn path(&self, user: &Username, f: UserFile) -> PathBuf {
        match f {
            UserFile::Script => self.users.join(format!("{user}.sh")),
            other => self.users.join(user.as_str()).join(other.in_home()),
        }
    }

    fn read_user(&self, name: &str) -> ActualUser {
        let home = self.users.join(name);
        let is_home = home.is_dir();
        let script = read_small(&self.users.join(format!("{name}.sh")));
        if !is_home {
            return ActualUser {
                script,
                ..ActualUser::default()
            };
        }
        ActualUser {
            account: true,
            home: true,
            script,
            keys: read_small(&home.join(UserFile::AuthorizedKeys.in_home())),
            hop_public: read_small(&home.join(UserFile::HopPublic.in_home())),
            hop_private: read_small(&home.join(UserFile::HopPrivate.in_home())).and_then(|text| {
                let header: Vec<&str> = text.lines().skip(1).take(2).collect();
                super::keys::public_of_private_header(&header.join(""))
            }),
        }
    }
}

/// A small file's text (None: missing, unreadable or not text). Read without asking its size
/// first (`fs::read_to_string` does): a restart reads four per user.
fn read_small(path: &Path) -> Option<String> {
    use std::io::Read as _;
    let mut f = std::fs::File::open(path).ok()?;
    let mut bytes = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        match f.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    String::from_utf8(bytes).ok()
}

/// Writes a file of the local gateway whole: a temporary file beside it (made with its mode,
/// never readable by others on the way), renamed over it, so a reader sees the old file or the
/// new one. Not synced to disk: everything here is derived from the database, and the start-up
/// run reads every file back and writes again what differs, so a crash loses nothing that is
/// not put back (an fsync per file was a seventh of the master's CPU per new slice on a disk).
pub(super) fn replace(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    put(path, bytes, mode, false)
}

/// Writes a private file whole (0600 from its first byte) and durably: a key that nothing else
/// holds (the built-in gateway's host key).
pub fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    put(path, bytes, 0o600, true)
}

fn put(path: &Path, bytes: &[u8], mode: u32, durable: bool) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().context("a file has a folder")?;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.slices-new",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file")
    ));
    let _ = std::fs::remove_file(&tmp);
    // Made with the mode asked (the umask can only take bits away), then set exactly: a private
    // key is never, even for a moment, a file others could open.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("{}", tmp.display()))?;
    f.write_all(bytes)?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))?;
    if durable {
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("{}", path.display()))?;
    Ok(())
}

/// Where the local target keeps `user`'s private hop key (None: the target is a remote host,
/// which alone holds it).
pub fn hop_key_file(settings: &Settings, user: &Username) -> Option<PathBuf> {
    match &settings.target {
        super::TargetSpec::Local(root) => Some(
            root.join(
                settings
                    .file(user, UserFile::HopPrivate)
                    .trim_start_matches('/'),
            ),
        ),
        _ => None,
    }
}

impl Target for LocalTarget {
    fn read(&mut self, only: Option<&[Username]>) -> anyhow::Result<Actual> {
        let mut actual = Actual {
            accounts_managed: false,
            map: std::fs::read_to_string(&self.map).ok(),
            ..Actual::default()
        };
        let names: Vec<String> = match only {
            Some(us) => us.iter().map(|u| u.to_string()).collect(),
            None => {
                let mut names = std::collections::BTreeSet::new();
                for entry in std::fs::read_dir(&self.users)? {
                    let entry = entry?;
                    let name = entry.file_name().to_string_lossy().into_owned();
                    if name.starts_with('.') {
                        continue;
                    }
                    match name.strip_suffix(".sh") {
                        Some(n) => names.insert(n.to_string()),
                        None if entry.file_type()?.is_dir() => names.insert(name),
                        None => false,
                    };
                }
                names.into_iter().collect()
            }
        };
        for name in names {
            let u = self.read_user(&name);
            if u != ActualUser::default() {
                actual.users.insert(name, u);
            }
        }
        Ok(actual)
    }

    fn apply(&mut self, batch: &Batch) -> anyhow::Result<Applied> {
        for u in &batch.add {
            std::fs::create_dir_all(self.users.join(u.as_str()).join(".ssh"))?;
        }
        for (u, f, bytes) in &batch.files {
            replace(&self.path(u, *f), bytes, f.mode())?;
        }
        if let Some(text) = &batch.map {
            replace(&self.map, text.as_bytes(), 0o644)?;
        }
        for u in &batch.remove {
            let home = self.users.join(u.as_str());
            if home.exists() {
                std::fs::remove_dir_all(&home)?;
            }
            let script = self.path(u, UserFile::Script);
            if script.exists() {
                std::fs::remove_file(script)?;
            }
        }
        Ok(Applied::default())
    }
}
