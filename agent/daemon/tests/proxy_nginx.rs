//! Issue 5 end to end: the agent in worker mode, fed over MQTT (mosquitto, TLS, the design's
//! ACL) with proxy payloads rendered by `sdwan-plan`, drives a real nginx (Debian) whose
//! upstreams are tiny HTTP backends on loopback standing in for NodePorts. Requests go through
//! nginx with the Host names a branch host would use.

mod mqtt_common;

use std::process::Command;

use mqtt_common::*;
use sdwan_link::State;
use sdwan_plan::nginx::{render_conf, render_help, ProxySettings, ProxyView};
use sdwan_plan::{Protocol, ProxyPort, ProxyService};
use sdwan_testsupport::nginx::{http_get, http_get_with, Backend, Response};
use sdwan_testsupport::{free_port, wait_for, TempDir};

const NODE: &str = "worker2";
const LOCAL: &str = "local.kubernetes.services";
const BY_NODE: &str = "worker2.kubernetes.services";

fn svc(ns: &str, name: &str, unique: bool, node_port: u16) -> ProxyService {
    ProxyService {
        namespace: ns.into(),
        name: name.into(),
        unique,
        ports: vec![ProxyPort {
            name: Some("http".into()),
            protocol: Protocol::Tcp,
            port: 80,
            node_port,
        }],
    }
}

/// A proxy payload as the master renders it (`ProxyContent::render` calls the same
/// functions), with `files` replaced when `conf` is given.
fn payload(
    serial: u32,
    settings: &ProxySettings,
    local: &[ProxyService],
    elsewhere: &[(ProxyService, Vec<String>)],
    conf: Option<&str>,
) -> Vec<u8> {
    let view = ProxyView {
        node: NODE,
        suffix: "kubernetes.services",
        local_label: "local",
        settings,
        local,
        elsewhere,
    };
    let rendered = render_conf(&view);
    serde_json::json!({
        "version": 1, "serial": serial, "node": NODE, "suffix": "kubernetes.services",
        "local_label": "local", "services": [], "elsewhere": [], "dir": settings.dir,
        "files": {"sdwan.conf": conf.unwrap_or(&rendered), "help.html": render_help(&view)}
    })
    .to_string()
    .into_bytes()
}

/// Polls until `GET path` with `host` satisfies `pred`.
#[track_caller]
fn wait_get(
    port: u16,
    host: &str,
    path: &str,
    what: &str,
    pred: impl Fn(&Response) -> bool,
) -> Response {
    wait_for(SOON, &format!("GET http://{host}{path}: {what}"), || {
        http_get(port, host, path).filter(|r| pred(r))
    })
}

fn serves(r: &Response, service: &str) -> bool {
    r.status == 200 && r.body.starts_with(&format!("service {service} "))
}

