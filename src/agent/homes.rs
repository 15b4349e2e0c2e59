//! Archives of a slice's /home: `export_home` packs it into a file kept on the node, named by
//! its SHA-256 (`exports/VEID-SHA.tar.gz`), which `read_export` hands out in pieces until
//! `drop_export` removes it; `import_home` takes such an archive in pieces (as `put_template`
//! takes a template) and unpacks it into the running slice's /home.
//!
//! Naming the archive by its hash makes reads race-free: a read names the archive it wants,
//! and a newer export is a different file, so a reader never gets a mix of two.
//!
//! Packing runs the host's `tar` on the slice's files as the host sees them, which is root's
//! privilege over a tree the student controls: the one path it is given is `/home` opened
//! without following a link (a student's `/home -> /etc` is refused, not followed), and tar
//! itself never follows links, stays on the slice's file system and stores device nodes and
//! pipes as entries without opening them. Unpacking is the reverse and runs *inside* the
//! slice (its own root, under its id map), so an archive with links pointing out of /home
//! can reach nothing but the slice.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use serde_json::json;

use super::driver::{DResult, DriverError, EnvState};
use super::run::Runner;
use super::Agent;
use crate::argv;
use crate::domain::VeId;
use crate::slave_link::protocol::{code, MAX_ARCHIVE_BYTES};
use crate::slave_link::Reply;
use crate::templates::{receive_piece, sha256_file, PutOutcome, Sha256Hex};

/// Where archives are kept: `STATE/exports` and `STATE/imports`.
pub(super) struct Archives {
    exports: PathBuf,
    imports: PathBuf,
}

impl Archives {
    pub(super) fn new(state: &Path) -> std::io::Result<Archives> {
        let a = Archives {
            exports: state.join("exports"),
            imports: state.join("imports"),
        };
        std::fs::create_dir_all(&a.exports)?;
        std::fs::create_dir_all(&a.imports)?;
        Ok(a)
    }

    fn export(&self, id: VeId, sha: &Sha256Hex) -> PathBuf {
        self.exports.join(format!("{id}-{sha}.tar.gz"))
    }

    /// The archives of one slice (normally one).
    fn exports_of(&self, id: VeId) -> Vec<PathBuf> {
        let prefix = format!("{id}-");
        std::fs::read_dir(&self.exports)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".tar.gz"))
            })
            .collect()
    }
}

/// Opens `root/home` as a folder, refusing a link there (the slice's own files decide what
/// `home` is; a link would point the host's tar at a host folder).
pub fn open_home(root: &Path) -> DResult<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_DIRECTORY)
        .open(root.join("home"))
        .map_err(|e| {
            DriverError::msg(
                if e.raw_os_error() == Some(libc::ELOOP) || e.raw_os_error() == Some(libc::ENOTDIR)
                {
                    "the slice's /home is not a folder (a link or a file): nothing was packed"
                        .to_string()
                } else {
                    format!("cannot open the slice's /home: {e}")
                },
            )
        })
}

/// Packs `root/home` into `out` (gzip'd tar, numeric owners as the slice sees them).
pub fn pack_home(run: &dyn Runner, root: &Path, out: &Path) -> DResult<()> {
    let home = open_home(root)?;
    // tar works in the folder already opened, through this process's descriptor for it.
    let at = format!("/proc/{}/fd/{}", std::process::id(), home.as_raw_fd());
    let packed = tar_into(
        run,
        "tar",
        argv![
            "--create",
            "--numeric-owner",
            "--one-file-system",
            "--sparse",
            "--warning=no-file-changed",
            "--warning=no-file-removed",
            "--directory",
            at,
            "."
        ],
        out,
    );
    drop(home);
    packed
}

/// What unpacks an archive (on standard input) into `/home`, run inside the slice: owners
/// and modes as packed.
pub const UNPACK: &[&str] = &[
    "tar",
    "--extract",
    "--gzip",
    "--numeric-owner",
    "--same-permissions",
    "--directory",
    "/home",
    "--file",
    "-",
];

