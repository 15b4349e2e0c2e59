//! The institution's single sign-on (OpenID Connect): "Log in with ...".
//!
//! The authorization code flow with PKCE. The browser is sent to the provider with a fresh
//! state, nonce and code challenge, which the web layer keeps, signed, in a short-lived cookie
//! of that browser (so a log-in started in another browser cannot be finished in this one).
//! The code that comes back is exchanged once, by this master authenticated with its client
//! secret, and the ID token is checked against the provider's published keys (signature,
//! issuer, audience, expiry, nonce) before anything in it is believed. The provider's metadata
//! and keys are fetched when first needed, again hourly, and again (at most once a minute)
//! when a token's signature does not check with the keys known, as after a key rotation.
//!
//! Nothing follows an HTTP redirect from the provider's endpoints, and the provider is reached
//! over https, or over http only on this machine.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreIdToken, CoreIdTokenClaims, CoreProviderMetadata,
};
use openidconnect::{
    AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret, CsrfToken, IssuerUrl,
    Nonce, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RequestTokenError, Scope,
};
use serde_json::Value;

use super::external::{role_from_groups, Person};
use crate::config::Config;
use crate::domain::{DisplayName, Email, Username};

/// How long one exchange with the provider may take.
const TIMEOUT: Duration = Duration::from_secs(10);
/// How long the provider's metadata and keys are used before they are fetched again.
const METADATA_LIFE: Duration = Duration::from_secs(3600);
/// A token that does not check makes the keys be fetched again, but not more often than this.
const METADATA_RETRY: Duration = Duration::from_secs(60);

/// The provider, as the settings describe it.
#[derive(Clone)]
pub struct SingleSignOn {
    inner: Arc<Inner>,
}

struct Inner {
    issuer: IssuerUrl,
    client_id: ClientId,
    client_secret: ClientSecret,
    label: String,
    scopes: Vec<String>,
    username_claim: String,
    groups_claim: String,
    admin_groups: Vec<String>,
    staff_groups: Vec<String>,
    course_prefix: String,
    http: openidconnect::reqwest::Client,
    metadata: tokio::sync::Mutex<Option<(Instant, CoreProviderMetadata)>>,
}

impl std::fmt::Debug for SingleSignOn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SingleSignOn")
            .field("issuer", &self.inner.issuer.as_str())
            .finish()
    }
}

/// A log-in on its way to the provider: where to send the browser, and what this browser must
/// bring back for the answer to be believed.
#[derive(Debug, Clone)]
pub struct Started {
    pub url: String,
    pub state: String,
    pub nonce: String,
    pub verifier: String,
}

/// What the provider's answer, brought back by the browser, says.
#[derive(Debug, Clone, Default)]
pub struct Answer {
    pub code: String,
    /// The issuer the provider says it is (RFC 9207), when it says.
    pub iss: Option<String>,
}

/// Why single sign-on did not log someone in.
#[derive(Debug, thiserror::Error)]
pub enum SsoError {
    #[error("the single sign-on service does not answer: {0}")]
    Unreachable(String),
    /// The provider refused to exchange the code (used already, expired, not for this client).
    #[error("the single sign-on service refused the log-in: {0}")]
    Refused(String),
    /// The ID token does not check: forged, for someone else, expired, replayed.
    #[error("the single sign-on answer does not check: {0}")]
    Forged(String),
    /// The provider vouches for someone with a username or address this system cannot take.
    #[error("{0}")]
    Unusable(String),
}

