//! A throwaway certificate authority for a fleet: one server certificate per device
//! (subject alternative name = the device's IP) and one client identity for mutual TLS.

use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

use crate::{Error, Result};

/// Common name of the fleet's CA certificate.
const CA_NAME: &str = "netpulse simulator CA";
/// Common name of the client certificate handed out for mutual TLS.
const CLIENT_NAME: &str = "netpulse simulator client";

/// A certificate and its private key, both PEM.
#[derive(Clone)]
pub(crate) struct PemPair {
    pub cert: String,
    pub key: String,
}

impl std::fmt::Debug for PemPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print private keys, even throwaway ones.
        f.debug_struct("PemPair").finish_non_exhaustive()
    }
}

/// The fleet's CA: signs device and client certificates.
pub(crate) struct Authority {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority").finish_non_exhaustive()
    }
}

impl Authority {
    /// A new CA with a fresh key.
    pub(crate) fn generate() -> Result<Self> {
        let mut params = CertificateParams::default();
        params.distinguished_name = name(CA_NAME);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().map_err(tls_error)?;
        let cert = params.self_signed(&key).map_err(tls_error)?;
        Ok(Self {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA certificate, PEM: what clients trust.
    pub(crate) fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A server certificate for a device at `ip`, named `name`.
    pub(crate) fn server(&self, name: &str, ip: IpAddr) -> Result<PemPair> {
        let mut params = CertificateParams::new(vec![ip.to_string()]).map_err(tls_error)?;
        params.distinguished_name = self::name(name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(&params)
    }

    /// A client certificate for mutual TLS.
    pub(crate) fn client(&self) -> Result<PemPair> {
        let mut params = CertificateParams::default();
        params.distinguished_name = name(CLIENT_NAME);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(&params)
    }

    fn sign(&self, params: &CertificateParams) -> Result<PemPair> {
        let key = KeyPair::generate().map_err(tls_error)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(tls_error)?;
        Ok(PemPair {
            cert: cert.pem(),
            key: key.serialize_pem(),
        })
    }
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}

fn tls_error(error: rcgen::Error) -> Error {
    Error::Certificate(error.to_string())
}
