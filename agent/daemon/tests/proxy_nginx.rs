//! Issue 5 and issue 11 item 6 end to end: the agent in worker mode, fed over MQTT (mosquitto,
//! TLS, the design's ACL) with proxy payload v2 encoded by the contract's encoder (as the
//! master does), renders and drives a real nginx (Debian) whose upstreams are tiny HTTP
//! backends on loopback standing in for NodePorts. Requests go through nginx with the Host
//! names a branch host would use.

mod mqtt_common;

use std::path::Path;
use std::process::Command;

use mqtt_common::*;
use sdwan_contract::v2::proxy::{
    Protocol, ProxyDelta, ProxyHeader, ProxyPort, ProxyService, ProxySnapshot,
};
use sdwan_contract::v2::{Str, Version};
use sdwan_link::{State, Status};
use sdwan_testsupport::nginx::{http_get, http_get_with, Backend, Response};
use sdwan_testsupport::{free_port, wait_for, TempDir};

const NODE: &str = "worker2";
const LOCAL: &str = "local.k8s.internal";
const BY_NODE: &str = "worker2.k8s.internal";
/// The file the worker persists its content in (`sdwan_agent::worker::PERSIST_FILE`).
const PERSISTED: &str = ".sdwan-proxy-v2.jsonl";

/// Service `ns/name` with one `http` port on `node_port`; `here` when it runs on this worker,
/// else linked to the other workers' slots `nodes`.
fn svc(ns: &str, name: &str, unique: bool, node_port: u16, nodes: &[u16]) -> ProxyService {
    ProxyService {
        ns: ns.into(),
        name: name.into(),
        unique,
        ports: vec![ProxyPort {
            name: Some(Str::new("http").unwrap()),
            protocol: Protocol::Tcp,
            port: 80,
            node_port,
        }],
        here: nodes.is_empty(),
        nodes: nodes.to_vec(),
    }
}

/// The content of worker [`NODE`] at `version`: nginx on `listen_port`, files in `dir`,
/// `services` (sorted here); node slot 0 is `worker3`.
fn content(version: u64, listen_port: u16, dir: &Path, services: &[ProxyService]) -> ProxySnapshot {
    let mut services = services.to_vec();
    services.sort_by(|a, b| a.key().cmp(&b.key()));
    ProxySnapshot {
        node: NODE.into(),
        version: Version(version),
        proxy: ProxyHeader {
            suffix: "k8s.internal".into(),
            local: "local".into(),
            listen_port,
            upstream_host: "127.0.0.1".into(),
            dir: dir.display().to_string(),
            ipv6: false,
            nodes: 1,
        },
        nodes: vec![Some("worker3".into())],
        services,
    }
}

/// `content` with `n` more services on worker3 (`bulk/svc-K`), enough to need several parts.
fn with_bulk(mut c: ProxySnapshot, n: usize) -> ProxySnapshot {
    for k in 0..n {
        c.services.push(svc(
            "bulk",
            &format!("svc-{k:05}"),
            true,
            30000 + (k % 2000) as u16,
            &[0],
        ));
    }
    c.services.sort_by(|a, b| a.key().cmp(&b.key()));
    c
}

/// `old` -> `new` as a delta.
fn delta(old: &ProxySnapshot, new: &ProxySnapshot) -> Vec<u8> {
    ProxyDelta::between(old, new).unwrap().encode().unwrap()
}

