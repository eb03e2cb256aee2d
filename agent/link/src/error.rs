//! Errors of link set-up. Each names the file, flag or field at fault.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Why a link could not be set up.
#[derive(Debug)]
#[non_exhaustive]
pub enum LinkError {
    /// The broker URL could not be parsed (`url` is the text given, `reason` what is wrong).
    BadUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A file (CA, certificate, key, password) could not be read: missing, unreadable, ...
    Read {
        /// Which file: "CA", "client certificate", "client key", "password file".
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// A PEM file could not be parsed (broken base64, unterminated block, ...).
    BadPem {
        /// Which file.
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// The parser's error.
        source: io::Error,
    },
    /// A CA or certificate file holds no `CERTIFICATE` block.
    NoCertificate {
        /// Which file.
        what: &'static str,
        /// Its path.
        path: PathBuf,
    },
    /// A CA certificate was rejected as a trust anchor.
    BadCa {
        /// The CA file.
        path: PathBuf,
        /// Why rustls refused it.
        reason: String,
    },
    /// The key file holds no private key (PKCS#8, PKCS#1 or SEC1 PEM block).
    NoKey {
        /// The key file.
        path: PathBuf,
    },
    /// A client certificate was given without its key, or a key without its certificate.
    CertKeyPair {
        /// The file that was given.
        given: PathBuf,
        /// The flag that is missing (`--key` or `--cert`).
        missing: &'static str,
    },
    /// `mqtts://` was asked for without `--ca` and the system CA bundle is missing too.
    NoCa {
        /// The system bundle path that was tried.
        tried: PathBuf,
    },
    /// The password file's first line is empty.
    EmptyPassword {
        /// The password file.
        path: PathBuf,
    },
    /// A password file was given without a username.
    PasswordWithoutUsername,
    /// The client id is empty or longer than 64 characters.
    BadClientId {
        /// The client id as given.
        client_id: String,
    },
    /// A topic segment (gateway id, node name, prefix) is empty or holds `+`, `#`, `/` or NUL.
    BadTopicSegment {
        /// What the segment is ("gateway id", "node name", "prefix").
        what: &'static str,
        /// The text given.
        value: String,
    },
    /// rustls refused the configuration (for example a key that does not match the certificate).
    Tls(rustls::Error),
}

impl fmt::Display for LinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkError::BadUrl { url, reason } => write!(f, "broker URL {url:?}: {reason}"),
            LinkError::Read { what, path, source } => {
                write!(f, "{what} {}: {source}", path.display())
            }
            LinkError::BadPem { what, path, source } => {
                write!(f, "{what} {}: not valid PEM: {source}", path.display())
            }
            LinkError::NoCertificate { what, path } => write!(
                f,
                "{what} {}: no CERTIFICATE block in the file",
                path.display()
            ),
            LinkError::BadCa { path, reason } => {
                write!(f, "CA {}: certificate refused: {reason}", path.display())
            }
            LinkError::NoKey { path } => write!(
                f,
                "client key {}: no private key (PKCS#8, PKCS#1 or SEC1 PEM block) in the file",
                path.display()
            ),
            LinkError::CertKeyPair { given, missing } => write!(
                f,
                "{} given without {missing}: a client certificate needs both --cert and --key",
                given.display()
            ),
            LinkError::NoCa { tried } => write!(
                f,
                "mqtts:// needs a CA: give --ca FILE (the system bundle {} does not exist)",
                tried.display()
            ),
            LinkError::EmptyPassword { path } => {
                write!(f, "password file {}: empty", path.display())
            }
            LinkError::PasswordWithoutUsername => {
                write!(f, "--password-file given without --username")
            }
            LinkError::BadClientId { client_id } => {
                write!(f, "client id {client_id:?}: must be 1..=64 characters")
            }
            LinkError::BadTopicSegment { what, value } => write!(
                f,
                "{what} {value:?}: must be non-empty and hold no '+', '#', '/' or NUL"
            ),
            LinkError::Tls(e) => write!(f, "TLS set-up: {e}"),
        }
    }
}

impl std::error::Error for LinkError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LinkError::Read { source, .. } | LinkError::BadPem { source, .. } => Some(source),
            LinkError::Tls(e) => Some(e),
            _ => None,
        }
    }
}

impl From<rustls::Error> for LinkError {
    fn from(e: rustls::Error) -> Self {
        LinkError::Tls(e)
    }
}
