//! Each slice's disk: an ext4 image of its own, loop-mounted at `veN/rootfs`, so the plan's
//! disk is a hard limit (a write past it fails inside the slice with "No space left on
//! device") and the host's disk is untouched by a full slice.
//!
//! A template is extracted once and turned into a *golden image* of the smallest size that
//! holds it (`mkfs.ext4 -d`, then `resize2fs -M`); a slice's image is a sparse copy of it grown
//! to the plan's size (0.2 s here, against 1.4 s to extract the template anew). Files keep the
//! template's owners (0 for root): the container sees them through an idmapped mount, so no
//! file is ever shifted into the slice's id range.
//!
//! Why ext4 images and not btrfs qgroups or project quotas: see `docs/protocol.md`.

use std::path::{Path, PathBuf};

use super::Lxc;
use crate::agent::driver::{Counter, DResult, DriverError, SnapshotInfo};
use crate::argv;
use crate::domain::{SnapshotName, VeId};

impl Lxc {
    pub(super) fn image(&self, id: VeId) -> PathBuf {
        self.dir(id).join("disk.img")
    }

    pub(super) fn mountpoint(&self, id: VeId) -> PathBuf {
        self.dir(id).join("rootfs")
    }

    /// The slice's snapshots: a copy of its disk image each, `snapshots/NAME.img`, gone with
    /// the slice's folder when it is destroyed.
    pub(super) fn snapshot_dir(&self, id: VeId) -> PathBuf {
        self.dir(id).join("snapshots")
    }

