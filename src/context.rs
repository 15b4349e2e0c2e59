//! What every part of the master shares: the configuration, the database, the rules and the
//! signing key. Opened once by `slices serve` and by the shell commands alike.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;

use crate::config::Config;
use crate::ops::accounts::Policy;
use crate::store::Db;

pub struct Context {
    pub config: Config,
    pub db: Db,
    pub policy: Policy,
    /// Key for signing form tokens and short-lived cookies.
    pub secret: Vec<u8>,
    /// The address the web interface is reached at, once it listens (port 0 becomes real).
    pub public_base: std::sync::OnceLock<String>,
    /// The port the built-in SSH gateway listens on, once it does (port 0 becomes real).
    pub ssh_port: std::sync::OnceLock<u16>,
    /// The college directory people log in through, when `ldap_url` names one.
    pub directory: Option<crate::ops::accounts::Directory>,
    /// The institution's single sign-on, when `oidc_issuer` names a provider.
    pub sso: Option<crate::ops::accounts::SingleSignOn>,
}

impl Context {
    /// Creates the data folder (mode 0700) if needed, opens and migrates the database, and
    /// loads or makes the signing key.
    pub fn open(config: Config) -> anyhow::Result<Arc<Context>> {
        let data = &config.data;
        std::fs::create_dir_all(data)
            .with_context(|| format!("cannot create the data folder {}", data.display()))?;
        restrict(data, 0o700)?;
        let db = Db::open(&data.join("slices.db"), config.db_readers)?;
        let secret = if config.secret_key.0.is_empty() {
            load_or_make_key(&data.join("secret.key"))?
        } else {
            config.secret_key.0.as_bytes().to_vec()
        };
        let directory = crate::ops::accounts::Directory::from_config(&config)?;
        let sso = crate::ops::accounts::SingleSignOn::from_config(&config)?;
        anyhow::ensure!(
            config.local_logins == "all" || directory.is_some() || sso.is_some(),
            "local_logins = \"admins\" needs another way in for everyone else: set ldap_url \
             or oidc_issuer"
        );
        Ok(Arc::new(Context {
            directory,
            sso,
            policy: Policy::from_config(&config),
            config,
            db,
            secret,
            public_base: std::sync::OnceLock::new(),
            ssh_port: std::sync::OnceLock::new(),
        }))
    }
}

impl Context {
    /// Opens the data of a master that exists, for a command other than `serve`: a missing
    /// database is an error that names the folder looked in (nothing is made there).
    pub fn open_existing(config: Config) -> anyhow::Result<Arc<Context>> {
        let db = config.data.join("slices.db");
        anyhow::ensure!(
            db.is_file(),
            "there is no Slices database in {} (looked for {}). Name the master's data with \
             --data or --config (or SLICES_CONFIG, or put the configuration in {}); only \
             `slices serve` makes a new one",
            config.data.display(),
            db.display(),
            crate::config::system_config_path().display()
        );
        Context::open(config)
    }

    /// Where staff hand a local account over to, after a clash: the college directory when
    /// there is one, else single sign-on; `None` when neither is set up.
    pub fn link_source(&self) -> Option<crate::ops::accounts::AuthSource> {
        use crate::ops::accounts::AuthSource;
        if self.directory.is_some() {
            Some(AuthSource::Ldap)
        } else if self.sso.is_some() {
            Some(AuthSource::Oidc)
        } else {
            None
        }
    }

    /// What messages need to know about the site.
    pub fn site(&self) -> crate::mail::Site {
        let mut site = crate::mail::Site::new(&self.config, self.base_url());
        if let (0, Some(p)) = (self.config.gateway_port, self.ssh_port.get()) {
            site.gateway_port = *p;
        }
        site
    }

    /// The base URL for links: the configured public URL, or where the server listens.
    pub fn base_url(&self) -> String {
        self.public_base
            .get()
            .cloned()
            .unwrap_or_else(|| self.config.base_url())
    }
}

#[cfg(unix)]
fn restrict(path: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot set the mode of {}", path.display()))
}

#[cfg(not(unix))]
fn restrict(_: &Path, _: u32) -> anyhow::Result<()> {
    Ok(())
}

fn load_or_make_key(path: &Path) -> anyhow::Result<Vec<u8>> {
    if let Ok(text) = std::fs::read_to_string(path) {
        let key = text.trim().as_bytes().to_vec();
        anyhow::ensure!(
            key.len() >= 32,
            "the key in {} is too short",
            path.display()
        );
        return Ok(key);
    }
    let key = crate::ops::accounts::token::new_token();
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, &key).with_context(|| format!("cannot write {}", tmp.display()))?;
    restrict(&tmp, 0o600)?;
    std::fs::rename(&tmp, path)?;
    Ok(key.into_bytes())
}
