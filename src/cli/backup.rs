//! `slices backup FILE`: an online, consistent copy of the database.

use std::path::PathBuf;

use anyhow::Context as _;

use super::ConfigArgs;

pub fn run(file: PathBuf, cfg: ConfigArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        !file.exists(),
        "{} exists already: choose a new file (a backup never overwrites)",
        file.display()
    );
    let config = cfg.load(&[])?;
    let db = config.data.join("slices.db");
    anyhow::ensure!(db.is_file(), "there is no database at {}", db.display());
    // The folder must be there and writable: SQLite's own word for it is "Error code 14".
    let folder = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    anyhow::ensure!(
        folder.is_dir(),
        "cannot write {}: there is no folder {}",
        file.display(),
        folder.display()
    );
    let started = std::time::Instant::now();
    crate::store::backup(&db, &file).with_context(|| format!("backup to {}", file.display()))?;
    let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
    println!(
        "Backed up the database to {} ({} kB, {} ms).",
        file.display(),
        size / 1024,
        started.elapsed().as_millis()
    );
    println!(
        "Keep with it, from {}: ca/ (the agents' certificate authority), secret.key, \
                 gateway/master_ed25519 and os-templates/. They are files, not in the database.",
        config.data.display()
    );
    Ok(())
}