/// Runs a `tar --create` that writes to its standard output (`program args`) and compresses
/// what it writes into `out` here, with gzip's fastest level: the host's `gzip` manages about
/// 25 MB/s on files that do not compress, this about four times that.
pub fn tar_into(run: &dyn Runner, program: &str, args: Vec<String>, out: &Path) -> DResult<()> {
    let file = std::io::BufWriter::with_capacity(1 << 20, File::create(out)?);
    let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    let o = run.run_into(program, &args, &mut gz)?;
    // GNU tar's 1: a file changed while it was read (the slice runs); the archive is whole.
    if o.code != 0 && o.code != 1 {
        o.ok("tar (packing the slice's /home)")?;
    }
    use std::io::Write as _;
    let mut file = gz.finish()?;
    file.flush()?;
    file.into_inner()
        .map_err(|e| DriverError::msg(format!("writing the archive: {e}")))?
        .sync_all()?;
    Ok(())
}

impl Agent {
    pub(super) fn export_home(&self, id: VeId) -> Result<Reply, DriverError> {
        if let Err(r) = self.existing(id)? {
            return Ok(r);
        }
        let tmp = self.archives.exports.join(format!("{id}.tar.gz.tmp"));
        let packed = self.driver.export_home(id, &tmp).and_then(|()| {
            let size = std::fs::metadata(&tmp)?.len();
            if size > MAX_ARCHIVE_BYTES {
                return Err(DriverError::msg(format!(
                    "the archive is {} GiB, more than the {} GiB an archive may be",
                    size >> 30,
                    MAX_ARCHIVE_BYTES >> 30
                )));
            }
            Ok((size, sha256_file(&tmp)?))
        });
        let (size, sha) = match packed {
            Ok(v) => v,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        };
        let path = self.archives.export(id, &sha);
        std::fs::rename(&tmp, &path)?;
        for old in self.archives.exports_of(id) {
            if old != path {
                let _ = std::fs::remove_file(old);
            }
        }
        Ok(Reply::ok(vec![
            "exported".into(),
            json!({"size": size, "sha256": sha}),
        ]))
    }

