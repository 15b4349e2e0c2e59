//! The master's small certificate authority and the mutual-TLS configurations built on it.
//!
//! The CA lives in the master's data folder (`ca/ca.pem`, `ca/ca.key`, mode 0600). It issues
//! one certificate to the master (client use only) and one per node (server use only, named
//! after the node). An agent accepts only clients with a client certificate from this CA, so a
//! node's own certificate cannot be used to command another node; the master checks that the
//! agent's certificate names the node it meant to reach.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::RootCertStore;

use crate::domain::NodeName;

/// The name in the master's certificate.
pub const MASTER_NAME: &str = "slices-master";

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts
            .open(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    Ok(())
}

fn ca_params() -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "Slices CA");
    dn.push(DnType::OrganizationName, "Slices");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p
}

fn validity(p: &mut CertificateParams, days: i64) {
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::days(1);
    p.not_after = now + time::Duration::days(days);
}

/// A certificate and its key, PEM.
#[derive(Clone)]
pub struct Identity {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Identity {
    /// The SHA-256 of the certificate, in hex (what the master pins for the node).
    pub fn fingerprint(&self) -> anyhow::Result<String> {
        let der = rustls_pemfile_der(&self.cert_pem)?;
        Ok(fingerprint_der(&der))
    }
}

/// The hex SHA-256 of a certificate's DER bytes.
pub fn fingerprint_der(der: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The DER bytes of the first certificate in a PEM text.
fn rustls_pemfile_der(pem: &str) -> anyhow::Result<Vec<u8>> {
    use base64::Engine as _;
    let body: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE-----"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END CERTIFICATE-----"))
        .collect();
    anyhow::ensure!(!body.is_empty(), "no certificate in the PEM text");
    Ok(base64::engine::general_purpose::STANDARD.decode(body.trim())?)
}

/// The certificate authority.
pub struct Ca {
    dir: PathBuf,
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    /// Opens the CA in `dir`, making it (and the master's certificate) on first use.
    pub fn open_or_create(dir: &Path) -> anyhow::Result<Ca> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let cert_path = dir.join("ca.pem");
        let key_path = dir.join("ca.key");
        let (cert_pem, key) = if cert_path.exists() {
            let key_pem = std::fs::read_to_string(&key_path)
                .with_context(|| format!("cannot read {}", key_path.display()))?;
            let key = KeyPair::from_pem(&key_pem).context("the CA key is not a valid PEM key")?;
            (std::fs::read_to_string(&cert_path)?, key)
        } else {
            let key = KeyPair::generate()?;
            let mut params = ca_params();
            validity(&mut params, 365 * 20);
            let cert = params.self_signed(&key)?;
            write_private(&key_path, &key.serialize_pem())?;
            std::fs::write(&cert_path, cert.pem())?;
            tracing::info!(dir = %dir.display(), "made the node certificate authority");
            (cert.pem(), key)
        };
        let ca = Ca {
            dir: dir.to_path_buf(),
            cert_pem,
            issuer: Issuer::new(ca_params(), key),
        };
        if !dir.join("master.pem").exists() {
            let id = ca.issue_master()?;
            write_private(&dir.join("master.key"), &id.key_pem)?;
            std::fs::write(dir.join("master.pem"), &id.cert_pem)?;
        }
        Ok(ca)
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    fn issue(&self, mut params: CertificateParams, days: i64) -> anyhow::Result<Identity> {
        validity(&mut params, days);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Identity {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// The master's client certificate.
    fn issue_master(&self) -> anyhow::Result<Identity> {
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, MASTER_NAME);
        p.distinguished_name = dn;
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        self.issue(p, 365 * 5)
    }

    /// A node's server certificate, naming the node.
    pub fn issue_node(&self, node: &NodeName) -> anyhow::Result<Identity> {
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, node.as_str());
        p.distinguished_name = dn;
        p.subject_alt_names = vec![SanType::DnsName(node.as_str().try_into()?)];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        self.issue(p, 365 * 5)
    }

    /// A certificate from this CA for a client that is not the master (only for tests that
    /// show such a client is refused).
    pub fn issue_other_client(&self, name: &str) -> anyhow::Result<Identity> {
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        p.distinguished_name = dn;
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(p, 30)
    }

    /// The master's own identity, for its client configuration.
    pub fn master_identity(&self) -> anyhow::Result<Identity> {
        Ok(Identity {
            cert_pem: std::fs::read_to_string(self.dir.join("master.pem"))?,
            key_pem: std::fs::read_to_string(self.dir.join("master.key"))?,
        })
    }

    /// The configuration the master connects to agents with.
    pub fn client_config(&self) -> anyhow::Result<Arc<rustls::ClientConfig>> {
        client_config(&self.cert_pem, &self.master_identity()?)
    }
}

fn roots(ca_pem: &str) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.context("the CA certificate is not valid PEM")?)?;
    }
    anyhow::ensure!(!roots.is_empty(), "no CA certificate found");
    Ok(roots)
}

fn chain_and_key(
    id: &Identity,
) -> anyhow::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let chain = CertificateDer::pem_slice_iter(id.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .context("the certificate is not valid PEM")?;
    let key =
        PrivateKeyDer::from_pem_slice(id.key_pem.as_bytes()).context("the key is not valid PEM")?;
    Ok((chain, key))
}

/// Mutual TLS 1.3, client side: trust only the CA, present `id`.
pub fn client_config(ca_pem: &str, id: &Identity) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let (chain, key) = chain_and_key(id)?;
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots(ca_pem)?)
        .with_client_auth_cert(chain, key)?;
    Ok(Arc::new(config))
}

/// Mutual TLS 1.3, server side (the agent): present `id`, and accept only clients whose
/// certificate the CA issued for client use.
pub fn server_config(ca_pem: &str, id: &Identity) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let (chain, key) = chain_and_key(id)?;
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots(ca_pem)?),
        provider(),
    )
    .build()?;
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    Ok(Arc::new(config))
}

/// The name the master expects in a node's certificate.
pub fn server_name(node: &NodeName) -> anyhow::Result<ServerName<'static>> {
    Ok(ServerName::try_from(node.as_str().to_string())?)
}

/// Reads an identity from PEM files.
pub fn load_identity(cert: &Path, key: &Path) -> anyhow::Result<Identity> {
    Ok(Identity {
        cert_pem: std::fs::read_to_string(cert)
            .with_context(|| format!("cannot read {}", cert.display()))?,
        key_pem: std::fs::read_to_string(key)
            .with_context(|| format!("cannot read {}", key.display()))?,
    })
}

/// Writes an agent's bundle: the CA certificate, its certificate and key (0600).
pub fn write_bundle(dir: &Path, ca_pem: &str, id: &Identity) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::write(dir.join("ca.pem"), ca_pem)?;
    std::fs::write(dir.join("agent.pem"), &id.cert_pem)?;
    write_private(&dir.join("agent.key"), &id.key_pem)?;
    Ok(())
}
