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
