//! How a session reaches its device: the gRPC endpoint (plain text, TLS or mutual TLS)
//! and the credentials sent as gRPC metadata, resolved from the Secrets a Device names.
//!
//! Secrets are read from a directory, one sub-directory per Secret, which is also the
//! layout of a Kubernetes Secret mounted as a volume:
//! `<secrets-dir>/<secret>/{ca.crt,tls.crt,tls.key,username,password}`. They are read
//! on every connection attempt, so a rotated certificate or password is picked up on the
//! next reconnect.

use std::path::{Path as FsPath, PathBuf};

use crds::DeviceSpec;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

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
    username: MetadataValue<Ascii>,
    password: MetadataValue<Ascii>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// Adds the credentials to a request's metadata.
    pub fn apply<T>(&self, request: &mut tonic::Request<T>) {
        let metadata = request.metadata_mut();
        metadata.insert(USERNAME_METADATA, self.username.clone());
        metadata.insert(PASSWORD_METADATA, self.password.clone());
    }
}

/// Everything needed to open a session to one device.
#[derive(Debug)]
pub struct Target {
    /// The endpoint, with TLS configured unless the device is insecure.
    pub endpoint: Endpoint,
    /// `host:port`, for messages.
    pub authority: String,
    /// Credentials to send, when the device names a credentials Secret.
    pub credentials: Option<Credentials>,
}

/// Builds the endpoint and credentials of a device; errors are plain words naming the
/// Secret or file at fault.
pub fn target(spec: &DeviceSpec, config: &CollectorConfig) -> Result<Target, String> {
    let authority = if spec.address.contains(':') {
        format!("[{}]:{}", spec.address, spec.gnmi.port)
    } else {
        format!("{}:{}", spec.address, spec.gnmi.port)
    };
    let scheme = if spec.gnmi.insecure { "http" } else { "https" };
    let mut endpoint = Endpoint::from_shared(format!("{scheme}://{authority}"))
        .map_err(|e| format!("invalid address {authority}: {e}"))?
        .connect_timeout(config.connect_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(config.keepalive_interval)
        .keep_alive_timeout(config.keepalive_timeout)
        .keep_alive_while_idle(true)
        .initial_stream_window_size(config.stream_window)
        .initial_connection_window_size(config.connection_window);
    if !spec.gnmi.insecure {
        let tls_spec = spec.gnmi.tls.clone().unwrap_or_default();
        let server_name = tls_spec
            .server_name
            .clone()
            .unwrap_or_else(|| spec.address.clone());
        let mut tls = ClientTlsConfig::new().domain_name(server_name);
        tls = match &tls_spec.ca_secret {
            Some(secret) => {
                let pem = read_secret(config, secret, CA_FILE)?;
                tls.ca_certificate(Certificate::from_pem(pem))
            }
            None => tls.with_enabled_roots(),
        };
        if let Some(secret) = &tls_spec.client_cert_secret {
            let cert = read_secret(config, secret, CERT_FILE)?;
            let key = read_secret(config, secret, KEY_FILE)?;
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|e| format!("TLS settings rejected: {e}"))?;
    }
    let credentials = match &spec.credentials {
        None => None,
        Some(secret) => {
            let username = read_text(config, &secret.name, secret.username_key())?;
            let password = read_text(config, &secret.name, secret.password_key())?;
            let value = |key: &str, text: String| {
                MetadataValue::try_from(text).map_err(|_| {
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
        endpoint,
        authority,
        credentials,
    })
}

fn secret_file(config: &CollectorConfig, secret: &str, key: &str) -> Result<PathBuf, String> {
    let Some(dir) = &config.secrets_dir else {
        return Err(format!(
            "the device uses Secret {secret}, but the collector has no secrets directory (--secrets-dir)"
        ));
    };
    Ok(FsPath::new(dir).join(secret).join(key))
}

fn read_secret(config: &CollectorConfig, secret: &str, key: &str) -> Result<Vec<u8>, String> {
    let file = secret_file(config, secret, key)?;
    std::fs::read(&file).map_err(|e| {
        format!(
            "cannot read {key} of Secret {secret} ({}): {e}",
            file.display()
        )
    })
}

/// A text key with surrounding whitespace removed (files written by `echo` end in `\n`).
fn read_text(config: &CollectorConfig, secret: &str, key: &str) -> Result<String, String> {
    let bytes = read_secret(config, secret, key)?;
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

    #[test]
    fn insecure_devices_use_plain_text() {
        let mut spec = spec();
        spec.gnmi.insecure = true;
        let t = target(&spec, &CollectorConfig::default()).unwrap();
        assert_eq!(t.endpoint.uri().scheme_str(), Some("http"));
        assert_eq!(t.authority, "127.0.0.1:6030");
        assert!(t.credentials.is_none());
    }

    #[test]
    fn secrets_are_read_from_the_secrets_dir() {
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
        let t = target(&spec, &config).unwrap();
        let mut request = tonic::Request::new(());
        t.credentials.unwrap().apply(&mut request);
        assert_eq!(request.metadata().get("username").unwrap(), "admin");
        assert_eq!(request.metadata().get("password").unwrap(), "s3cret");
    }

    #[test]
    fn missing_secrets_are_named() {
        let mut spec = spec();
        spec.gnmi.tls = Some(crds::TlsSpec {
            ca_secret: Some("fabric-ca".into()),
            ..Default::default()
        });
        let error = target(&spec, &CollectorConfig::default()).unwrap_err();
        assert!(
            error.contains("fabric-ca") && error.contains("--secrets-dir"),
            "{error}"
        );
        let dir = tempfile::tempdir().unwrap();
        let config = CollectorConfig {
            secrets_dir: Some(dir.path().to_owned()),
            ..CollectorConfig::default()
        };
        let error = target(&spec, &config).unwrap_err();
        assert!(error.contains("ca.crt of Secret fabric-ca"), "{error}");
    }
}
