//! Leader election, end to end: two `sdwan-discovery` processes against the fake API server
//! (Lease with resourceVersion conflicts) and an MQTT broker. The leader is killed with
//! SIGKILL; the standby takes over within the lease timing and no gateway ever sees a serial
//! go backwards. A leader whose Lease is taken stops publishing. Every API request the masters
//! make is one of `leader::API_CALLS` (the list the RBAC manifests are checked against).
//!
//! Short lease timing through the flags: duration 1 s, renew deadline 0.6 s, retry 0.15 s.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use sdwan_contract::v2::encode::{decode_owned, Message};
use sdwan_contract::v2::proxy::ProxyMessage;
use sdwan_discovery::leader::API_CALLS;
use sdwan_fake_apiserver::FakeApiServer;
use sdwan_testsupport::{free_port, ChildGuard};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LEASE: &str = "sdwan-test";
const DURATION_MS: u64 = 1000;
const RENEW_DEADLINE_MS: u64 = 600;
const RETRY_MS: u64 = 150;

/// One master process with its metrics port.
struct Proc {
    child: ChildGuard,
    metrics: u16,
}

impl Setup {
    /// Starts an `sdwan-discovery` process with leader election as `identity`.
    fn start_master(&self, identity: &str) -> Proc {
        let metrics = free_port();
        let a = self.args(&[
            "--leader-elect",
            "--lease-name",
            LEASE,
            "--lease-namespace",
            "default",
            "--identity",
            identity,
            "--lease-duration",
            &DURATION_MS.to_string(),
            "--renew-deadline",
            &RENEW_DEADLINE_MS.to_string(),
            "--retry-period",
            &RETRY_MS.to_string(),
            "--metrics",
            &format!("127.0.0.1:{metrics}"),
        ]);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sdwan-discovery"));
        cmd.args(&a).env("RUST_LOG", "info");
        Proc {
            child: ChildGuard::spawn(&format!("master-{identity}"), &mut cmd),
            metrics,
        }
    }

    fn holder(&self) -> Option<String> {
        let l = self.api.get("Lease", "default", LEASE)?;
        l["spec"]["holderIdentity"].as_str().map(Into::into)
    }
}

/// `GET path` on 127.0.0.1:port: (status, body); (0, "") when it does not answer.
async fn http_get(port: u16, path: &str) -> (u16, String) {
    let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return (0, String::new());
    };
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        return (0, String::new());
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf).await;
    let status = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = buf.split_once("\r\n\r\n").map_or("", |b| b.1).to_string();
    (status, body)
}