#[test]
fn worker_agent_drives_nginx_through_mqtt() {
    let rig = ProxyRig::start("proxy-nginx");
    let (master, proxy_dir) = (&rig.master, &rig.proxy_dir);
    let port = free_port();
    let settings = ProxySettings {
        listen_port: port,
        upstream_host: "127.0.0.1".into(),
        dir: proxy_dir.display().to_string(),
    };
    let (hello, web, extra) = (
        Backend::start("hello-world"),
        Backend::start("web"),
        Backend::start("extra"),
    );
    let elsewhere = vec![(
        svc("shop", "cart", true, 31000),
        vec!["worker3".to_string()],
    )];
    let agent = rig.start_agent(NODE);

    // Serial 1: hello-world (unique) and shop/web (its name is not unique).
    let one = vec![
        svc("default", "hello-world", true, hello.port),
        svc("shop", "web", false, web.port),
    ];
    master.publish_proxy(NODE, payload(1, &settings, &one, &elsewhere, None));
    let st = master.wait_node_status(NODE, "online with serial 1", |s| s.serial == Some(1));
    assert_eq!((st.state, st.error), (State::Online, None));
    let r = wait_get(port, LOCAL, "/hello-world/a/b?c=d", "hello-world", |r| {
        serves(r, "hello-world")
    });
    assert!(
        r.body
            .contains("path /a/b?c=d host local.kubernetes.services xff 127.0.0.1 proto http"),
        "prefix stripped, Host and X-Forwarded-* passed: {r:?}"
    );
    for (host, path, service) in [
        (LOCAL, "/default/hello-world/", "hello-world"),
        (BY_NODE, "/hello-world/", "hello-world"),
        (BY_NODE, "/shop/web/x", "web"),
        ("anything.kubernetes.services", "/shop/web/", "web"),
    ] {
        let r = http_get(port, host, path).unwrap();
        assert!(serves(&r, service), "{host}{path}: {r:?}");
    }
    // Websocket upgrade headers reach the backend (the backend closes after its answer).
    let r = http_get_with(
        port,
        LOCAL,
        "/hello-world/ws",
        "Upgrade: websocket\r\nConnection: Upgrade, close\r\n",
    )
    .unwrap();
    assert!(
        serves(&r, "hello-world") && r.body.ends_with("upgrade websocket connection upgrade"),
        "{r:?}"
    );
    let r = http_get(port, LOCAL, "/hello-world/").unwrap();
    assert!(r.body.ends_with("upgrade  connection close"), "{r:?}");
    let r = http_get(port, LOCAL, "/web/").unwrap();
    assert_eq!(
        r.status, 404,
        "a name that is not unique has no short path: {r:?}"
    );
    assert!(r.body.contains("/help/"), "the 404 points to /help/: {r:?}");

    // The help page, served by nginx from the proxy directory.
    let help = http_get(port, BY_NODE, "/help/").unwrap();
    assert_eq!(help.status, 200);
    let links = html::check(&help.body).unwrap_or_else(|e| panic!("help page: {e}\n{}", help.body));
    for want in [
        "http://local.kubernetes.services:PORT/hello-world/",
        "http://local.kubernetes.services:PORT/default/hello-world/",
        "http://local.kubernetes.services:PORT/shop/web/",
        "http://worker3.kubernetes.services:PORT/cart/",
        "http://worker3.kubernetes.services:PORT/shop/cart/",
    ] {
        // Links carry the listen port (issue 12).
        let want = want.replace("PORT", &port.to_string());
        assert!(links.contains(&want), "help page lacks {want}: {links:?}");
    }
    assert!(!links
        .iter()
        .any(|l| l.ends_with("/web/") && !l.contains("/shop/")));

    // Serial 2: extra added, web removed.
    let two = vec![
        svc("default", "hello-world", true, hello.port),
        svc("default", "extra", true, extra.port),
    ];
    master.publish_proxy(NODE, payload(2, &settings, &two, &elsewhere, None));
    wait_get(port, LOCAL, "/extra/", "the added service", |r| {
        serves(r, "extra")
    });
    wait_get(port, LOCAL, "/shop/web/", "the removed service gone", |r| {
        r.status == 404
    });
    let st = master.wait_node_status(NODE, "serial 2", |s| s.serial == Some(2));
    assert_eq!(st.error, None);
    let conf_two = std::fs::read_to_string(proxy_dir.join("sdwan.conf")).unwrap();

    // Serial 3: a configuration nginx -t refuses. The old one keeps serving.
    let broken = "server {\n    listen 1;\n    no_such_directive on;\n}\n";
    master.publish_proxy(NODE, payload(3, &settings, &two, &elsewhere, Some(broken)));
    let st = master.wait_node_status(NODE, "error for serial 3", |s| s.error.is_some());
    let err = st.error.unwrap();
    assert_eq!(st.serial, Some(2), "{err}");
    assert!(
        err.contains("serial 3 not applied: check failed")
            && err.contains("no_such_directive")
            && err.contains("previous files restored"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(proxy_dir.join("sdwan.conf")).unwrap(),
        conf_two
    );
    // Old workers of the last reload may still take a connection for a moment: poll.
    wait_get(
        port,
        LOCAL,
        "/extra/",
        "still served after the failed check",
        |r| serves(r, "extra"),
    );

    // Serial 4: a service name crafted to break out of the location is left out at render;
    // the rest is applied.
    let mut four = two.clone();
    four.push(svc("default", "x/ {}\n} server { listen 1", true, web.port));
    master.publish_proxy(NODE, payload(4, &settings, &four, &elsewhere, None));
    let st = master.wait_node_status(NODE, "serial 4", |s| s.serial == Some(4));
    assert_eq!(st.error, None);
    let conf = std::fs::read_to_string(proxy_dir.join("sdwan.conf")).unwrap();
    assert!(
        !conf.contains("listen 1") && conf.contains("# 1 service(s) left out"),
        "{conf}"
    );
    // `nginx -s reload` returns before the new workers take over: poll, with a deadline.
    wait_get(
        port,
        LOCAL,
        "/extra/",
        "still served after the reload",
        |r| serves(r, "extra"),
    );
    let help = http_get(port, LOCAL, "/help/").unwrap();
    html::check(&help.body).unwrap_or_else(|e| panic!("help page: {e}\n{}", help.body));

    // A stale serial is refused; the files stay.
    master.publish_proxy(NODE, payload(1, &settings, &one, &elsewhere, None));
    let st = master.wait_node_status(NODE, "stale error", |s| {
        s.error.as_deref().is_some_and(|e| e.contains("stale"))
    });
    assert_eq!(st.serial, Some(4));
    assert!(http_get(port, LOCAL, "/shop/web/").unwrap().status == 404);
    drop(agent);
}

#[test]
fn payload_for_another_directory_is_refused_with_a_clear_error() {
    let rig = ProxyRig::start("proxy-dir");
    let (master, proxy_dir) = (&rig.master, &rig.proxy_dir);
    let _agent = rig.start_agent(NODE);
    let settings = ProxySettings::default(); // dir /etc/nginx/sdwan
    master.publish_proxy(NODE, payload(1, &settings, &[], &[], None));
    let st = master.wait_node_status(NODE, "dir error", |s| s.error.is_some());
    let err = st.error.unwrap();
    assert!(
        err.contains("rendered for directory \"/etc/nginx/sdwan\""),
        "{err}"
    );
    assert_eq!(st.serial, None);
    assert!(!proxy_dir.join("sdwan.conf").exists());
}

/// A strict well-formedness check of the help page (the subset of HTML5 it uses: a doctype,
/// quoted attributes, every non-void element closed in order, only the five escapes), and the
/// `href`s it holds.
mod html {
    const VOID: [&str; 4] = ["meta", "link", "br", "img"];

    pub fn check(doc: &str) -> Result<Vec<String>, String> {
        let rest = doc
            .strip_prefix("<!DOCTYPE html>\n")
            .ok_or("no <!DOCTYPE html> first")?;
        let mut stack: Vec<String> = Vec::new();
        let mut hrefs = Vec::new();
        let mut i = 0;
        let b = rest.as_bytes();
        let mut in_style = false;
        while i < b.len() {
            match b[i] {
                b'<' => {
                    let end = rest[i..].find('>').ok_or("unclosed tag")? + i;
                    let tag = &rest[i + 1..end];
                    if in_style && tag != "/style" {
                        i += 1;
                        continue;
                    }
                    if let Some(name) = tag.strip_prefix('/') {
                        let open = stack
                            .pop()
                            .ok_or(format!("</{name}> without an opening tag"))?;
                        if open != name {
                            return Err(format!("</{name}> closes <{open}>"));
                        }
                        in_style = false;
                    } else {
                        let (name, attrs) = tag.split_once(' ').unwrap_or((tag, ""));
                        if name.is_empty() || !name.bytes().all(|c| c.is_ascii_alphanumeric()) {
                            return Err(format!("bad tag <{tag}>"));
                        }
                        for (k, v) in attributes(attrs)? {
                            if k == "href" {
                                hrefs.push(unescape(&v)?);
                            }
                        }
                        if !VOID.contains(&name) {
                            stack.push(name.to_string());
                        }
                        in_style = name == "style";
                    }
                    i = end + 1;
                }
                b'&' if !in_style => {
                    let end = rest[i..].find(';').ok_or("& without ;")? + i;
                    unescape(&rest[i..=end])?;
                    i = end + 1;
                }
                b'>' if !in_style => return Err(format!("stray > at {i}")),
                _ => i += 1,
            }
        }
        if !stack.is_empty() {
            return Err(format!("unclosed elements {stack:?}"));
        }
        Ok(hrefs)
    }

    fn attributes(mut s: &str) -> Result<Vec<(String, String)>, String> {
        let mut out = Vec::new();
        loop {
            s = s.trim_start();
            if s.is_empty() {
                return Ok(out);
            }
            let (k, rest) = s
                .split_once("=\"")
                .ok_or(format!("unquoted attribute in {s:?}"))?;
            let (v, rest) = rest.split_once('"').ok_or("unterminated attribute")?;
            if v.contains('<') {
                return Err(format!("< in attribute {k}"));
            }
            out.push((k.to_string(), v.to_string()));
            s = rest;
        }
    }

    fn unescape(s: &str) -> Result<String, String> {
        let mut out = String::new();
        let mut rest = s;
        while let Some(p) = rest.find('&') {
            out.push_str(&rest[..p]);
            let end = rest[p..].find(';').ok_or("& without ;")? + p;
            out.push(match &rest[p..=end] {
                "&amp;" => '&',
                "&lt;" => '<',
                "&gt;" => '>',
                "&quot;" => '"',
                "&#39;" => '\'',
                e => return Err(format!("unknown entity {e}")),
            });
            rest = &rest[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

#[test]
fn html_checker_catches_what_it_must() {
    assert!(html::check("<!DOCTYPE html>\n<p><a href=\"x\">a</a></p>").is_ok());
    for bad in [
        "<p>",
        "<!DOCTYPE html>\n<p><b></p></b>",
        "<!DOCTYPE html>\n<a href=x>a</a>",
        "<!DOCTYPE html>\n<p>&bogus;</p>",
        "<!DOCTYPE html>\n<p>",
    ] {
        assert!(html::check(bad).is_err(), "{bad}");
    }
}

#[test]
fn worker_mode_refuses_settings_that_do_not_fit() {
    let tmp = TempDir::new("proxy-flags");
    let dir = tmp.path().to_str().unwrap();
    let missing = tmp.join("missing");
    let missing = missing.to_str().unwrap();
    let broker = ["--broker", "mqtts://127.0.0.1:1"];
    // (arguments, what the error says)
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--proxy-dir", dir],
            "worker mode: --node-id is required",
        ),
        (
            vec!["--node-id", NODE],
            "worker mode: --proxy-dir is required",
        ),
        (
            vec!["--node-id", NODE, "--proxy-dir", dir],
            "worker mode: --broker is required",
        ),
        (
            [
                &broker[..],
                &[
                    "--node-id",
                    NODE,
                    "--proxy-dir",
                    dir,
                    "--listen",
                    "127.0.0.1:5353",
                ],
            ]
            .concat(),
            "worker mode: serves no DNS",
        ),
        (
            [
                &broker[..],
                &["--node-id", NODE, "--proxy-dir", dir, "--gateway-id", "gw"],
            ]
            .concat(),
            "worker mode: serves no DNS",
        ),
        (
            [&broker[..], &["--node-id", NODE, "--proxy-dir", missing]].concat(),
            "is not a directory",
        ),
        (
            [&broker[..], &["--node-id", "a/b", "--proxy-dir", dir]].concat(),
            "--node-id \"a/b\": must be 1..=64 characters",
        ),
    ];
    for (args, want) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_sdwan-agent"))
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: got {err:?}, want {want:?}");
    }
}