    pub(super) fn read_export(
        &self,
        id: VeId,
        sha: &Sha256Hex,
        offset: u64,
        (len, raw): (u32, bool),
    ) -> Result<Reply, DriverError> {
        let mut f = match File::open(self.archives.export(id, sha)) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(if self.archives.exports_of(id).is_empty() {
                    Reply::error(
                        code::NOT_FOUND,
                        format!("read_export: no archive of {id} on this node (export_home first)"),
                    )
                } else {
                    Reply::error(
                        code::CONFLICT,
                        format!("read_export: the archive of {id} is no longer {sha}: a newer export replaced it"),
                    )
                });
            }
            Err(e) => return Err(e.into()),
        };
        let size = f.metadata()?.len();
        if offset > size {
            return Ok(Reply::error(
                code::BAD_ARGUMENTS,
                format!("read_export: offset {offset} is past the archive's end ({size})"),
            ));
        }
        f.seek(SeekFrom::Start(offset))?;
        let mut buf = Vec::with_capacity(len as usize);
        f.take(len as u64).read_to_end(&mut buf)?;
        if raw {
            return Ok(Reply::piece(buf));
        }
        use base64::Engine as _;
        Ok(Reply::ok(vec![serde_json::Value::String(
            base64::engine::general_purpose::STANDARD.encode(&buf),
        )]))
    }

    pub(super) fn drop_export(&self, id: VeId) -> Result<Reply, DriverError> {
        let found = self.archives.exports_of(id);
        for p in &found {
            std::fs::remove_file(p)?;
        }
        Ok(Reply::ok(vec![if found.is_empty() {
            "absent".into()
        } else {
            "dropped".into()
        }]))
    }

    pub(super) fn import_home(
        &self,
        id: VeId,
        (sha, size): (&Sha256Hex, u64),
        offset: u64,
        data: &[u8],
    ) -> Result<Reply, DriverError> {
        if let Err(r) = self.existing(id)? {
            return Ok(r);
        }
        let done = self.archives.imports.join(format!("{id}-{sha}.tar.gz"));
        let marker = done.with_extension("imported");
        // The last piece again (its answer was lost): it was unpacked already.
        if marker.exists() && offset + data.len() as u64 == size {
            return Ok(Reply::ok(vec!["imported".into()]));
        }
        if offset == 0 && self.driver.state(id)? != EnvState::Running {
            return Ok(Reply::error(
                code::CONFLICT,
                format!("import_home: {id} is not running; start it first"),
            ));
        }
        let part = self.archives.imports.join(format!("{id}.part"));
        match receive_piece(&part, &done, "import_home", (sha, size), offset, data) {
            Ok(PutOutcome::Partial(n)) => Ok(Reply::ok(vec!["partial".into(), n.into()])),
            Ok(PutOutcome::Resume(n)) => Ok(Reply {
                raw: None,
                code: code::CONFLICT,
                returned: vec![
                    format!("import_home: resume from offset {n}").into(),
                    n.into(),
                ],
            }),
            Ok(PutOutcome::Installed) => {
                let unpacked = self.driver.import_home(id, &done);
                let _ = std::fs::remove_file(&done);
                unpacked?;
                // Earlier markers of this slice go; this one answers a repeated last piece.
                if let Ok(dir) = std::fs::read_dir(&self.archives.imports) {
                    let prefix = format!("{id}-");
                    for e in dir.flatten() {
                        let n = e.file_name();
                        if n.to_string_lossy().starts_with(&prefix) {
                            let _ = std::fs::remove_file(e.path());
                        }
                    }
                }
                File::create(&marker)?;
                Ok(Reply::ok(vec!["imported".into()]))
            }
            Err(e) => Ok(Reply::error(code::FAILED, e)),
        }
    }

    /// Removes a destroyed slice's archives and import leftovers.
    pub(super) fn forget_archives(&self, id: VeId) {
        for p in self.archives.exports_of(id) {
            let _ = std::fs::remove_file(p);
        }
        let prefix = format!("{id}-");
        let part = format!("{id}.part");
        if let Ok(dir) = std::fs::read_dir(&self.archives.imports) {
            for e in dir.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if n.starts_with(&prefix) || n == part {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::run::SystemRunner;
    use std::time::Duration;

    fn names(gz: &Path) -> Vec<(String, tar::EntryType, u64)> {
        let f = File::open(gz).unwrap();
        let mut a = tar::Archive::new(flate2::read::GzDecoder::new(f));
        a.entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path().unwrap().display().to_string(),
                    e.header().entry_type(),
                    e.header().size().unwrap(),
                )
            })
            .collect()
    }

    /// The host's tar packs the files and stores links as links: a student's link to a host
    /// file packs the link, never the host file's contents; a /home that is itself a link is
    /// refused.
    #[test]
    fn packing_takes_the_slices_files_and_never_follows_a_link() {
        let run = SystemRunner {
            timeout: Duration::from_secs(30),
        };
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("rootfs");
        let user = root.join("home/alice");
        std::fs::create_dir_all(&user).unwrap();
        std::fs::write(user.join("notes.txt"), b"chapter 1").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", user.join("passwd")).unwrap();
        std::os::unix::fs::symlink("/etc", user.join("etc")).unwrap();
        let out = dir.path().join("a.tar.gz");
        pack_home(&run, &root, &out).unwrap();
        let got = names(&out);
        let find = |n: &str| {
            got.iter()
                .find(|(p, _, _)| p.trim_start_matches("./") == n)
                .unwrap_or_else(|| panic!("{n} in {got:?}"))
                .clone()
        };
        assert_eq!(find("alice/notes.txt").2, 9);
        assert_eq!(find("alice/passwd").1, tar::EntryType::Symlink);
        assert_eq!(find("alice/passwd").2, 0, "a link, not the host's file");
        assert_eq!(find("alice/etc").1, tar::EntryType::Symlink);
        assert!(
            !got.iter().any(|(p, _, _)| p.contains("alice/etc/")),
            "nothing under a linked folder: {got:?}"
        );

        // The student's /home points at a host folder: nothing is packed.
        let evil = dir.path().join("evil");
        std::fs::create_dir_all(&evil).unwrap();
        std::os::unix::fs::symlink("/etc", evil.join("home")).unwrap();
        let out = dir.path().join("b.tar.gz");
        let e = pack_home(&run, &evil, &out).unwrap_err();
        assert!(e.to_string().contains("not a folder"), "{e}");
        assert!(!out.exists(), "tar never ran");
    }
}
