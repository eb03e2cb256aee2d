//! `LinkOptions::mqtt_options` reads every TLS and password file at once and names the file
//! and the problem: missing file, bad PEM, no certificate, no key, cert without key.

use std::fs;
use std::path::Path;

use rcgen::{CertificateParams, KeyPair};
use sdwan_link::{BrokerUrl, LinkError, LinkOptions};

struct Files {
    _dir: tempfile::TempDir,
    ca: std::path::PathBuf,
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
    dir: std::path::PathBuf,
}

fn files() -> Files {
    let dir = tempfile::tempdir().unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let p = dir.path().to_path_buf();
    fs::write(p.join("ca.pem"), cert.pem()).unwrap();
    fs::write(p.join("cert.pem"), cert.pem()).unwrap();
    fs::write(p.join("key.pem"), key.serialize_pem()).unwrap();
    Files {
        ca: p.join("ca.pem"),
        cert: p.join("cert.pem"),
        key: p.join("key.pem"),
        dir: p,
        _dir: dir,
    }
}

fn options(f: &Files) -> LinkOptions {
    let mut o = LinkOptions::new(BrokerUrl::parse("mqtts://localhost:8883").unwrap(), "gw-a");
    o.ca = Some(f.ca.clone());
    o.cert = Some(f.cert.clone());
    o.key = Some(f.key.clone());
    o
}

fn err(o: &LinkOptions) -> (LinkError, String) {
    let e = o.mqtt_options().unwrap_err();
    let text = e.to_string();
    (e, text)
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    fs::write(&p, text).unwrap();
    p
}

#[test]
fn good_files_build_options() {
    let f = files();
    let o = options(&f).mqtt_options().unwrap();
    assert_eq!(o.client_id(), "gw-a");
    // Clean sessions: the retained zone comes with every subscription, on any broker (a
    // resumed session gets no retained messages from rumqttd, issue 12 item 9).
    assert!(o.clean_session());
}

#[test]
fn missing_files_are_named() {
    let f = files();
    for which in ["CA", "client certificate", "client key", "password file"] {
        let mut o = options(&f);
        let missing = f.dir.join("missing.pem");
        match which {
            "CA" => o.ca = Some(missing.clone()),
            "client certificate" => o.cert = Some(missing.clone()),
            "client key" => o.key = Some(missing.clone()),
            _ => {
                o.username = Some("u".into());
                o.password_file = Some(missing.clone());
            }
        }
        let (e, text) = err(&o);
        assert!(matches!(e, LinkError::Read { .. }), "{which}: {e:?}");
        assert!(
            text.starts_with(which) && text.contains("missing.pem"),
            "{text}"
        );
    }
}

#[test]
fn pem_problems_are_named() {
    let f = files();
    let not_pem = write(&f.dir, "notpem.pem", "hello, this is not a certificate\n");
    let broken = write(
        &f.dir,
        "broken.pem",
        "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
    );
    let mut o = options(&f);
    o.ca = Some(not_pem.clone());
    let (e, text) = err(&o);
    assert!(matches!(e, LinkError::NoCertificate { .. }), "{e:?}");
    assert!(
        text.contains("notpem.pem") && text.contains("no CERTIFICATE"),
        "{text}"
    );

    let mut o = options(&f);
    o.cert = Some(broken);
    let (e, text) = err(&o);
    assert!(matches!(e, LinkError::BadPem { .. }), "{e:?}");
    assert!(
        text.contains("broken.pem") && text.contains("not valid PEM"),
        "{text}"
    );

    // An unterminated block, in a key file: the message quotes the missing end line as text.
    let cut = write(&f.dir, "cut.pem", "-----BEGIN PRIVATE KEY-----\nAAAA\n");
    let mut o = options(&f);
    o.key = Some(cut);
    let (e, text) = err(&o);
    assert!(matches!(e, LinkError::BadPem { .. }), "{e:?}");
    assert!(
        text.contains("client key")
            && text.contains("cut.pem")
            && text.contains("\"-----END PRIVATE KEY-----\" missing"),
        "{text}"
    );

    // A certificate file given as the key: no key in it.
    let mut o = options(&f);
    o.key = Some(f.cert.clone());
    let (e, text) = err(&o);
    assert!(matches!(e, LinkError::NoKey { .. }), "{e:?}");
    assert!(
        text.contains("cert.pem") && text.contains("no private key"),
        "{text}"
    );
}

#[test]
fn cert_key_pairs_and_credentials_are_checked() {
    let f = files();
    let mut o = options(&f);
    o.key = None;
    assert!(err(&o).1.contains("--key"));
    let mut o = options(&f);
    o.cert = None;
    assert!(err(&o).1.contains("--cert"));

    // A key that does not belong to the certificate.
    let other = KeyPair::generate().unwrap();
    let mut o = options(&f);
    o.key = Some(write(&f.dir, "other.key", &other.serialize_pem()));
    assert!(matches!(err(&o).0, LinkError::Tls(_)));

    let mut o = options(&f);
    o.password_file = Some(write(&f.dir, "pw", "secret\r\nsecond line\n"));
    assert!(matches!(err(&o).0, LinkError::PasswordWithoutUsername));
    o.username = Some("gw-a".into());
    let mo = o.mqtt_options().unwrap();
    let login = mo.credentials().unwrap();
    assert_eq!(
        (login.username.as_str(), login.password.as_str()),
        ("gw-a", "secret")
    );
    o.password_file = Some(write(&f.dir, "empty", "\n"));
    assert!(matches!(err(&o).0, LinkError::EmptyPassword { .. }));

    let mut o = options(&f);
    o.client_id = String::new();
    assert!(matches!(err(&o).0, LinkError::BadClientId { .. }));
}

#[test]
fn plain_urls_need_no_tls_files() {
    let mut o = LinkOptions::new(BrokerUrl::parse("mqtt://127.0.0.1").unwrap(), "gw-a");
    o.ca = Some("/nonexistent".into());
    assert!(o.tls_config().unwrap().is_none());
    assert!(o.mqtt_options().is_ok());
}
