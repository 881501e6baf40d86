//! How a session reaches its device: the gRPC endpoint (plain text, TLS or mutual TLS)
//! and the credentials sent as gRPC metadata, resolved from the Secrets a Device names.
//!
//! Secrets are read from a directory, one sub-directory per Secret, which is also the
//! layout of a Kubernetes Secret mounted as a volume:
//! `<secrets-dir>/<secret>/{ca.crt,tls.crt,tls.key,username,password}`. They are read
//! on every connection attempt, so a rotated certificate or password is picked up on the
//! next reconnect.

use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, OnceLock};

use crds::DeviceSpec;
use http::{HeaderMap, HeaderValue};
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

use crate::CollectorConfig;

/// Metadata key carrying the user name (gNMI authentication convention).
pub const USERNAME_METADATA: &str = "username";
/// Metadata key carrying the password.
pub const PASSWORD_METADATA: &str = "password";
/// File of a CA Secret holding the PEM bundle.
pub const CA_FILE: &str = "ca.crt";
/// File of a TLS Secret holding the PEM certificate chain.
pub const CERT_FILE: &str = "tls.crt";
/// File of a TLS Secret holding the PEM private key.
pub const KEY_FILE: &str = "tls.key";

/// User name and password, ready to attach to each request.
#[derive(Clone)]
pub struct Credentials {
    username: HeaderValue,
    password: HeaderValue,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// Adds the credentials to a request's headers (gRPC metadata).
    pub fn insert(&self, headers: &mut HeaderMap) {
        headers.insert(USERNAME_METADATA, self.username.clone());
        headers.insert(PASSWORD_METADATA, self.password.clone());
    }
}

/// TLS settings of one device.
#[derive(Clone)]
pub struct Tls {
    /// Roots, client identity, ALPN `h2`.
    pub config: Arc<ClientConfig>,
    /// The name the device certificate must hold.
    pub server_name: ServerName<'static>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

/// Everything needed to open a session to one device.
#[derive(Debug)]
pub struct Target {
    /// `host:port` (`[v6]:port`), to connect to and for messages.
    pub authority: String,
    /// TLS, unless the device is insecure.
    pub tls: Option<Tls>,
    /// Credentials to send, when the device names a credentials Secret.
    pub credentials: Option<Credentials>,
}

/// Builds the endpoint and credentials of a device; errors are plain words naming the
/// Secret or file at fault.
pub async fn target(spec: &DeviceSpec, config: &CollectorConfig) -> Result<Target, String> {
    let authority = if spec.address.contains(':') {
        format!("[{}]:{}", spec.address, spec.gnmi.port)
    } else {
        format!("{}:{}", spec.address, spec.gnmi.port)
    };
    let tls = if spec.gnmi.insecure {
        None
    } else {
        let tls_spec = spec.gnmi.tls.clone().unwrap_or_default();
        let name = tls_spec
            .server_name
            .clone()
            .unwrap_or_else(|| spec.address.clone());
        let server_name = ServerName::try_from(name.clone())
            .map_err(|e| format!("TLS server name {name:?} is not usable: {e}"))?;
        let roots = match &tls_spec.ca_secret {
            Some(secret) => {
                let pem = read_secret(config, secret, CA_FILE).await?;
                let mut roots = RootCertStore::empty();
                for cert in CertificateDer::pem_slice_iter(&pem) {
                    let cert = cert.map_err(|e| {
                        format!("{CA_FILE} of Secret {secret} is not a PEM certificate bundle: {e}")
                    })?;
                    roots.add(cert).map_err(|e| {
                        format!("{CA_FILE} of Secret {secret} holds an unusable certificate: {e}")
                    })?;
                }
                if roots.is_empty() {
                    return Err(format!("{CA_FILE} of Secret {secret} holds no certificate"));
                }
                Arc::new(roots)
            }
            None => system_roots(),
        };
        let builder =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|e| format!("TLS settings rejected: {e}"))?
                .with_root_certificates(roots);
        let mut tls = match &tls_spec.client_cert_secret {
            Some(secret) => {
                let cert = read_secret(config, secret, CERT_FILE).await?;
                let key = read_secret(config, secret, KEY_FILE).await?;
                let chain = CertificateDer::pem_slice_iter(&cert)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("{CERT_FILE} of Secret {secret} is not PEM: {e}"))?;
                let key = PrivateKeyDer::from_pem_slice(&key).map_err(|e| {
                    format!("{KEY_FILE} of Secret {secret} is not a PEM private key: {e}")
                })?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| format!("client certificate of Secret {secret} rejected: {e}"))?
            }
            None => builder.with_no_client_auth(),
        };
        tls.alpn_protocols = vec![b"h2".to_vec()];
        Some(Tls {
            config: Arc::new(tls),
            server_name,
        })
    };
    let credentials = match &spec.credentials {
        None => None,
        Some(secret) => {
            let username = read_text(config, &secret.name, secret.username_key()).await?;
            let password = read_text(config, &secret.name, secret.password_key()).await?;
            let value = |key: &str, text: String| {
                HeaderValue::try_from(text).map_err(|_| {
                    format!(
                        "Secret {}: {key} holds characters gRPC metadata cannot carry",
                        secret.name
                    )
                })
            };
            Some(Credentials {
                username: value(secret.username_key(), username)?,
                password: value(secret.password_key(), password)?,
            })
        }
    };
    Ok(Target {
        authority,
        tls,
        credentials,
    })
}