    /// Copies the slice's disk image to snapshot `name`: a reflink where the host's file
    /// system shares blocks (btrfs, xfs: instant, no space until the two differ), else a
    /// sparse copy (only the blocks in use). A running slice's file system is frozen for
    /// the copy (`fsfreeze`: its journal flushed, every write waiting), so the copy is
    /// consistent; it is thawed whatever happens.
    pub(super) fn copy_to_snapshot(
        &self,
        id: VeId,
        name: &SnapshotName,
        running: bool,
    ) -> DResult<()> {
        let dir = self.snapshot_dir(id);
        std::fs::create_dir_all(&dir)?;
        let tmp = dir.join(format!("{name}.img.tmp"));
        let _ = std::fs::remove_file(&tmp);
        let root = self.mountpoint(id);
        let frozen = running && self.mounted(id);
        if frozen {
            self.run
                .run("fsfreeze", &argv!["--freeze", root.display()])?
                .ok("fsfreeze --freeze")?;
        }
        let copied = self.run.run(
            "cp",
            &argv![
                "--reflink=auto",
                "--sparse=always",
                self.image(id).display(),
                tmp.display()
            ],
        );
        if frozen {
            self.run
                .run("fsfreeze", &argv!["--unfreeze", root.display()])?
                .ok("fsfreeze --unfreeze")?;
        }
        if let Err(e) = copied.and_then(|o| o.ok("copying the slice's disk").map(|_| ())) {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        std::fs::rename(&tmp, dir.join(format!("{name}.img")))?;
        Ok(())
    }

    /// Puts snapshot `name` back as the stopped slice's disk (a copy: the snapshot stays).
    pub(super) fn copy_from_snapshot(&self, id: VeId, name: &SnapshotName) -> DResult<()> {
        let snap = self.snapshot_dir(id).join(format!("{name}.img"));
        if !snap.exists() {
            return Err(DriverError::msg(format!("no snapshot {name}")));
        }
        self.unmount_image(id)?;
        let img = self.image(id);
        let tmp = img.with_extension("restoring");
        let _ = std::fs::remove_file(&tmp);
        self.run
            .run(
                "cp",
                &argv![
                    "--reflink=auto",
                    "--sparse=always",
                    snap.display(),
                    tmp.display()
                ],
            )?
            .ok("copying the snapshot")?;
        std::fs::rename(&tmp, &img)?;
        Ok(())
    }

    /// The slice's snapshots, oldest first: size as blocks held on the host's disk.
    pub(super) fn snapshot_list(&self, id: VeId) -> DResult<Vec<SnapshotInfo>> {
        use std::os::unix::fs::MetadataExt;
        let mut list = Vec::new();
        let Ok(entries) = std::fs::read_dir(self.snapshot_dir(id)) else {
            return Ok(list);
        };
        for e in entries.flatten() {
            let file = e.file_name();
            let Some(name) = file
                .to_str()
                .and_then(|n| n.strip_suffix(".img"))
                .and_then(|n| SnapshotName::parse(n).ok())
            else {
                continue;
            };
            let meta = e.metadata()?;
            list.push(SnapshotInfo {
                name,
                size: meta.blocks() * 512,
                created: meta.mtime(),
            });
        }
        list.sort_by(|a, b| (a.created, &a.name).cmp(&(b.created, &b.name)));
        Ok(list)
    }

    /// The golden image of an extracted template, made once next to it.
    pub(super) fn golden_for(&self, rootfs: &Path) -> DResult<PathBuf> {
        let base = rootfs.parent().expect("a base folder holds rootfs");
        let golden = base.join("rootfs.ext4");
        if golden.exists() {
            return Ok(golden);
        }
        let _one = self.golden_lock.lock().expect("golden lock");
        if golden.exists() {
            return Ok(golden);
        }
        // Room for the files, their inodes and a journal; resize2fs -M takes away the rest.
        let (bytes, files) = tree_size(rootfs)?;
        let mb = (bytes + files * 4096) * 3 / 2 / (1024 * 1024) + 96;
        let tmp = base.join("rootfs.ext4.tmp");
        let _ = std::fs::remove_file(&tmp);
        std::fs::File::create(&tmp)?.set_len(mb * 1024 * 1024)?;
        self.run
            .run(
                "mkfs.ext4",
                &argv!["-q", "-F", "-m", "0", "-d", rootfs.display(), tmp.display()],
            )?
            .ok("mkfs.ext4 (the template's image)")?;
        self.run
            .run("e2fsck", &argv!["-f", "-p", tmp.display()])?
            .ok("e2fsck")?;
        self.run
            .run("resize2fs", &argv!["-M", tmp.display()])?
            .ok("resize2fs -M")?;
        std::fs::rename(&tmp, &golden)?;
        Ok(golden)
    }

    /// Makes the slice's image from the golden one, `mb` large: the spare one made for that
    /// size in the background after the last create if there is one (a rename), else now.
    /// Refuses a plan smaller than the template.
    pub(super) fn make_image(&self, id: VeId, golden: &Path, mb: u32) -> DResult<()> {
        let want = mb as u64 * 1024 * 1024;
        let have = std::fs::metadata(golden)?.len();
        if want < have {
            return Err(DriverError::msg(format!(
                "the plan's disk ({mb} MB) is smaller than the template ({} MB)",
                have.div_ceil(1024 * 1024)
            )));
        }
        let img = self.image(id);
        if std::fs::rename(spare_path(golden, mb), &img).is_err() {
            grown_copy(
                self.run.as_ref(),
                golden,
                mb,
                &img.with_extension("tmp"),
                &img,
                false,
            )?;
        }
        self.prepare_spare(golden, mb);
        Ok(())
    }

    /// Makes the next image of this template and size in the background, unless one is there
    /// or on its way: the next create of that size is then a rename.
    fn prepare_spare(&self, golden: &Path, mb: u32) {
        let spare = spare_path(golden, mb);
        if spare.exists() || !self.preparing.lock().expect("spares").insert(spare.clone()) {
            return;
        }
        let (run, golden, preparing) = (
            self.run.clone(),
            golden.to_path_buf(),
            self.preparing.clone(),
        );
        std::thread::spawn(move || {
            let tmp = spare.with_extension("tmp");
            if let Err(e) = grown_copy(run.as_ref(), &golden, mb, &tmp, &spare, true) {
                tracing::warn!(spare = %spare.display(), error = %e, "could not make a spare disk image");
            }
            preparing.lock().expect("spares").remove(&spare);
        });
    }

    /// Whether the slice's image is mounted at its mount point (the kernel's list says).
    pub(super) fn mounted(&self, id: VeId) -> bool {
        let target = self.mountpoint(id);
        std::fs::read_to_string("/proc/self/mountinfo")
            .map(|text| {
                text.lines().any(|l| {
                    l.split(' ')
                        .nth(4)
                        .is_some_and(|m| unescape(m) == target.to_string_lossy())
                })
            })
            .unwrap_or(false)
    }

    /// Mounts the image (after a host reboot nothing is mounted), on a loop device of its own
    /// that does direct I/O: no second copy of every page in the host's cache, and writes at
    /// about the host disk's speed (twice as fast as without, here). `nodev`: a device node
    /// in a slice's files never opens a host device.
    /// `just_made`: the image was made a moment ago, so no device can be attached to it yet.
    pub(super) fn mount_image(&self, id: VeId, just_made: bool) -> DResult<()> {
        if self.mounted(id) {
            return Ok(());
        }
        let target = self.mountpoint(id);
        std::fs::create_dir_all(&target)?;
        let img = self.image(id).display().to_string();
        // A device left attached to it (the agent stopped between the two steps) is reused.
        let attached = if just_made {
            String::new()
        } else {
            self.run
                .run("losetup", &argv!["-n", "-O", "NAME", "-j", img])?
                .ok("losetup -j")?
                .stdout
        };
        let dev = match attached.lines().next() {
            Some(d) if !d.trim().is_empty() => d.trim().to_string(),
            _ => {
                let out = self
                    .run
                    .run("losetup", &argv!["--find", "--show", "--direct-io=on", img])?;
                // A file system without O_DIRECT: a plain loop device.
                let out = if out.code == 0 {
                    out
                } else {
                    self.run.run("losetup", &argv!["--find", "--show", img])?
                };
                out.ok("attaching the slice's disk")?
                    .stdout
                    .trim()
                    .to_string()
            }
        };
        if !dev.starts_with("/dev/loop") {
            return Err(DriverError::msg(format!("losetup said `{dev}`")));
        }
        let mounted = self
            .run
            .run(
                "mount",
                &argv!["-t", "ext4", "-o", "nodev", dev, target.display()],
            )?
            .ok("mounting the slice's disk");
        if mounted.is_err() {
            let _ = self.run.run("losetup", &argv!["-d", dev]);
        }
        mounted.map(|_| ())
    }

    /// Unmounts the image and lets its loop device go.
    pub(super) fn unmount_image(&self, id: VeId) -> DResult<()> {
        if self.mounted(id) {
            let dev = self.loop_device(id).ok();
            self.run
                .run("umount", &argv![self.mountpoint(id).display()])?
                .ok("unmounting the slice's disk")?;
            if let Some(dev) = dev {
                let _ = self.run.run("losetup", &argv!["-d", dev]);
            }
        }
        // One left attached without a mount (the agent stopped half-way).
        let img = self.image(id);
        if img.exists() {
            if let Ok(out) = self
                .run
                .run("losetup", &argv!["-n", "-O", "NAME", "-j", img.display()])
            {
                for dev in out.stdout.lines().filter(|d| d.starts_with("/dev/loop")) {
                    let _ = self.run.run("losetup", &argv!["-d", dev.trim()]);
                }
            }
        }
        Ok(())
    }

    /// Grows the image to a new plan's disk, live (ext4 grows while mounted). A smaller disk
    /// is refused: shrinking needs the slice stopped and its files checked.
    pub(super) fn grow_image(&self, id: VeId, mb: u32) -> DResult<()> {
        let want = mb as u64 * 1024 * 1024;
        let img = self.image(id);
        let have = std::fs::metadata(&img)?.len();
        if want == have {
            return Ok(());
        }
        if want < have {
            return Err(DriverError::msg(format!(
                "a slice's disk only grows: it has {} MB, the plan says {mb} MB",
                have / (1024 * 1024)
            )));
        }
        std::fs::OpenOptions::new()
            .write(true)
            .open(&img)?
            .set_len(want)?;
        if self.mounted(id) {
            let dev = self.loop_device(id)?;
            self.run
                .run("losetup", &argv!["-c", dev])?
                .ok("losetup -c")?;
            self.run.run("resize2fs", &argv![dev])?.ok("resize2fs")?;
        } else {
            self.run
                .run("e2fsck", &argv!["-f", "-p", img.display()])?
                .ok("e2fsck")?;
            self.run
                .run("resize2fs", &argv![img.display()])?
                .ok("resize2fs")?;
        }
        Ok(())
    }

    /// The loop device the mounted image is on.
    fn loop_device(&self, id: VeId) -> DResult<String> {
        let target = self.mountpoint(id);
        std::fs::read_to_string("/proc/self/mountinfo")?
            .lines()
            .find_map(|l| {
                let fields: Vec<&str> = l.split(' ').collect();
                let dash = fields.iter().position(|f| *f == "-")?;
                (fields.get(4).map(|m| unescape(m)) == Some(target.to_string_lossy().into()))
                    .then(|| fields.get(dash + 2).map(|d| d.to_string()))
                    .flatten()
            })
            .filter(|d| d.starts_with("/dev/loop"))
            .ok_or_else(|| DriverError::msg("the slice's disk is not on a loop device"))
    }

    /// Disk held and its limit, in bytes, in beancounter shape (`diskspace`). `failcnt` counts
    /// the readings that found the disk full (ext4 keeps no count of refused writes).
    pub(super) fn disk_counter(&self, id: VeId) -> DResult<Option<Counter>> {
        if !self.mounted(id) {
            return Ok(None);
        }
        let out = self
            .run
            .run(
                "df",
                &argv![
                    "-B1",
                    "--output=size,used,avail",
                    self.mountpoint(id).display()
                ],
            )?
            .ok("df")?;
        let nums: Vec<u64> = out
            .stdout
            .lines()
            .nth(1)
            .unwrap_or("")
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        let [size, used, avail] = nums[..] else {
            return Err(DriverError::msg(format!("df said: {}", out.stdout.trim())));
        };
        let full_file = self.dir(id).join("disk.fullcount");
        let mut full: u64 = std::fs::read_to_string(&full_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        let maxheld_file = self.dir(id).join("disk.maxheld");
        let maxheld: u64 = std::fs::read_to_string(&maxheld_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
            .max(used);
        let _ = std::fs::write(&maxheld_file, maxheld.to_string());
        if avail < 1024 * 1024 {
            full += 1;
            let _ = std::fs::write(&full_file, full.to_string());
        }
        Ok(Some(Counter {
            resource: "diskspace".into(),
            held: used,
            maxheld,
            barrier: size,
            limit: size,
            failcnt: full,
        }))
    }
}

/// The spare image of a template's golden image for one size.
fn spare_path(golden: &Path, mb: u32) -> PathBuf {
    golden.with_file_name(format!("spare-{mb}.ext4"))
}

/// A sparse copy of the golden image at `tmp`, grown to `mb`, renamed to `dest` once whole.
/// In the `background` at the lowest CPU priority, so that it does not slow what runs now.
fn grown_copy(
    run: &dyn crate::agent::run::Runner,
    golden: &Path,
    mb: u32,
    tmp: &Path,
    dest: &Path,
    background: bool,
) -> DResult<()> {
    let tool = |program: &str, args: Vec<String>| {
        if background {
            let mut a = argv!["-n", "19", program];
            a.extend(args);
            run.run("nice", &a)
        } else {
            run.run(program, &args)
        }
    };
    let _ = std::fs::remove_file(tmp);
    tool(
        "cp",
        argv!["--sparse=always", golden.display(), tmp.display()],
    )?
    .ok("copying the template's image")?;
    std::fs::OpenOptions::new()
        .write(true)
        .open(tmp)?
        .set_len(mb as u64 * 1024 * 1024)?;
    tool("resize2fs", argv![tmp.display()])?.ok("resize2fs")?;
    std::fs::rename(tmp, dest)?;
    Ok(())
}

/// Bytes in regular files and the number of entries under `root`, not following links.
fn tree_size(root: &Path) -> DResult<(u64, u64)> {
    let (mut bytes, mut files) = (0u64, 0u64);
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            files += 1;
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() {
                bytes += meta.len().div_ceil(4096) * 4096;
            }
        }
    }
    Ok((bytes, files))
}

/// `/proc/self/mountinfo` escapes space, tab, newline and backslash as octal.
fn unescape(field: &str) -> String {
    let mut out = String::new();
    let mut rest = field;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let code = rest
            .get(i + 1..i + 4)
            .and_then(|o| u8::from_str_radix(o, 8).ok());
        match code {
            Some(c) => {
                out.push(c as char);
                rest = &rest[i + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}
