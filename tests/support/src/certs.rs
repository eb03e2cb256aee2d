//! Test PKI made with rcgen: a CA, server certificates for loopback, client certificates whose
//! CN is the MQTT identity (gateway id, `master`), each written as PEM files into a directory.
//!
//! ```no_run
//! let dir = sdwan_testsupport::TempDir::new("pki");
//! let ca = sdwan_testsupport::certs::Ca::new(dir.path(), "test");
//! let server = ca.server("broker");           // SAN 127.0.0.1, ::1, localhost
//! let gw = ca.client("gw-a");                 // CN=gw-a
//! let foreign = sdwan_testsupport::certs::Ca::new(dir.path(), "foreign");
//! # let _ = (server, gw, foreign);
//! ```

use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};

/// A certificate and its key as PEM files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// Certificate (PEM).
    pub cert: PathBuf,
    /// Private key (PKCS#8 PEM).
    pub key: PathBuf,
}

/// A certificate authority whose certificate is written to [`Ca::cert`].
#[derive(Debug)]
pub struct Ca {
    dir: PathBuf,
    name: String,
    issuer: CertifiedIssuer<'static, KeyPair>,
    cert: PathBuf,
}

impl Ca {
    /// A new self-signed CA named `name`, writing `<dir>/<name>-ca.pem`.
    pub fn new(dir: &Path, name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name = dn(&format!("{name} test CA"));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().unwrap();
        let issuer = CertifiedIssuer::self_signed(params, key).unwrap();
        let cert = dir.join(format!("{name}-ca.pem"));
        fs::write(&cert, issuer.pem()).unwrap();
        Ca {
            dir: dir.to_path_buf(),
            name: name.to_string(),
            issuer,
            cert,
        }
    }

    /// The CA certificate file.
    pub fn cert(&self) -> &Path {
        &self.cert
    }

    /// A server certificate for `127.0.0.1`, `::1` and `localhost`, CN = `cn`.
    pub fn server(&self, cn: &str) -> CertFiles {
        self.server_for(cn, &["127.0.0.1", "::1", "localhost"])
    }

    /// A server certificate with the given subject alternative names (IPs or DNS names).
    pub fn server_for(&self, cn: &str, sans: &[&str]) -> CertFiles {
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        self.issue(cn, sans, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate with CN = `cn` (the MQTT username under
    /// `use_identity_as_username`).
    pub fn client(&self, cn: &str) -> CertFiles {
        self.issue(cn, Vec::new(), ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn issue(&self, cn: &str, sans: Vec<String>, usage: ExtendedKeyUsagePurpose) -> CertFiles {
        let mut params = CertificateParams::new(sans).unwrap();
        params.distinguished_name = dn(cn);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let base = format!("{}-{}", self.name, cn);
        let files = CertFiles {
            cert: self.dir.join(format!("{base}.crt")),
            key: self.dir.join(format!("{base}.key")),
        };
        fs::write(&files.cert, cert.pem()).unwrap();
        fs::write(&files.key, key.serialize_pem()).unwrap();
        files
    }
}

fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}