/// The system's trusted roots, loaded once per process (10,000 devices must not read
/// the system store 10,000 times).
fn system_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let mut roots = RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            for error in &found.errors {
                tracing::warn!(%error, "a system root certificate could not be loaded");
            }
            let (added, ignored) = roots.add_parsable_certificates(found.certs);
            tracing::debug!(added, ignored, "system root certificates loaded");
            Arc::new(roots)
        })
        .clone()
}

fn secret_file(config: &CollectorConfig, secret: &str, key: &str) -> Result<PathBuf, String> {
    let Some(dir) = &config.secrets_dir else {
        return Err(format!(
            "the device uses Secret {secret}, but the collector has no secrets directory (--secrets-dir)"
        ));
    };
    Ok(FsPath::new(dir).join(secret).join(key))
}

/// Where a collector reads the Secrets its Devices name, when not from a directory (the
/// Kubernetes API: `crate::k8s::ApiSecrets`).
#[async_trait::async_trait]
pub trait SecretSource: Send + Sync + std::fmt::Debug {
    /// The bytes of `key` of Secret `secret`; errors are plain words naming both.
    async fn read(&self, secret: &str, key: &str) -> Result<Vec<u8>, String>;
}

async fn read_secret(config: &CollectorConfig, secret: &str, key: &str) -> Result<Vec<u8>, String> {
    if let Some(source) = &config.secret_source {
        return source.read(secret, key).await;
    }
    let file = secret_file(config, secret, key)?;
    std::fs::read(&file).map_err(|e| {
        format!(
            "cannot read {key} of Secret {secret} ({}): {e}",
            file.display()
        )
    })
}

/// A text key with surrounding whitespace removed (files written by `echo` end in `\n`).
pub(crate) async fn read_text(
    config: &CollectorConfig,
    secret: &str,
    key: &str,
) -> Result<String, String> {
    let bytes = read_secret(config, secret, key).await?;
    String::from_utf8(bytes)
        .map(|s| s.trim().to_owned())
        .map_err(|_| format!("{key} of Secret {secret} is not UTF-8 text"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> DeviceSpec {
        let mut spec = DeviceSpec::new("127.0.0.1");
        spec.gnmi.port = 6030;
        spec
    }

    #[tokio::test]
    async fn insecure_devices_use_plain_text() {
        let mut spec = spec();
        spec.gnmi.insecure = true;
        let t = target(&spec, &CollectorConfig::default()).await.unwrap();
        assert!(t.tls.is_none());
        assert_eq!(t.authority, "127.0.0.1:6030");
        assert!(t.credentials.is_none());
    }

    #[tokio::test]
    async fn secrets_are_read_from_the_secrets_dir() {
        let dir = tempfile::tempdir().unwrap();
        let creds = dir.path().join("leaf1-creds");
        std::fs::create_dir(&creds).unwrap();
        std::fs::write(creds.join("username"), "admin\n").unwrap();
        std::fs::write(creds.join("password"), "s3cret\n").unwrap();
        let mut spec = spec();
        spec.gnmi.insecure = true;
        spec.credentials = Some(crds::SecretRef {
            name: "leaf1-creds".into(),
            username_key: None,
            password_key: None,
        });
        let config = CollectorConfig {
            secrets_dir: Some(dir.path().to_owned()),
            ..CollectorConfig::default()
        };
        let t = target(&spec, &config).await.unwrap();
        let mut headers = HeaderMap::new();
        t.credentials.unwrap().insert(&mut headers);
        assert_eq!(headers.get("username").unwrap(), "admin");
        assert_eq!(headers.get("password").unwrap(), "s3cret");
    }

    #[tokio::test]
    async fn missing_secrets_are_named() {
        let mut spec = spec();
        spec.gnmi.tls = Some(crds::TlsSpec {
            ca_secret: Some("fabric-ca".into()),
            ..Default::default()
        });
        let error = target(&spec, &CollectorConfig::default())
            .await
            .unwrap_err();
        assert!(
            error.contains("fabric-ca") && error.contains("--secrets-dir"),
            "{error}"
        );
        let dir = tempfile::tempdir().unwrap();
        let config = CollectorConfig {
            secrets_dir: Some(dir.path().to_owned()),
            ..CollectorConfig::default()
        };
        let error = target(&spec, &config).await.unwrap_err();
        assert!(error.contains("ca.crt of Secret fabric-ca"), "{error}");
    }
}
