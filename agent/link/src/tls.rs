//! rustls client configuration from PEM files, with the ring crypto provider.
//!
//! ring rather than aws-lc-rs: ring cross-builds for the MIPS and ARM musl routers the agent runs
//! on, is about a quarter of the size, and gets randomness from the getrandom syscall (aws-lc-rs
//! aborts without `/dev/urandom`). The server certificate chain and host name are always
//! verified with webpki against the given roots; this module has no way to turn that off.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

use crate::LinkError;

/// The CA bundle used for `mqtts://` when no `--ca` is given (Debian and OpenWrt's
/// `ca-certificates`/`ca-bundle` path).
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The crypto provider every link uses: ring.
pub fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads a whole file, naming it in the error.
pub(crate) fn read_file(what: &'static str, path: &Path) -> Result<Vec<u8>, LinkError> {
    fs::read(path).map_err(|source| LinkError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

/// Reads every `CERTIFICATE` block of a PEM file; at least one must be there.
pub fn load_certs(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, LinkError> {
    let bytes = read_file(what, path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| LinkError::BadPem {
            what,
            path: path.to_path_buf(),
            source: pem_error(e),
        })?;
    if certs.is_empty() {
        return Err(LinkError::NoCertificate {
            what,
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// Reads the first private key (PKCS#8, PKCS#1 or SEC1) of a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, LinkError> {
    let bytes = read_file("client key", path)?;
    match PrivateKeyDer::from_pem_slice(&bytes) {
        Ok(key) => Ok(key),
        Err(pem::Error::NoItemsFound) => Err(LinkError::NoKey {
            path: path.to_path_buf(),
        }),
        Err(e) => Err(LinkError::BadPem {
            what: "client key",
            path: path.to_path_buf(),
            source: pem_error(e),
        }),
    }
}

/// A PEM parser error as the `io::Error` that [`LinkError::BadPem`] carries, with the
/// markers and lines it quotes as text (the parser's own `Display` prints them as byte lists).
fn pem_error(e: pem::Error) -> io::Error {
    let text = match e {
        pem::Error::MissingSectionEnd { end_marker } => {
            let label = String::from_utf8_lossy(&end_marker);
            format!("section end \"-----END {label}-----\" missing")
        }
        pem::Error::IllegalSectionStart { line } => {
            format!("illegal section start {:?}", String::from_utf8_lossy(&line))
        }
        other => other.to_string(),
    };
    io::Error::new(io::ErrorKind::InvalidData, text)
}

/// Builds a root store from every certificate of a CA PEM file.
pub fn load_roots(path: &Path) -> Result<RootCertStore, LinkError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs("CA", path)? {
        roots.add(cert).map_err(|e| LinkError::BadCa {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    }
    Ok(roots)
}

/// A client configuration that verifies the server against the CAs in `ca` (or the system
/// bundle [`SYSTEM_CA_BUNDLE`] when `None`) and, when `client` is given as
/// `(certificate chain file, key file)`, authenticates with that certificate.
pub fn client_config(
    ca: Option<&Path>,
    client: Option<(&Path, &Path)>,
) -> Result<ClientConfig, LinkError> {
    let ca_path: PathBuf = match ca {
        Some(p) => p.to_path_buf(),
        None => {
            let p = PathBuf::from(SYSTEM_CA_BUNDLE);
            if !p.exists() {
                return Err(LinkError::NoCa { tried: p });
            }
            p
        }
    };
    let roots = load_roots(&ca_path)?;
    let builder = ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let config = match client {
        Some((cert, key)) => {
            let chain = load_certs("client certificate", cert)?;
            let key = load_key(key)?;
            builder.with_client_auth_cert(chain, key)?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(config)
}
