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
const LOCAL: &str = "local.k8s.internal";
const BY_NODE: &str = "worker2.k8s.internal";

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
        suffix: "k8s.internal",
        local_label: "local",
        settings,
        local,
        elsewhere,
    };
    let rendered = render_conf(&view);
    serde_json::json!({
        "version": 1, "serial": serial, "node": NODE, "suffix": "k8s.internal",
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
    let settings = rig.settings(port);
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
            .contains("path /a/b?c=d host local.k8s.internal xff 127.0.0.1 proto http"),
        "prefix stripped, Host and X-Forwarded-* passed: {r:?}"
    );
    for (host, path, service) in [
        (LOCAL, "/default/hello-world/", "hello-world"),
        (BY_NODE, "/hello-world/", "hello-world"),
        (BY_NODE, "/shop/web/x", "web"),
        ("anything.k8s.internal", "/shop/web/", "web"),
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
        "http://local.k8s.internal:PORT/hello-world/",
        "http://local.k8s.internal:PORT/default/hello-world/",
        "http://local.k8s.internal:PORT/shop/web/",
        "http://worker3.k8s.internal:PORT/cart/",
        "http://worker3.k8s.internal:PORT/shop/cart/",
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

/// SIGKILL to process group `.0` on drop (also when the test fails before it is dropped).
struct KillGroupOnDrop(i32);

impl Drop for KillGroupOnDrop {
    fn drop(&mut self) {
        // SAFETY: kill(2) with plain integers; `.0` is the pid, read from the file it wrote,
        // of a check command this test made the agent start in a process group of its own.
        unsafe {
            libc::kill(-self.0, libc::SIGKILL);
        }
    }
}

/// `sh -c CMD` succeeds.
fn shell_ok(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", cmd])
        .output()
        .unwrap()
        .status
        .success()
}

#[test]
fn worker_killed_during_the_check_restarts_with_the_known_good_files_live() {
    // Issue 12, item 4: `kill -9` while `--check-cmd` ran left the unchecked files live; at
    // restart the check failed and "previous files restored" wrote the same bad files back,
    // so `nginx -t` failed on disk.
    let rig = ProxyRig::start("proxy-crash");
    let (master, proxy_dir) = (&rig.master, &rig.proxy_dir);
    let port = free_port();
    let settings = rig.settings(port);
    let hello = Backend::start("hello-world");
    let services = vec![svc("default", "hello-world", true, hello.port)];
    // nginx -t, made slow while the file `slow` exists: it then records its pid (its process
    // group: the agent starts each command in a group of its own) and sleeps.
    let slow = rig.tmp.join("slow");
    let check_pid = rig.tmp.join("check.pid");
    let check = format!(
        "if [ -e {slow} ]; then echo $$ > {pid}; sleep 120; fi; {nginx_t}",
        slow = slow.display(),
        pid = check_pid.display(),
        nginx_t = rig.nginx.check_cmd()
    );
    let mut agent = rig.start_agent_with(NODE, &check, None);
    master.publish_proxy(NODE, payload(1, &settings, &services, &[], None));
    let st = master.wait_node_status(NODE, "serial 1", |s| s.serial == Some(1));
    assert_eq!(st.error, None);
    wait_get(port, LOCAL, "/hello-world/", "serial 1 served", |r| {
        serves(r, "hello-world")
    });
    let good_conf = std::fs::read(proxy_dir.join("sdwan.conf")).unwrap();
    let good_help = std::fs::read(proxy_dir.join("help.html")).unwrap();

    // Serial 2 is broken; the agent is killed while its check runs.
    std::fs::write(&slow, "").unwrap();
    let broken = "server {\n    listen 1;\n    no_such_directive on;\n}\n";
    master.publish_proxy(NODE, payload(2, &settings, &services, &[], Some(broken)));
    let pid: i32 = wait_for(SOON, "the check of serial 2 running", || {
        std::fs::read_to_string(&check_pid)
            .ok()?
            .trim()
            .parse()
            .ok()
    });
    assert!(
        !shell_ok(&rig.nginx.check_cmd()),
        "serial 2's unchecked files are live while it is checked"
    );
    let check_group = KillGroupOnDrop(pid);
    agent.kill(); // SIGKILL, to this agent's pid only
    drop(check_group); // the sleeping check outlived the agent
    std::fs::remove_file(&slow).unwrap();

    // Restarted: the retained serial 2 is tried again and refused; what is live, and what
    // nginx -t checks on disk, is serial 1.
    let mut agent = rig.start_agent_with(NODE, &check, None);
    let st = master.wait_node_status(NODE, "serial 2 refused after the restart", |s| {
        s.error
            .as_deref()
            .is_some_and(|e| e.contains("serial 2 not applied"))
    });
    let err = st.error.unwrap();
    assert_eq!(st.serial, Some(1), "{err}");
    assert!(
        err.contains("no_such_directive") && err.contains("previous files restored"),
        "{err}"
    );
    assert!(
        shell_ok(&rig.nginx.check_cmd()),
        "nginx -t fails on disk after the restart"
    );
    assert_eq!(
        std::fs::read(proxy_dir.join("sdwan.conf")).unwrap(),
        good_conf
    );
    assert_eq!(
        std::fs::read(proxy_dir.join("help.html")).unwrap(),
        good_help
    );
    let known_good = proxy_dir.join(".sdwan-known-good");
    assert_eq!(
        std::fs::read(known_good.join("sdwan.conf")).unwrap(),
        good_conf
    );
    let log = agent.wait_stderr(SOON, "restored the last known-good files");
    assert!(log.contains("fail the check"), "{log}");
    wait_get(port, LOCAL, "/hello-world/", "still served", |r| {
        serves(r, "hello-world")
    });
}

#[test]
fn a_write_that_fails_midway_leaves_no_temp_file_and_the_good_files_live() {
    // Issue 12, item 6: a write that failed (ENOSPC) left its partial `.tmp` file behind.
    // Here the agent may write files of at most 64 KiB (RLIMIT_FSIZE): a help page of 200 kB
    // fails midway, with a real EFBIG from the kernel.
    let rig = ProxyRig::start("proxy-efbig");
    let (master, proxy_dir) = (&rig.master, &rig.proxy_dir);
    let settings = rig.settings(free_port());
    let hello = Backend::start("hello-world");
    let _agent = rig.start_agent_with(NODE, &rig.nginx.check_cmd(), Some(64 * 1024));
    let services = vec![svc("default", "hello-world", true, hello.port)];
    let too_big = |serial: u32| {
        let mut p: serde_json::Value =
            serde_json::from_slice(&payload(serial, &settings, &services, &[], None)).unwrap();
        p["files"]["help.html"] = format!("<!DOCTYPE html>{}", "x".repeat(200_000)).into();
        p.to_string()
    };
    let temp_files = || {
        let mut left = Vec::new();
        for dir in [proxy_dir.clone(), proxy_dir.join(".sdwan-known-good")] {
            for e in std::fs::read_dir(&dir).into_iter().flatten() {
                let name = e.unwrap().file_name().to_string_lossy().into_owned();
                if name.ends_with(".tmp") {
                    left.push(dir.join(name));
                }
            }
        }
        left
    };
    // (payload, serial in use after it, error expected)
    let steps = [
        (too_big(1), None, true),
        (
            String::from_utf8(payload(2, &settings, &services, &[], None)).unwrap(),
            Some(2),
            false,
        ),
        (too_big(3), Some(2), true),
    ];
    let mut good: Option<(Vec<u8>, Vec<u8>)> = None;
    for (i, (p, serial, fails)) in steps.into_iter().enumerate() {
        master.clear_statuses();
        master.publish_proxy(NODE, p);
        let st = master.wait_node_status(NODE, &format!("step {i}"), |s| {
            s.serial == serial && s.error.is_some() == fails
        });
        if let Some(err) = st.error {
            assert!(
                err.contains("cannot write")
                    && err.contains("help.html")
                    && err.contains("too large"),
                "step {i}: {err}"
            );
        }
        assert_eq!(temp_files(), Vec::<std::path::PathBuf>::new(), "step {i}");
        let live = |n: &str| std::fs::read(proxy_dir.join(n)).ok();
        match &good {
            // Nothing was ever applied: nothing is live.
            None if fails => assert!(live("sdwan.conf").is_none() && live("help.html").is_none()),
            None => good = Some((live("sdwan.conf").unwrap(), live("help.html").unwrap())),
            Some((conf, help)) => {
                assert_eq!(live("sdwan.conf").as_ref(), Some(conf), "step {i}");
                assert_eq!(live("help.html").as_ref(), Some(help), "step {i}");
            }
        }
    }
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
    const VOID: [&str; 5] = ["meta", "link", "br", "img", "input"];

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
