//! A local certificate authority for HTTPS at the gateway, made in Rust (rcgen): the harness makes
//! one per process and a certificate for each scenario's gateway; `cargo xtask up` makes one once
//! and keeps it under `.local/tls/`. A client verifies the gateway against the authority's
//! certificate alone (see the HTTPS feature), so nothing is installed in the machine's trust
//! store.

use anyhow::Context;
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose};

/// The names a local gateway's certificate is valid for: how its users reach it on this machine.
pub const LOCAL_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// A certificate authority that signs server certificates (ECDSA P-256, rcgen's default key).
pub struct LocalCa {
    certificate_pem: String,
    key_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// Writes `text` to `path` (created or replaced) readable by its owner only: how every private
/// key here is kept.
pub fn write_private(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;

    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    std::io::Write::write_all(&mut file, text.as_bytes()).with_context(|| format!("writing {}", path.display()))
}

/// A server's certificate, signed by a [`LocalCa`], and its private key, both PEM.
#[derive(Debug, Clone)]
pub struct ServerCertificate {
    /// The server's certificate, then the authority's (what nginx's `ssl_certificate` sends).
    pub chain_pem: String,
    pub key_pem: String,
}

impl ServerCertificate {
    /// Writes the chain to `chain` and the key, owner-only, to `key`.
    pub fn write(&self, chain: &std::path::Path, key: &std::path::Path) -> anyhow::Result<()> {
        std::fs::write(chain, &self.chain_pem).with_context(|| format!("writing {}", chain.display()))?;
        write_private(key, &self.key_pem)
    }
}

impl LocalCa {
    /// A new authority named `name` (its subject's common name).
    pub fn generate(name: &str) -> anyhow::Result<Self> {
        let mut params = CertificateParams::new(Vec::<String>::new()).context("certificate parameters")?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.distinguished_name.push(DnType::OrganizationName, "ecommerce-rust (local development)");
        // It signs server certificates and nothing below them.
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().context("generating the authority's key")?;
        let certificate = params.self_signed(&key).context("signing the authority's certificate")?;
        let key_pem = key.serialize_pem();
        Ok(Self { certificate_pem: certificate.pem(), key_pem, issuer: Issuer::new(params, key) })
    }

    /// The authority's certificate: what a client trusts to verify the gateway.
    pub fn certificate_pem(&self) -> &str {
        &self.certificate_pem
    }

    /// The authority's private key (kept beside its certificate by `cargo xtask up`, mode 0600).
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// A server certificate for `names` (DNS names or IP addresses), for serving only.
    pub fn issue(&self, names: &[&str]) -> anyhow::Result<ServerCertificate> {
        let names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
        let mut params = CertificateParams::new(names.clone()).context("a server name is not a DNS name or an address")?;
        params.distinguished_name.push(DnType::CommonName, names.first().map_or("gateway", String::as_str));
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().context("generating the server's key")?;
        let certificate = params.signed_by(&key, &self.issuer).context("signing the server's certificate")?;
        Ok(ServerCertificate {
            chain_pem: format!("{}{}", certificate.pem(), self.certificate_pem),
            key_pem: key.serialize_pem(),
        })
    }
}
