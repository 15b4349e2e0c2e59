//! OS template folders: `NAME.tar.gz` files, each known by its SHA-256. The master keeps the
//! reference copies; each agent keeps its own, brought up to date by `sync_templates` and
//! `put_template` over the slave link (see docs/protocol.md). Installing is atomic: a new
//! version is written beside the old as `.NAME.part`, checked against its hash, then renamed.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::domain::TemplateName;

/// One template: its name, hash and size.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TemplateInfo {
    pub name: TemplateName,
    pub sha256: Sha256Hex,
    pub size: u64,
}

/// A SHA-256 written as 64 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Sha256Hex(String);

impl Sha256Hex {
    pub fn parse(s: &str) -> Result<Sha256Hex, crate::domain::FieldError> {
        if s.len() == 64
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            Ok(Sha256Hex(s.to_string()))
        } else {
            Err(crate::domain::FieldError::new(
                "sha256",
                "A SHA-256 is 64 lowercase hex digits.",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn of(digest: &[u8]) -> Sha256Hex {
        Sha256Hex(digest.iter().map(|b| format!("{b:02x}")).collect())
    }
}

impl std::fmt::Display for Sha256Hex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
crate::domain::via_string!(Sha256Hex);

/// The SHA-256 of a file.
pub fn sha256_file(path: &Path) -> std::io::Result<Sha256Hex> {
    use sha2::{Digest, Sha256};
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(Sha256Hex::of(&h.finalize()))
}

/// The largest piece of a template sent in one `put_template` (its base64 stays well under
/// the link's 1 MiB line limit).
pub const CHUNK: usize = 512 * 1024;

/// A folder of templates, with each file hashed once per version (size and mtime).
pub struct TemplateDir {
    dir: PathBuf,
    cache: Mutex<HashMap<String, (u64, SystemTime, Sha256Hex)>>,
    writing: Mutex<()>,
}

impl TemplateDir {
    pub fn new(dir: &Path) -> std::io::Result<TemplateDir> {
        std::fs::create_dir_all(dir)?;
        Ok(TemplateDir {
            dir: dir.to_path_buf(),
            cache: Mutex::new(HashMap::new()),
            writing: Mutex::new(()),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path(&self, name: &TemplateName) -> PathBuf {
        self.dir.join(name.file_name())
    }

    fn part(&self, name: &TemplateName) -> PathBuf {
        self.dir.join(format!(".{}.part", name))
    }

    /// One template's information, if the file is there.
    pub fn info(&self, name: &TemplateName) -> std::io::Result<Option<TemplateInfo>> {
        let path = self.path(name);
        let meta = match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => m,
            Ok(_) => return Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let (size, mtime) = (meta.len(), meta.modified()?);
        let cached = self
            .cache
            .lock()
            .expect("hash cache")
            .get(name.as_str())
            .filter(|(s, m, _)| *s == size && *m == mtime)
            .map(|(_, _, h)| h.clone());
        let sha256 = match cached {
            Some(h) => h,
            None => {
                let h = sha256_file(&path)?;
                self.cache
                    .lock()
                    .expect("hash cache")
                    .insert(name.to_string(), (size, mtime, h.clone()));
                h
            }
        };
        Ok(Some(TemplateInfo {
            name: name.clone(),
            sha256,
            size,
        }))
    }

    /// Every template in the folder (files named `NAME.tar.gz` with a valid NAME; symlinks
    /// are followed), by name.
    pub fn list(&self) -> std::io::Result<Vec<TemplateInfo>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let file = entry?.file_name().to_string_lossy().into_owned();
            let Some(name) = file
                .strip_suffix(".tar.gz")
                .and_then(|n| TemplateName::parse(n).ok())
            else {
                continue;
            };
            if let Some(info) = self.info(&name)? {
                out.push(info);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Writes one piece of a new version. Pieces come in order: `offset` must be what has
    /// arrived so far (a restarted transfer resumes there). After the last piece the file is
    /// checked against `want` and installed in place of the old one.
    pub fn put(&self, want: &TemplateInfo, offset: u64, data: &[u8]) -> Result<PutOutcome, String> {
        let _one_at_a_time = self.writing.lock().expect("template writer");
        receive_piece(
            &self.part(&want.name),
            &self.path(&want.name),
            &want.name.to_string(),
            (&want.sha256, want.size),
            offset,
            data,
        )
    }
}

/// Takes one piece of a file sent in order: appended to `part`; the last one is checked
/// against the SHA-256 and renamed to `done` (nothing is put in place unless it matches). A
/// piece at offset 0 starts over; any other offset must be where the part ends.
pub fn receive_piece(
    part: &Path,
    done: &Path,
    what: &str,
    (sha256, size): (&Sha256Hex, u64),
    offset: u64,
    data: &[u8],
) -> Result<PutOutcome, String> {
    let have = std::fs::metadata(part).map(|m| m.len()).unwrap_or(0);
    if offset == 0 && have > 0 {
        std::fs::remove_file(part).map_err(|e| e.to_string())?;
    } else if offset != have {
        return Ok(PutOutcome::Resume(have));
    }
    if offset + data.len() as u64 > size {
        return Err(format!("{what}: more data than its size {size}"));
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(part)
        .map_err(|e| e.to_string())?;
    f.write_all(data).map_err(|e| e.to_string())?;
    let now = offset + data.len() as u64;
    if now < size {
        return Ok(PutOutcome::Partial(now));
    }
    // Once, at the end: a part cut short by a crash is caught by the hash check below (and
    // sent again), so syncing every piece would only slow a transfer down.
    f.sync_data().map_err(|e| e.to_string())?;
    let got = sha256_file(part).map_err(|e| e.to_string())?;
    if &got != sha256 {
        let _ = std::fs::remove_file(part);
        return Err(format!(
            "{what}: the received file's sha256 is {got}, not {sha256}; nothing was installed"
        ));
    }
    std::fs::rename(part, done).map_err(|e| e.to_string())?;
    Ok(PutOutcome::Installed)
}

/// What a `put` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutOutcome {
    /// So many bytes have arrived.
    Partial(u64),
    /// The piece was not the next one: send from this offset.
    Resume(u64),
    /// Complete, checked and in place.
    Installed,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_resumes_checks_and_installs_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src.bin");
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&src, &data).unwrap();
        let want = TemplateInfo {
            name: TemplateName::parse("t1").unwrap(),
            sha256: sha256_file(&src).unwrap(),
            size: data.len() as u64,
        };
        let t = TemplateDir::new(&dir.path().join("templates")).unwrap();
        std::fs::write(t.path(&want.name), b"old version").unwrap();
        assert_eq!(
            t.put(&want, 0, &data[..50_000]).unwrap(),
            PutOutcome::Partial(50_000)
        );
        // Out of order: told where to resume; the old version is still in place meanwhile.
        assert_eq!(
            t.put(&want, 120_000, &data[120_000..]).unwrap(),
            PutOutcome::Resume(50_000)
        );
        assert_eq!(std::fs::read(t.path(&want.name)).unwrap(), b"old version");
        assert_eq!(
            t.put(&want, 50_000, &data[50_000..]).unwrap(),
            PutOutcome::Installed
        );
        assert_eq!(t.info(&want.name).unwrap().unwrap(), want);
        // A corrupted transfer installs nothing.
        let mut bad = data.clone();
        bad[10] ^= 1;
        let r = t.put(&want, 0, &bad);
        assert!(r.unwrap_err().contains("nothing was installed"));
        assert_eq!(t.info(&want.name).unwrap().unwrap(), want);
        assert!(
            t.put(&want, 0, &[0u8; 300_000]).is_err(),
            "more than its size"
        );
    }
}