/// Names separated by `;`, trimmed, empty ones dropped.
fn name_list(raw: &str) -> Vec<String> {
    raw.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn http_client(ca_file: Option<&Path>) -> anyhow::Result<openidconnect::reqwest::Client> {
    use openidconnect::reqwest;
    let mut builder = reqwest::Client::builder()
        // Following a redirect from a token or key endpoint would let it send this master
        // anywhere (SSRF): none is followed.
        .redirect(reqwest::redirect::Policy::none())
        .timeout(TIMEOUT)
        .connect_timeout(TIMEOUT);
    if let Some(f) = ca_file {
        let pem = std::fs::read(f)
            .with_context(|| format!("oidc_ca_file: cannot read {}", f.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .with_context(|| format!("oidc_ca_file: no PEM certificate in {}", f.display()))?;
        anyhow::ensure!(
            !certs.is_empty(),
            "oidc_ca_file: no certificate in {}",
            f.display()
        );
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build().context("cannot set up the HTTP client")
}

impl SingleSignOn {
    /// The provider the settings name, or `None` when `oidc_issuer` is empty. Settings that
    /// cannot work are refused here, at start, with the setting's name.
    pub fn from_config(c: &Config) -> anyhow::Result<Option<SingleSignOn>> {
        let issuer = c.oidc_issuer.trim().trim_end_matches('/');
        if issuer.is_empty() {
            return Ok(None);
        }
        let url = openidconnect::url::Url::parse(issuer)
            .with_context(|| format!("oidc_issuer: `{issuer}` is not a URL"))?;
        let loopback = matches!(
            url.host(),
            Some(openidconnect::url::Host::Ipv4(ip)) if ip.is_loopback()
        ) || matches!(url.host(), Some(openidconnect::url::Host::Ipv6(ip)) if ip.is_loopback())
            || url.host_str() == Some("localhost");
        anyhow::ensure!(
            url.scheme() == "https" || (url.scheme() == "http" && loopback),
            "oidc_issuer: `{issuer}` must be https:// (http:// only for a provider on this machine)"
        );
        anyhow::ensure!(
            url.query().is_none() && url.fragment().is_none(),
            "oidc_issuer: `{issuer}` must not have a query or a fragment"
        );
        anyhow::ensure!(
            !c.oidc_client_id.trim().is_empty(),
            "oidc_client_id: the client id this master has at {issuer} is needed"
        );
        anyhow::ensure!(
            !c.oidc_client_secret.0.is_empty(),
            "oidc_client_secret: the client secret the provider gave this master is needed"
        );
        let scopes: Vec<String> = c
            .oidc_scopes
            .split_whitespace()
            .filter(|s| *s != "openid")
            .map(str::to_string)
            .collect();
        for s in &scopes {
            anyhow::ensure!(
                s.chars()
                    .all(|ch| ch.is_ascii_graphic() && ch != '"' && ch != '\\'),
                "oidc_scopes: `{s}` is not a scope"
            );
        }
        anyhow::ensure!(
            !c.oidc_username_claim.trim().is_empty(),
            "oidc_username_claim: the claim that holds the username is needed"
        );
        anyhow::ensure!(
            !c.oidc_label.trim().is_empty() && c.oidc_label.chars().count() <= 80,
            "oidc_label: give the institution's name, up to 80 characters"
        );
        let inner = Inner {
            // The issuer as the provider writes it (the discovery document must say the same).
            issuer: IssuerUrl::new(c.oidc_issuer.trim().to_string())
                .with_context(|| format!("oidc_issuer: `{issuer}` is not a URL"))?,
            client_id: ClientId::new(c.oidc_client_id.trim().to_string()),
            client_secret: ClientSecret::new(c.oidc_client_secret.0.clone()),
            label: c.oidc_label.trim().to_string(),
            scopes,
            username_claim: c.oidc_username_claim.trim().to_string(),
            groups_claim: c.oidc_groups_claim.trim().to_string(),
            admin_groups: name_list(&c.oidc_admin_groups),
            staff_groups: name_list(&c.oidc_staff_groups),
            course_prefix: c.oidc_course_prefix.trim().to_string(),
            http: http_client(c.oidc_ca_file.as_deref())?,
            metadata: tokio::sync::Mutex::new(None),
        };
        Ok(Some(SingleSignOn {
            inner: Arc::new(inner),
        }))
    }

    /// The institution's name, for "Log in with ...".
    pub fn label(&self) -> &str {
        &self.inner.label
    }

    /// The provider's metadata and keys: the ones kept, or fetched now when there are none,
    /// they are old, or `refresh` asks and the last fetch was long enough ago.
    async fn metadata(&self, refresh: bool) -> Result<CoreProviderMetadata, SsoError> {
        let mut kept = self.inner.metadata.lock().await;
        if let Some((at, meta)) = kept.as_ref() {
            let age = at.elapsed();
            if age < METADATA_LIFE && !(refresh && age >= METADATA_RETRY) {
                return Ok(meta.clone());
            }
        }
        let meta =
            CoreProviderMetadata::discover_async(self.inner.issuer.clone(), &self.inner.http)
                .await
                .map_err(|e| SsoError::Unreachable(chain(&e)))?;
        *kept = Some((Instant::now(), meta.clone()));
        Ok(meta)
    }

    fn redirect(redirect_uri: &str) -> Result<RedirectUrl, SsoError> {
        RedirectUrl::new(redirect_uri.to_string())
            .map_err(|e| SsoError::Unusable(format!("the callback address is not a URL: {e}")))
    }

    /// Starts a log-in: the provider's address to send the browser to, with a new state,
    /// nonce and PKCE challenge; `redirect_uri` is this master's callback.
    pub async fn begin(&self, redirect_uri: &str) -> Result<Started, SsoError> {
        let meta = self.metadata(false).await?;
        let client = CoreClient::from_provider_metadata(
            meta,
            self.inner.client_id.clone(),
            Some(self.inner.client_secret.clone()),
        )
        .set_redirect_uri(Self::redirect(redirect_uri)?);
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge);
        for s in &self.inner.scopes {
            request = request.add_scope(Scope::new(s.clone()));
        }
        let (url, state, nonce) = request.url();
        Ok(Started {
            url: url.to_string(),
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            verifier: verifier.secret().clone(),
        })
    }

    /// Finishes a log-in: exchanges the code the browser brought back (with the verifier of
    /// the challenge sent) and checks the ID token, with the nonce sent, before taking the
    /// person it names.
    pub async fn finish(
        &self,
        redirect_uri: &str,
        answer: &Answer,
        nonce: &str,
        verifier: &str,
    ) -> Result<Person, SsoError> {
        if let Some(iss) = &answer.iss {
            // RFC 9207: an answer naming another issuer is another provider's (a mix-up).
            if iss.trim_end_matches('/') != self.inner.issuer.as_str().trim_end_matches('/') {
                return Err(SsoError::Forged(format!(
                    "the answer names the issuer {iss}"
                )));
            }
        }
        let meta = self.metadata(false).await?;
        let client = CoreClient::from_provider_metadata(
            meta,
            self.inner.client_id.clone(),
            Some(self.inner.client_secret.clone()),
        )
        .set_redirect_uri(Self::redirect(redirect_uri)?);
        let response = client
            .exchange_code(AuthorizationCode::new(answer.code.clone()))
            .map_err(|e| SsoError::Unreachable(format!("the provider has no token endpoint: {e}")))?
            .set_pkce_verifier(PkceCodeVerifier::new(verifier.to_string()))
            .request_async(&self.inner.http)
            .await
            .map_err(|e| match e {
                RequestTokenError::ServerResponse(r) => {
                    SsoError::Refused(match r.error_description() {
                        Some(d) => format!("{} ({d})", r.error()),
                        None => r.error().to_string(),
                    })
                }
                other => SsoError::Unreachable(chain(&other)),
            })?;
        let token: CoreIdToken = openidconnect::TokenResponse::id_token(&response)
            .cloned()
            .ok_or_else(|| SsoError::Forged("the provider sent no ID token".into()))?;
        let nonce = Nonce::new(nonce.to_string());
        let checked = {
            let verifier = client.id_token_verifier();
            token.claims(&verifier, &nonce).cloned()
        };
        let claims = match checked {
            Ok(c) => c,
            Err(ClaimsVerificationError::SignatureVerification(first)) => {
                // Perhaps the provider has rotated its keys: fetch them again (not more often
                // than once a minute) and check once more.
                let meta = self.metadata(true).await?;
                let client = CoreClient::from_provider_metadata(
                    meta,
                    self.inner.client_id.clone(),
                    Some(self.inner.client_secret.clone()),
                );
                let verifier = client.id_token_verifier();
                token.claims(&verifier, &nonce).cloned().map_err(|_| {
                    SsoError::Forged(format!("its signature does not check ({first})"))
                })?
            }
            Err(e) => return Err(SsoError::Forged(e.to_string())),
        };
        self.person(&claims, &raw_claims(&token.to_string())?)
    }

    /// The person the checked claims name. `raw`: the same token's claims as JSON, for the
    /// username and groups claims the settings name.
    fn person(&self, claims: &CoreIdTokenClaims, raw: &Value) -> Result<Person, SsoError> {
        let unusable = |what: &str, why: String| {
            SsoError::Unusable(format!(
                "Your {what} at {} cannot be used here: {why}. Ask the lab staff.",
                self.inner.label
            ))
        };
        let sub = claims.subject().as_str();
        if sub.is_empty() || sub.len() > 255 {
            return Err(SsoError::Forged("the subject is empty or too long".into()));
        }
        let name_claim = raw
            .get(&self.inner.username_claim)
            .and_then(Value::as_str)
            .ok_or_else(|| {
                unusable(
                    "username",
                    format!("the ID token has no `{}` claim", self.inner.username_claim),
                )
            })?;
        let username = Username::parse_new(&name_claim.trim().to_lowercase())
            .map_err(|e| unusable("username", e.message))?;
        let email = claims
            .email()
            .ok_or_else(|| unusable("email address", "the ID token has none".into()))?;
        if claims.email_verified() == Some(false) {
            return Err(unusable(
                "email address",
                "the provider says it is not confirmed".into(),
            ));
        }
        let email =
            Email::parse(email.as_str()).map_err(|e| unusable("email address", e.message))?;
        let name = claims
            .name()
            .and_then(|n| n.get(None))
            .map(|n| n.as_str().trim().to_string())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| username.as_str().to_string());
        let display_name = DisplayName::parse(&name).map_err(|e| unusable("name", e.message))?;
        let groups: Vec<String> = if self.inner.groups_claim.is_empty() {
            Vec::new()
        } else {
            match raw.get(&self.inner.groups_claim) {
                Some(Value::Array(items)) => items
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect(),
                Some(Value::String(one)) => vec![one.clone()],
                _ => Vec::new(),
            }
        };
        let role = role_from_groups(&self.inner.admin_groups, &self.inner.staff_groups, |list| {
            groups.iter().any(|g| list.contains(g))
        });
        let mut courses: Vec<String> = if self.inner.course_prefix.is_empty() {
            Vec::new()
        } else {
            groups
                .iter()
                .filter_map(|g| g.strip_prefix(&self.inner.course_prefix))
                .filter(|code| !code.is_empty())
                .map(str::to_string)
                .collect()
        };
        courses.sort();
        courses.dedup();
        Ok(Person {
            external_id: sub.to_string(),
            username,
            email,
            display_name,
            role,
            courses,
        })
    }
}

/// The claims of a JWT whose signature has been checked, as JSON.
fn raw_claims(jwt: &str) -> Result<Value, SsoError> {
    let payload = jwt
        .split('.')
        .nth(1)
        .ok_or_else(|| SsoError::Forged("the ID token is not a JWT".into()))?;
    let bytes = URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| SsoError::Forged("the ID token's claims are not base64".into()))?;
    serde_json::from_slice(&bytes)
        .map_err(|_| SsoError::Forged("the ID token's claims are not JSON".into()))
}

/// An error and its causes, on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Config {
        let flags: Vec<(&str, String)> = pairs.iter().map(|(k, v)| (*k, v.to_string())).collect();
        Config::load(None, Vec::<(String, String)>::new(), &flags).unwrap()
    }

    fn err(pairs: &[(&str, &str)]) -> String {
        SingleSignOn::from_config(&config(pairs))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn settings_that_cannot_work_are_refused_by_name() {
        assert!(SingleSignOn::from_config(&config(&[])).unwrap().is_none());
        let ok = [
            ("oidc_client_id", "slices"),
            ("oidc_client_secret", "s3cret"),
        ];
        let with = |issuer: &'static str| {
            let mut v = vec![("oidc_issuer", issuer)];
            v.extend_from_slice(&ok);
            v
        };
        assert!(err(&with("http://login.example.edu")).starts_with("oidc_issuer:"));
        assert!(err(&with("ftp://login.example.edu")).starts_with("oidc_issuer:"));
        assert!(err(&with("not a url")).starts_with("oidc_issuer:"));
        assert!(err(&with("https://login.example.edu/?x=1")).starts_with("oidc_issuer:"));
        assert!(err(&[("oidc_issuer", "https://login.example.edu")]).starts_with("oidc_client_id:"));
        assert!(err(&[
            ("oidc_issuer", "https://login.example.edu"),
            ("oidc_client_id", "slices")
        ])
        .starts_with("oidc_client_secret:"));
        for good in [
            "https://login.example.edu/realms/college",
            "http://127.0.0.1:4000",
            "http://localhost:4000/",
            "http://[::1]:4000",
        ] {
            let sso = SingleSignOn::from_config(&config(&with(good)))
                .unwrap_or_else(|e| panic!("{good}: {e}"))
                .unwrap();
            assert_eq!(sso.label(), "your institution");
        }
    }

    #[test]
    fn raw_claims_are_read_from_the_payload_only() {
        let payload = URL_SAFE_NO_PAD.encode(br#"{"sub":"1","groups":["a","b"]}"#);
        let v = raw_claims(&format!("e30.{payload}.sig")).unwrap();
        assert_eq!(v["groups"][1], "b");
        assert!(raw_claims("no-dots").is_err());
        assert!(raw_claims("e30.!!!.x").is_err());
    }
}