/// The status holds `c` (version and digest).
fn holds(s: &Status, c: &ProxySnapshot) -> bool {
    s.held == Some(c.version.0) && s.digest.as_deref() == Some(c.digest().to_string().as_str())
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
fn worker_agent_drives_nginx_through_mqtt_on_proxy_payload_v2() {
    let rig = ProxyRig::start("proxy-nginx");
    let (master, dir) = (&rig.master, &rig.proxy_dir);
    let port = free_port();
    let (hello, web, extra) = (
        Backend::start("hello-world"),
        Backend::start("web"),
        Backend::start("extra"),
    );
    let cart = svc("shop", "cart", true, 31000, &[0]);
    let mut agent = rig.start_agent(NODE);

    // Version 1, in several parts: hello-world (unique), shop/web (its name is not unique),
    // shop/cart on worker3 and 3,000 more services elsewhere.
    let one = with_bulk(
        content(
            1,
            port,
            dir,
            &[
                svc("default", "hello-world", true, hello.port, &[]),
                svc("shop", "web", false, web.port, &[]),
                cart.clone(),
            ],
        ),
        3000,
    );
    let parts = master.publish_proxy_snapshot(&one);
    assert!(parts > 1, "the snapshot fits one part; make it larger");
    let st = master.wait_node_status(NODE, "holds version 1", |s| holds(s, &one));
    assert_eq!((st.state, st.error, st.serial), (State::Online, None, None));
    let r = wait_get(port, LOCAL, "/hello-world/a/b?c=d", "hello-world", |r| {
        serves(r, "hello-world")
    });
    assert!(
        r.body
            .contains("path /a/b?c=d host local.k8s.internal xff 127.0.0.1 proto http"),
        "prefix stripped, Host and X-Forwarded-* passed: {r:?}"
    );
    assert!(shell_ok(&rig.nginx.check_cmd()), "nginx -t on the files");
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
    let r = http_get(port, LOCAL, "/web/").unwrap();
    assert_eq!(
        r.status, 404,
        "a name that is not unique has no short path: {r:?}"
    );
    // A service elsewhere is not proxied here.
    assert_eq!(http_get(port, LOCAL, "/shop/cart/").unwrap().status, 404);

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

    // Version 2 as a delta on version 1: extra added, web removed.
    let mut two = one.clone();
    two.version = Version(2);
    two.services.retain(|s| s.name != "web");
    two.services
        .push(svc("default", "extra", true, extra.port, &[]));
    two.services.sort_by(|a, b| a.key().cmp(&b.key()));
    master.publish_proxy_v2(NODE, "delta", delta(&one, &two));
    wait_get(port, LOCAL, "/extra/", "the added service", |r| {
        serves(r, "extra")
    });
    wait_get(port, LOCAL, "/shop/web/", "the removed service gone", |r| {
        r.status == 404
    });
    let st = master.wait_node_status(NODE, "holds version 2", |s| holds(s, &two));
    assert_eq!(st.error, None);
    agent.wait_stderr(SOON, "proxy version 2 digest");

    // A bad message: refused and reported; the files stay.
    let conf_two = std::fs::read_to_string(dir.join("sdwan.conf")).unwrap();
    master.publish_proxy_v2(NODE, "delta", b"{\"schema\":2,\"kind\":\"delta\",".to_vec());
    let st = master.wait_node_status(NODE, "the bad message reported", |s| s.error.is_some());
    assert!(holds(&st, &two), "{st:?}");
    assert!(st.error.unwrap().contains("proxy v2 message"));
    assert_eq!(
        std::fs::read_to_string(dir.join("sdwan.conf")).unwrap(),
        conf_two
    );
    // Still served (waited for: an nginx worker of the configuration before version 2's
    // reload may take one more connection while it drains).
    wait_get(
        port,
        LOCAL,
        "/extra/",
        "extra still served after the bad message",
        |r| serves(r, "extra"),
    );
    // Nested 100,000 levels deep (issue 12): refused at the checked door, no stack overflow.
    master.clear_statuses();
    let deep = format!(
        "{{\"schema\":{}{}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    master.publish_proxy_v2(NODE, "delta", deep);
    let st = master.wait_node_status(NODE, "the nested message reported", |s| {
        s.error
            .as_deref()
            .is_some_and(|e| e.contains("proxy v2 message"))
    });
    assert!(holds(&st, &two), "{st:?}");

    // A delta for another base (4 -> 5, while 2 is held): not applied; the worker resyncs
    // from the retained snapshot (version 5, published without a notice) and serves it.
    let mut five = two.clone();
    five.version = Version(5);
    five.services.retain(|s| s.name != "hello-world");
    let mut four = five.clone();
    four.version = Version(4);
    four.services.retain(|s| s.name != "extra");
    for (k, p) in five.encode().unwrap().iter().enumerate() {
        master.publish_proxy_v2(NODE, &format!("part/{k}"), p.clone());
    }
    master.publish_proxy_v2(NODE, "delta", delta(&four, &five));
    let st = master.wait_node_status(NODE, "holds version 5 after the resync", |s| {
        holds(s, &five)
    });
    assert_eq!(st.error, None);
    wait_get(port, LOCAL, "/hello-world/", "hello-world gone in 5", |r| {
        r.status == 404
    });
    assert!(serves(&http_get(port, LOCAL, "/extra/").unwrap(), "extra"));
    agent.wait_stderr(SOON, "resync (holding version 2 digest");
    drop(agent);
}

#[test]
fn a_5000_service_content_is_served_and_one_change_is_a_small_delta() {
    // Issue 11 item 6 at its scale: 5,000 services, 50 of them on this worker.
    let rig = ProxyRig::start("proxy-scale");
    let (master, dir) = (&rig.master, &rig.proxy_dir);
    let port = free_port();
    let hello = Backend::start("hello-world");
    let mut here: Vec<ProxyService> = (0..49)
        .map(|k| svc("apps", &format!("app-{k:02}"), true, 32000 + k, &[]))
        .collect();
    here.push(svc("default", "hello-world", true, hello.port, &[]));
    let one = with_bulk(content(1, port, dir, &here), 4950);
    let parts = one.encode().unwrap();
    assert!(parts.iter().all(|p| p.len() <= 256 * 1024));
    let _agent = rig.start_agent(NODE);
    let t = std::time::Instant::now();
    master.publish_proxy_snapshot(&one);
    master.wait_node_status(NODE, "holds the 5,000-service content", |s| holds(s, &one));
    let snapshot_ms = t.elapsed().as_secs_f64() * 1e3;
    wait_get(port, LOCAL, "/hello-world/", "served", |r| {
        serves(r, "hello-world")
    });
    // One service moves to another NodePort: a delta of a few hundred bytes.
    let mut two = one.clone();
    two.version = Version(2);
    let moved = two
        .services
        .iter_mut()
        .find(|s| s.name == "hello-world")
        .unwrap();
    moved.ports[0].node_port = 31999;
    let d = delta(&one, &two);
    assert!(d.len() < 1024, "{} bytes", d.len());
    let t = std::time::Instant::now();
    master.publish_proxy_v2(NODE, "delta", d.clone());
    master.wait_node_status(NODE, "holds version 2", |s| holds(s, &two));
    let delta_ms = t.elapsed().as_secs_f64() * 1e3;
    let conf = std::fs::read_to_string(dir.join("sdwan.conf")).unwrap();
    assert!(conf.contains("127.0.0.1:31999"), "{conf}");
    eprintln!(
        "5,000 services: {} parts ({} bytes), publish to held {snapshot_ms:.0} ms; a delta of {} \
         bytes, publish to held {delta_ms:.0} ms (with nginx -t and reload)",
        parts.len(),
        parts.iter().map(Vec::len).sum::<usize>(),
        d.len()
    );
}

#[test]
fn boot_with_the_broker_down_keeps_serving_and_loads_the_persisted_content() {
    let mut rig = ProxyRig::start("proxy-boot");
    let port = free_port();
    let hello = Backend::start("hello-world");
    let one = content(
        1,
        port,
        &rig.proxy_dir,
        &[svc("default", "hello-world", true, hello.port, &[])],
    );
    let mut agent = rig.start_agent(NODE);
    rig.master.publish_proxy_snapshot(&one);
    rig.master
        .wait_node_status(NODE, "holds version 1", |s| holds(s, &one));
    wait_get(port, LOCAL, "/hello-world/", "served", |r| {
        serves(r, "hello-world")
    });
    wait_for(SOON, "the content persisted", || {
        rig.proxy_dir.join(PERSISTED).exists().then_some(())
    });
    agent.kill();
    rig.broker.stop();
    let conf = std::fs::read(rig.proxy_dir.join("sdwan.conf")).unwrap();

    // Booted with the broker down: the files stay, nginx keeps serving, the content loads.
    let mut agent = rig.start_agent(NODE);
    let log = agent.wait_stderr(SOON, "proxy content loaded from");
    assert!(log.contains("version 1 digest"), "{log}");
    assert!(serves(
        &http_get(port, LOCAL, "/hello-world/").unwrap(),
        "hello-world"
    ));
    assert_eq!(
        std::fs::read(rig.proxy_dir.join("sdwan.conf")).unwrap(),
        conf
    );

    // The broker back (without its retained state): the status says what is held.
    rig.broker.start_again();
    let st = rig
        .master
        .wait_node_status(NODE, "holds version 1 after the restart", |s| {
            s.state == State::Online && holds(s, &one)
        });
    assert_eq!(st.error, None);
    drop(agent);

    // A corrupt persisted file is ignored with a warning; nothing is held, the files stay.
    std::fs::write(rig.proxy_dir.join(PERSISTED), "{\"schema\":2}\n").unwrap();
    let mut agent = rig.start_agent(NODE);
    agent.wait_stderr(SOON, "is corrupt or truncated, ignored");
    assert!(serves(
        &http_get(port, LOCAL, "/hello-world/").unwrap(),
        "hello-world"
    ));
}

#[test]
fn a_worker_cannot_read_another_workers_v2_topics() {
    let rig = ProxyRig::start("proxy-acl");
    let port = free_port();
    let mut other = content(1, port, &rig.proxy_dir, &[]);
    other.node = "worker9".into();
    rig.master.publish_proxy_snapshot(&other);
    let mine = content(1, port, &rig.proxy_dir, &[]);
    rig.master.publish_proxy_snapshot(&mine);
    let me = rig.pki.ca.client(NODE);
    let read = |topic: &str| {
        let out = Command::new(sdwan_testsupport::require_tool("mosquitto_sub"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &rig.broker.port().to_string(),
                "-t",
                topic,
            ])
            .args(["-C", "1", "-W", "2", "-q", "1", "-i", "worker9"])
            .arg("--cafile")
            .arg(rig.pki.ca.cert())
            .arg("--cert")
            .arg(&me.cert)
            .arg("--key")
            .arg(&me.key)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let topic = |node: &str, leaf: &str| format!("{PREFIX}/nodes/{node}/v2/{leaf}");
    assert!(read(&topic(NODE, "part/0")).contains(&format!("\"{NODE}\"")));
    for leaf in ["part/0", "part/+", "#"] {
        assert_eq!(
            read(&topic("worker9", leaf)),
            "",
            "{NODE} read worker9's v2/{leaf}"
        );
    }
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
    // so the check failed on disk. Here the check refuses any configuration that proxies
    // `broken` (the rendered files are always valid nginx).
    let rig = ProxyRig::start("proxy-crash");
    let (master, dir) = (&rig.master, &rig.proxy_dir);
    let port = free_port();
    let hello = Backend::start("hello-world");
    let one = content(
        1,
        port,
        dir,
        &[svc("default", "hello-world", true, hello.port, &[])],
    );
    // The check, made slow while the file `slow` exists: it then records its pid (its process
    // group: the agent starts each command in a group of its own) and sleeps.
    let slow = rig.tmp.join("slow");
    let check_pid = rig.tmp.join("check.pid");
    let check = format!(
        "if [ -e {slow} ]; then echo $$ > {pid}; sleep 120; fi; \
         if grep -q /broken/ {conf}; then echo 'broken refused' >&2; exit 1; fi; {nginx_t}",
        slow = slow.display(),
        pid = check_pid.display(),
        conf = dir.join("sdwan.conf").display(),
        nginx_t = rig.nginx.check_cmd()
    );
    let mut agent = rig.start_agent_with(NODE, &check, None);
    master.publish_proxy_snapshot(&one);
    let st = master.wait_node_status(NODE, "version 1", |s| holds(s, &one));
    assert_eq!(st.error, None);
    wait_get(port, LOCAL, "/hello-world/", "version 1 served", |r| {
        serves(r, "hello-world")
    });
    let good_conf = std::fs::read(dir.join("sdwan.conf")).unwrap();
    let good_help = std::fs::read(dir.join("help.html")).unwrap();

    // Version 2 is refused by the check; the agent is killed while its check runs.
    let mut two = one.clone();
    two.version = Version(2);
    two.services
        .push(svc("default", "broken", true, hello.port, &[]));
    two.services.sort_by(|a, b| a.key().cmp(&b.key()));
    std::fs::write(&slow, "").unwrap();
    master.publish_proxy_snapshot(&two);
    let pid: i32 = wait_for(SOON, "the check of version 2 running", || {
        std::fs::read_to_string(&check_pid)
            .ok()?
            .trim()
            .parse()
            .ok()
    });
    assert!(
        std::fs::read_to_string(dir.join("sdwan.conf"))
            .unwrap()
            .contains("/broken/"),
        "version 2's unchecked files are live while it is checked"
    );
    let check_group = KillGroupOnDrop(pid);
    agent.kill(); // SIGKILL, to this agent's pid only
    drop(check_group); // the sleeping check outlived the agent
    std::fs::remove_file(&slow).unwrap();

    // Restarted: the retained version 2 is tried again and refused; what is live, and what
    // the check sees on disk, is version 1.
    let mut agent = rig.start_agent_with(NODE, &check, None);
    let st = master.wait_node_status(NODE, "version 2 refused after the restart", |s| {
        s.error
            .as_deref()
            .is_some_and(|e| e.contains("version 2 digest") && e.contains("not applied"))
    });
    let err = st.error.clone().unwrap();
    assert!(holds(&st, &one), "{err}");
    assert!(
        err.contains("broken refused") && err.contains("previous files restored"),
        "{err}"
    );
    assert!(
        shell_ok(&check),
        "the check fails on disk after the restart"
    );
    assert_eq!(std::fs::read(dir.join("sdwan.conf")).unwrap(), good_conf);
    assert_eq!(std::fs::read(dir.join("help.html")).unwrap(), good_help);
    let known_good = dir.join(".sdwan-known-good");
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
    // Here the agent may write files of at most 64 KiB (RLIMIT_FSIZE): the help page of a
    // content with 2,000 more services is larger and fails midway, with a real EFBIG.
    let rig = ProxyRig::start("proxy-efbig");
    let (master, dir) = (&rig.master, &rig.proxy_dir);
    let port = free_port();
    let hello = Backend::start("hello-world");
    let _agent = rig.start_agent_with(NODE, &rig.nginx.check_cmd(), Some(64 * 1024));
    let small = |v: u64| {
        content(
            v,
            port,
            dir,
            &[svc("default", "hello-world", true, hello.port, &[])],
        )
    };
    let too_big = |v: u64| with_bulk(small(v), 2000);
    assert!(sdwan_render::render_help(&too_big(1)).len() > 64 * 1024);
    let temp_files = || {
        let mut left = Vec::new();
        for d in [dir.clone(), dir.join(".sdwan-known-good")] {
            for e in std::fs::read_dir(&d).into_iter().flatten() {
                let name = e.unwrap().file_name().to_string_lossy().into_owned();
                if name.ends_with(".tmp") {
                    left.push(d.join(name));
                }
            }
        }
        left
    };
    // (content, version held after it, error expected)
    let steps = [
        (too_big(1), None, true),
        (small(2), Some(2), false),
        (too_big(3), Some(2), true),
    ];
    let mut good: Option<(Vec<u8>, Vec<u8>)> = None;
    for (i, (c, held, fails)) in steps.into_iter().enumerate() {
        master.clear_statuses();
        master.publish_proxy_snapshot(&c);
        let st = master.wait_node_status(NODE, &format!("step {i}"), |s| {
            s.held == held && s.error.is_some() == fails
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
        let live = |n: &str| std::fs::read(dir.join(n)).ok();
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
fn content_for_another_directory_is_refused_with_a_clear_error() {
    let rig = ProxyRig::start("proxy-dir");
    let (master, dir) = (&rig.master, &rig.proxy_dir);
    let _agent = rig.start_agent(NODE);
    let c = content(1, free_port(), Path::new("/etc/nginx/sdwan"), &[]);
    master.publish_proxy_snapshot(&c);
    let st = master.wait_node_status(NODE, "dir error", |s| s.error.is_some());
    let err = st.error.unwrap();
    assert!(
        err.contains("was made for directory \"/etc/nginx/sdwan\""),
        "{err}"
    );
    assert_eq!(st.held, None);
    assert!(!dir.join("sdwan.conf").exists());
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