/// The value of an unlabelled metric (or one with exactly this label set).
async fn metric(p: &Proc, name: &str) -> Option<f64> {
    let (_, body) = http_get(p.metrics, "/metrics").await;
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

async fn wait_metric(p: &Proc, name: &str, want: f64, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if metric(p, name).await == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {name} = {want}, have {:?}\n{}",
            metric(p, name).await,
            p.child.stderr()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Per gateway: one version always names the same content (every part, delta and notice
/// that names a version names it with one digest, whichever master sent it), and the content
/// an agent subscribed to everything would have held only ever moved to newer versions.
fn assert_versions_monotonic(rec: &Recorder) {
    let mut by_version: BTreeMap<(String, u64), u64> = BTreeMap::new();
    for s in rec.seen.lock().unwrap().iter() {
        if !s.topic.contains("/v2/") || s.payload.is_empty() {
            continue;
        }
        if s.topic.contains("/nodes/") {
            // Workers' proxy streams: the same rule, keyed by node.
            let (node, v, d) = match sdwan_contract::v2::proxy::decode(&s.payload).unwrap() {
                ProxyMessage::Part(p) => (p.node, p.version, p.digest),
                ProxyMessage::Delta(d) => (d.node, d.version, d.digest),
                ProxyMessage::Notice {
                    node,
                    version,
                    digest,
                } => (node, version, digest),
            };
            let had = *by_version
                .entry((format!("node {node}"), v.0))
                .or_insert(d.0);
            assert_eq!(had, d.0, "node {node}: version {} names two contents", v.0);
            continue;
        }
        let (gw, v, d) = match decode_owned(&s.payload).unwrap() {
            Message::Part(p) => (p.gateway, p.version, p.digest),
            Message::Delta(d) => (d.gateway, d.version, d.digest),
            Message::Notice {
                gateway,
                version,
                digest,
            } => (gateway, version, digest),
        };
        let had = *by_version.entry((gw.clone(), v.0)).or_insert(d.0);
        assert_eq!(had, d.0, "{gw}: version {} names two contents", v.0);
    }
    let mut gateways = 0;
    for gw in ["gw-a", "gw-b"] {
        let all = rec.zone(gw);
        gateways += usize::from(!all.is_empty());
        for pair in all.windows(2) {
            assert!(
                pair[1].version().is_newer_than(pair[0].version()),
                "{gw}: {:?} after {:?}",
                pair[1].version(),
                pair[0].version()
            );
        }
    }
    assert_eq!(gateways, 2, "zones of both gateways seen");
}

/// Maps a request line (`GET /api/v1/nodes?watch=true...`) to (group, resource, verb,
/// namespace), `None` for non-resource paths.
fn api_call(line: &str) -> Option<(String, String, &'static str, Option<String>)> {
    let (method, target) = line.split_once(' ')?;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match segs.as_slice() {
        ["api", _v, rest @ ..] => ("", rest),
        ["apis", g, _v, rest @ ..] => (*g, rest),
        _ => return None,
    };
    let (ns, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(ns.to_string()), rest),
        _ => (None, rest),
    };
    let (resource, named) = match rest {
        [r] => (*r, false),
        [r, _name] => (*r, true),
        _ => return None,
    };
    let watch = query
        .split('&')
        .any(|kv| kv == "watch=true" || kv == "watch=1");
    let verb = match (method, named) {
        ("GET", false) if watch => "watch",
        ("GET", false) => "list",
        ("GET", true) => "get",
        ("POST", false) => "create",
        ("PUT", true) => "update",
        ("PATCH", true) => "patch",
        ("DELETE", true) => "delete",
        _ => "unknown",
    };
    Some((group.into(), resource.into(), verb, ns))
}

fn assert_requests_are_declared(api: &FakeApiServer) {
    let requests = api.requests();
    assert!(!requests.is_empty());
    let mut used = std::collections::BTreeSet::new();
    for line in &requests {
        let (group, resource, verb, ns) =
            api_call(line).unwrap_or_else(|| panic!("non-resource request {line:?}"));
        let call = API_CALLS
            .iter()
            .find(|c| c.group == group && c.resource == resource && c.verb == verb)
            .unwrap_or_else(|| {
                panic!("request {line:?} ({verb} {resource}.{group}) is not in leader::API_CALLS")
            });
        if call.namespaced {
            assert_eq!(
                ns.as_deref(),
                Some("default"),
                "{line:?}: only in the lease namespace"
            );
        } else {
            assert_eq!(ns, None, "{line:?}: watches span all namespaces");
        }
        used.insert((call.group, call.resource, call.verb));
    }
    for c in API_CALLS {
        assert!(
            used.contains(&(c.group, c.resource, c.verb)),
            "API_CALLS lists {} {}.{} but no master made that request: {requests:#?}",
            c.verb,
            c.resource,
            c.group
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standby_takes_over_from_a_killed_leader_without_version_regression() {
    let s = Setup::start("leader-kill", &[]).await;
    let rec = &s.recorder;
    let mut a = s.start_master("a");
    wait_metric(&a, "sdwan_leader", 1.0, "a leads").await;
    rec.wait_zone("gw-a", "web on w1", |z| {
        z.data_of("web.default", "A") == ["192.0.2.1"]
    })
    .await;
    assert_eq!(rec.zone("gw-a").len(), 1);

    let b = s.start_master("b");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (code, body) = http_get(b.metrics, "/readyz").await;
        if code == 200 {
            assert!(body.contains("standby"), "{body}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "b never ready as standby: {code} {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(metric(&b, "sdwan_leader").await, Some(0.0));

    // A change while both run: only a publishes it. b's first plan (its lists) is counted
    // already: the change is one more.
    wait_metric(&b, "sdwan_plans_total", 1.0, "b planned its lists").await;
    s.api.apply(slice("default", "web", &["w2"]));
    rec.wait_zone("gw-a", "web on w2", |z| {
        z.data_of("web.default", "A") == ["192.0.2.2"]
    })
    .await;
    wait_metric(&b, "sdwan_plans_total", 2.0, "b planned the change").await;
    assert_eq!(
        metric(&b, "sdwan_published_total{kind=\"zone\"}").await,
        Some(0.0),
        "the standby published"
    );
    assert_eq!(s.holder().as_deref(), Some("a"));

    // Kill the leader; change the cluster right away.
    let before = rec.seen.lock().unwrap().len();
    let killed = Instant::now();
    a.child.kill();
    s.api.apply(slice("default", "web", &["w1"]));
    let z = rec
        .wait_zone("gw-a", "b publishes web back on w1", |z| {
            z.data_of("web.default", "A") == ["192.0.2.1"]
        })
        .await;
    let took = z.at.duration_since(killed);
    let zones = rec.zone("gw-a");
    assert_eq!(zones.len(), 3, "b's content follows a's: {zones:?}");
    assert_eq!(s.holder().as_deref(), Some("b"));
    assert_eq!(metric(&b, "sdwan_leader").await, Some(1.0));
    // Takeover bound: the lease duration (docs/operations.md), plus reading the retained
    // payloads and slack for a loaded 2-core machine.
    let bound = Duration::from_millis(DURATION_MS + 1500);
    assert!(took < bound, "takeover took {took:?} (bound {bound:?})");
    // a may have renewed up to one retry before it was killed and then published until its
    // renew deadline: b must not have published before that.
    let earliest = Duration::from_millis(RENEW_DEADLINE_MS - RETRY_MS);
    assert!(
        took > earliest,
        "b published {took:?} after the kill, while a could still publish"
    );
    eprintln!("leader killed -> standby published after {took:?}");
    let after: Vec<Seen> = rec.seen.lock().unwrap()[before..].to_vec();
    assert!(
        after.iter().all(|m| !m.topic.ends_with("/zone")),
        "a v1 zone was published"
    );
    assert_versions_monotonic(rec);
    assert_requests_are_declared(&s.api);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_lease_is_taken_stops_publishing_and_resumes_with_newer_versions() {
    let s = Setup::start("leader-deposed", &[]).await;
    let rec = &s.recorder;
    let a = s.start_master("a");
    wait_metric(&a, "sdwan_leader", 1.0, "a leads").await;
    rec.wait_zone("gw-a", "first zone", |_| true).await;

    // Someone else holds the Lease now (for an hour).
    let mut lease = s.api.get("Lease", "default", LEASE).unwrap();
    lease["spec"]["holderIdentity"] = json!("intruder");
    lease["spec"]["leaseDurationSeconds"] = json!(3600);
    s.api.apply(lease.clone());
    wait_metric(&a, "sdwan_leader", 0.0, "a deposed").await;
    let plans = metric(&a, "sdwan_plans_total").await.unwrap();
    let seen = rec.zone("gw-a").len();
    s.api.apply(slice("default", "web", &["w2"]));
    wait_metric(&a, "sdwan_plans_total", plans + 1.0, "a planned the change").await;
    assert_eq!(rec.zone("gw-a").len(), seen, "a deposed leader published");
    let (code, body) = http_get(a.metrics, "/readyz").await;
    assert_eq!((code, body.as_str()), (200, "ready (standby)\n"));

    // The intruder releases it: a leads again, reads the retained statuses, publishes a newer
    // version.
    lease["spec"]["holderIdentity"] = json!(null);
    s.api.apply(lease);
    rec.wait_zone("gw-a", "web on w2 after the release", |z| {
        z.data_of("web.default", "A") == ["192.0.2.2"]
    })
    .await;
    assert_eq!(rec.zone("gw-a").len(), 2);
    assert_versions_monotonic(rec);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_leader_releases_the_lease() {
    let s = Setup::start("leader-release", &[]).await;
    let mut a = s.start_master("a");
    wait_metric(&a, "sdwan_leader", 1.0, "a leads").await;
    assert_eq!(s.holder().as_deref(), Some("a"));
    a.child.signal(15); // SIGTERM, as Kubernetes stops a pod
    let status = a.child.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "{status:?}\n{}", a.child.stderr());
    assert_eq!(s.holder(), None, "SIGTERM released the lease");
}
