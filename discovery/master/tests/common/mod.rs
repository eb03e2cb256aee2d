//! Shared pieces of the master's integration tests: Kubernetes objects in their real JSON
//! shapes, the master run in-process, an MQTT recorder, async waiting with deadlines.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sdwan_contract::v2::encode::{decode_owned, Delta, Message, Snapshot};
use sdwan_contract::v2::{Digest, Version};
use sdwan_discovery::cli::{self, Command};
use sdwan_discovery::metrics::SharedMetrics;
use sdwan_fake_apiserver::FakeApiServer;
use sdwan_link::rumqttc::{self, AsyncClient, QoS};
use sdwan_link::{BrokerUrl, LinkOptions};
use sdwan_testsupport::mosquitto::{Mosquitto, MosquittoConfig};
use sdwan_testsupport::TempDir;
use serde_json::{json, Value};

pub const PREFIX: &str = "sdwan/v1/test";

pub fn node(name: &str, ip: &str, zone: &str, ready: bool) -> Value {
    json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"topology.kubernetes.io/zone": zone,
                                               "kubernetes.io/hostname": name}},
        "status": {
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" },
                            "reason": "KubeletReady", "lastHeartbeatTime": "2026-11-20T08:00:00Z",
                            "lastTransitionTime": "2026-11-20T08:00:00Z", "message": "kubelet"}],
            "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}]}})
}

pub fn control_plane(name: &str, ip: &str) -> Value {
    let mut n = node(name, ip, "a", true);
    n["metadata"]["labels"]["node-role.kubernetes.io/control-plane"] = json!("");
    n
}

pub fn service(ns: &str, name: &str, node_port: u16) -> Value {
    json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"type": "NodePort", "clusterIP": "10.96.0.10",
                 "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080,
                            "nodePort": node_port}]}})
}

/// An EndpointSlice of `svc` with one ready endpoint per node.
pub fn slice(ns: &str, svc: &str, nodes: &[&str]) -> Value {
    let endpoints: Vec<Value> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            json!({"addresses": [format!("10.244.{i}.5")], "nodeName": n,
                   "conditions": {"ready": true, "serving": true, "terminating": false}})
        })
        .collect();
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("{svc}-abcde"), "namespace": ns,
                     "labels": {"kubernetes.io/service-name": svc}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "protocol": "TCP", "port": 8080}],
        "endpoints": endpoints})
}

pub const TOPOLOGY: &str = "\
[[gateway]]
id = \"gw-a\"
zone = \"a\"

[[gateway]]
id = \"gw-b\"
zone = \"b\"
";

/// Polls `cond` every 5 ms until true; panics naming `what` after `timeout`.
pub async fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// One message seen by the recorder.
#[derive(Debug, Clone)]
pub struct Seen {
    pub topic: String,
    pub payload: Vec<u8>,
    pub at: Instant,
}

impl Seen {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.payload).unwrap_or(Value::Null)
    }
    pub fn serial(&self) -> u64 {
        self.json()["serial"].as_u64().unwrap_or(0)
    }
    /// `(name, type, data)` of every record.
    pub fn records(&self) -> Vec<(String, String, String)> {
        self.json()["records"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|r| {
                        let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
                        (s("name"), s("type"), s("data"))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
    pub fn data_of(&self, name: &str, rtype: &str) -> Vec<String> {
        self.records()
            .into_iter()
            .filter(|r| r.0 == name && r.1 == rtype)
            .map(|r| r.2)
            .collect()
    }
}

/// Subscribes to `PREFIX/#` and keeps every message.
#[derive(Debug, Clone)]
pub struct Recorder {
    pub seen: Arc<Mutex<Vec<Seen>>>,
    client: AsyncClient,
}

impl Recorder {
    pub async fn start(link: LinkOptions) -> Recorder {
        let mut link = link;
        link.clean_session = true;
        let (client, mut el) = AsyncClient::new(link.mqtt_options().unwrap(), 64);
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let subscribed = Arc::new(Mutex::new(false));
        let (s2, sub2, c2) = (seen.clone(), subscribed.clone(), client.clone());
        tokio::spawn(async move {
            loop {
                match el.poll().await {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => {
                        c2.subscribe(format!("{PREFIX}/#"), QoS::AtLeastOnce)
                            .await
                            .unwrap();
                    }
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_))) => {
                        *sub2.lock().unwrap() = true;
                    }
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                        s2.lock().unwrap().push(Seen {
                            topic: p.topic,
                            payload: p.payload.to_vec(),
                            at: Instant::now(),
                        });
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        wait_until(Duration::from_secs(10), "recorder subscribed", || {
            *subscribed.lock().unwrap()
        })
        .await;
        Recorder { seen, client }
    }

    /// Publishes a retained message (an empty payload clears the retained one).
    pub async fn publish_retained(&self, topic: &str, payload: &[u8]) {
        self.client
            .publish(topic, QoS::AtLeastOnce, true, payload.to_vec())
            .await
            .unwrap();
    }

    pub fn plain(addr: std::net::SocketAddr, id: &str) -> LinkOptions {
        LinkOptions::new(
            BrokerUrl::parse_quiet(&format!("mqtt://{addr}")).unwrap(),
            id,
        )
    }

    /// Messages on `topic`, in arrival order.
    pub fn on(&self, topic: &str) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.topic == topic)
            .cloned()
            .collect()
    }

    /// Every content a gateway agent subscribed to all its payload v2 topics would have
    /// held, in order ([`follow`]).
    pub fn zone(&self, gateway: &str) -> Vec<Zone> {
        let prefix = format!("{PREFIX}/gateways/{gateway}/v2/");
        let seen: Vec<Seen> = self
            .seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.topic.starts_with(&prefix))
            .cloned()
            .collect();
        follow(&prefix, &seen)
    }

    pub fn last_zone(&self, gateway: &str) -> Option<Zone> {
        self.zone(gateway).pop()
    }

    /// Payload v2 messages of `gateway` on `leaf` (`delta`, `tail`, `part/0`, ...).
    pub fn v2(&self, gateway: &str, leaf: &str) -> Vec<Seen> {
        self.on(&format!("{PREFIX}/gateways/{gateway}/v2/{leaf}"))
    }

    /// Waits until the last content of `gateway` satisfies `cond`; returns it.
    pub async fn wait_zone(
        &self,
        gateway: &str,
        what: &str,
        mut cond: impl FnMut(&Zone) -> bool,
    ) -> Zone {
        wait_until(
            Duration::from_secs(10),
            &format!("{gateway}: {what}"),
            || self.last_zone(gateway).is_some_and(|s| cond(&s)),
        )
        .await;
        self.last_zone(gateway).unwrap()
    }

    /// Every message of `gateway` (v2 topics and status), one line each, decoded: for
    /// failure messages.
    pub fn dump(&self, gateway: &str) -> String {
        let mut out = String::new();
        let t0 = self.seen.lock().unwrap().first().map(|m| m.at);
        for m in self.seen.lock().unwrap().iter() {
            if !m.topic.contains(&format!("/gateways/{gateway}/")) {
                continue;
            }
            let what = if m.payload.is_empty() || !m.topic.contains("/v2/") {
                String::from_utf8_lossy(&m.payload).to_string()
            } else {
                match decode_owned(&m.payload) {
                    Ok(Message::Part(p)) => format!(
                        "part {}/{} version {} digest {:016x}, {} services",
                        p.part,
                        p.parts,
                        p.version.0,
                        p.digest.0,
                        p.services.len()
                    ),
                    Ok(Message::Delta(d)) => format!(
                        "delta {} -> {} digest {:016x}: del {} set {} hosts {}",
                        d.base.0,
                        d.version.0,
                        d.digest.0,
                        d.del.len(),
                        d.set.len(),
                        d.hosts.len()
                    ),
                    Ok(Message::Notice {
                        version, digest, ..
                    }) => format!("notice version {} digest {:016x}", version.0, digest.0),
                    Err(e) => format!("undecodable: {e}"),
                }
            };
            let at = t0.map_or(0.0, |t| m.at.duration_since(t).as_secs_f64() * 1e3);
            out.push_str(&format!("{at:9.1} ms {} {what}\n", m.topic));
        }
        out
    }

    /// Publishes the retained status of a simulated gateway agent holding `held` (version
    /// and digest), as a payload v2 agent does.
    pub async fn report(&self, gateway: &str, held: Option<(Version, Digest)>) {
        let mut st = sdwan_link::Status::online(None, None, "0.1.0");
        st.held = held.map(|h| h.0 .0);
        st.digest = held.map(|h| format!("{:016x}", h.1 .0));
        self.publish_retained(
            &format!("{PREFIX}/gateways/{gateway}/status"),
            st.to_json().as_bytes(),
        )
        .await;
    }
}

/// One content held by a simulated gateway agent: the snapshot, and when the message that
/// made it arrived.
#[derive(Debug, Clone)]
pub struct Zone {
    pub snap: Snapshot,
    pub at: Instant,
}

impl Zone {
    pub fn version(&self) -> Version {
        self.snap.version
    }

    pub fn digest(&self) -> Digest {
        self.snap.digest()
    }

    /// What `name` (relative to the suffix) answers for `A`, as the agent picks under the
    /// `dual` policy: a node's own address; `local`, a service (`svc.ns`) or a short name
    /// (`svc`): the first present candidate's. Empty: no answer.
    pub fn data_of(&self, name: &str, rtype: &str) -> Vec<String> {
        assert_eq!(rtype, "A", "only A is expanded here");
        let s = &self.snap;
        let v4 = |slot: usize| -> Option<String> {
            s.nodes.get(slot)?.as_ref()?.v4.map(|a| a.to_string())
        };
        if name == s.zone.local.as_str() {
            return (0..s.nodes.len()).find_map(v4).into_iter().collect();
        }
        if let Some(i) = s
            .nodes
            .iter()
            .position(|n| n.as_ref().is_some_and(|n| n.name.as_str() == name))
        {
            return v4(i).into_iter().collect();
        }
        let (svc, ns) = match name.split_once('.') {
            Some((svc, ns)) => (svc, Some(ns)),
            None => (name, None),
        };
        s.services
            .iter()
            .find(|x| x.name == svc && ns.map_or(x.short, |ns| x.ns == ns))
            .and_then(|x| {
                x.hosts
                    .iter()
                    .find(|&&h| s.nodes.get(usize::from(h)).is_some_and(Option::is_some))
                    .and_then(|&h| v4(usize::from(h)))
            })
            .into_iter()
            .collect()
    }
}

/// What a gateway agent subscribed to all its payload v2 topics holds: a complete snapshot
/// newer than what it holds (then the retained tail on it), a tail or delta on exactly the
/// version it holds.
#[derive(Debug, Default)]
pub struct Follower {
    parts: BTreeMap<usize, Message>,
    tail: Option<Delta>,
    pub held: Option<Snapshot>,
    /// A version announced (notice, delta) that the retained messages did not give.
    pub missing: Option<Version>,
}

impl Follower {
    /// Takes one message on `leaf` (`part/K`, `tail`, `delta`); true if the content held
    /// changed.
    pub fn feed(&mut self, leaf: &str, payload: &[u8]) -> bool {
        let msg = if payload.is_empty() {
            None
        } else {
            Some(decode_owned(payload).expect("the master's v2 messages decode"))
        };
        let mut next = self.held.clone();
        if let Some(k) = leaf.strip_prefix("part/") {
            let k: usize = k.parse().unwrap();
            match msg {
                Some(p) => {
                    self.parts.insert(k, p);
                }
                None => {
                    self.parts.remove(&k);
                }
            }
            let whole = match self.parts.get(&0) {
                Some(Message::Part(p0)) => {
                    let set: Vec<Message> = (0..usize::from(p0.parts))
                        .filter_map(|k| self.parts.get(&k).cloned())
                        .filter(|m| matches!(m, Message::Part(p) if p.version == p0.version))
                        .collect();
                    (set.len() == usize::from(p0.parts))
                        .then(|| Snapshot::assemble(&set).ok())
                        .flatten()
                }
                _ => None,
            };
            if let Some(w) = whole {
                if next
                    .as_ref()
                    .is_none_or(|h| w.version.is_newer_than(h.version))
                {
                    next = Some(w);
                }
            }
        } else if leaf == "tail" {
            self.tail = match msg {
                Some(Message::Delta(d)) => Some(d),
                _ => None,
            };
        } else if leaf == "delta" {
            match (&msg, next.as_mut()) {
                (Some(Message::Delta(d)), Some(h)) if d.base == h.version => {
                    let mut n = h.clone();
                    if n.apply(d).is_ok() {
                        *h = n;
                    }
                }
                (Some(Message::Delta(d)), h)
                    if h.as_ref()
                        .is_none_or(|h| d.version.is_newer_than(h.version)) =>
                {
                    self.missing = Some(d.version);
                }
                (Some(Message::Notice { version, .. }), h)
                    if h.as_ref().is_none_or(|h| version.is_newer_than(h.version)) =>
                {
                    self.missing = Some(*version);
                }
                _ => {}
            }
        }
        if let (Some(t), Some(h)) = (&self.tail, next.as_mut()) {
            if t.base == h.version {
                let mut n = h.clone();
                if n.apply(t).is_ok() {
                    *h = n;
                }
            }
        }
        if let (Some(m), Some(h)) = (self.missing, &next) {
            if !m.is_newer_than(h.version) {
                self.missing = None;
            }
        }
        if next != self.held {
            self.held = next;
            return true;
        }
        false
    }
}

/// [`Follower`] over recorded messages under `prefix` (`P/gateways/ID/v2/`): each change of
/// content is one entry (the same content under another version replaces the last entry's
/// version).
pub fn follow(prefix: &str, seen: &[Seen]) -> Vec<Zone> {
    let mut f = Follower::default();
    let mut out: Vec<Zone> = Vec::new();
    for m in seen {
        if !f.feed(&m.topic[prefix.len()..], &m.payload) {
            continue;
        }
        if let Some(h) = &f.held {
            let changed = out.last().is_none_or(|z| z.snap.digest() != h.digest());
            if changed {
                out.push(Zone {
                    snap: h.clone(),
                    at: m.at,
                });
            } else if let Some(z) = out.last_mut() {
                z.snap = h.clone();
            }
        }
    }
    out
}

/// A simulated payload v2 gateway agent on a real broker: subscribed to all of its v2
/// topics, a [`Follower`], reporting `held`, `digest` and (when a snapshot it needs is not
/// there, or it holds nothing 300 ms after subscribing) `"want":"snapshot"` in its retained
/// status, as the agent does (`docs/payload-v2.md`); its last will says offline.
pub struct SimAgent {
    pub gateway: String,
    /// Every (version, digest) it served, in order.
    pub served: Arc<Mutex<Vec<(Version, Digest)>>>,
    /// Every content it served, in order.
    pub history: Arc<Mutex<Vec<Zone>>>,
    task: tokio::task::JoinHandle<()>,
}

impl SimAgent {
    pub async fn start(broker: std::net::SocketAddr, gateway: &str) -> SimAgent {
        let mut link = Recorder::plain(broker, &format!("sim-{gateway}"));
        link.clean_session = true;
        let status_topic = format!("{PREFIX}/gateways/{gateway}/status");
        let mut opts = link.mqtt_options().unwrap();
        let offline = sdwan_link::Status::offline(None, "0.1.0").to_json();
        opts.set_last_will(rumqttc::LastWill::new(
            &status_topic,
            offline,
            QoS::AtLeastOnce,
            true,
        ));
        let (client, mut el) = AsyncClient::new(opts, 256);
        let served: Arc<Mutex<Vec<(Version, Digest)>>> = Arc::default();
        let history: Arc<Mutex<Vec<Zone>>> = Arc::default();
        let (served2, history2, gw) = (served.clone(), history.clone(), gateway.to_string());
        let task = tokio::spawn(async move {
            let prefix = format!("{PREFIX}/gateways/{gw}/v2/");
            let mut f = Follower::default();
            let mut subscribed_at: Option<Instant> = None;
            let mut want = false;
            let status = |f: &Follower, want: bool| {
                let mut st = sdwan_link::Status::online(None, None, "0.1.0");
                if let Some(h) = &f.held {
                    st.held = Some(h.version.0);
                    st.digest = Some(format!("{:016x}", h.digest().0));
                }
                st.want = want.then(|| "snapshot".to_string());
                st.to_json()
            };
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            loop {
                let ev = tokio::select! {
                    ev = el.poll() => Some(ev),
                    _ = tick.tick() => None,
                };
                let mut report = false;
                match ev {
                    Some(Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_)))) => {
                        let _ = client
                            .subscribe(format!("{prefix}#"), QoS::AtLeastOnce)
                            .await;
                        subscribed_at = Some(Instant::now());
                        report = true;
                    }
                    Some(Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)))) => {
                        if let Some(leaf) = p.topic.strip_prefix(&prefix) {
                            if f.feed(leaf, &p.payload) {
                                let h = f.held.as_ref().unwrap();
                                served2.lock().unwrap().push((h.version, h.digest()));
                                history2.lock().unwrap().push(Zone {
                                    snap: h.clone(),
                                    at: Instant::now(),
                                });
                                report = true;
                            }
                        }
                    }
                    Some(Ok(_)) | None => {}
                    Some(Err(_)) => {
                        subscribed_at = None;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
                let now_want = f.missing.is_some()
                    || (f.held.is_none()
                        && subscribed_at.is_some_and(|t| t.elapsed() > Duration::from_millis(300)));
                if now_want != want {
                    want = now_want;
                    report = true;
                }
                if report && subscribed_at.is_some() {
                    let _ = client
                        .publish(&status_topic, QoS::AtLeastOnce, true, status(&f, want))
                        .await;
                }
            }
        });
        SimAgent {
            gateway: gateway.to_string(),
            served,
            history,
            task,
        }
    }

    /// The content it serves now.
    pub fn zone(&self) -> Option<Zone> {
        self.history.lock().unwrap().last().cloned()
    }

    /// What it serves now.
    pub fn held(&self) -> Option<(Version, Digest)> {
        self.served.lock().unwrap().last().copied()
    }

    /// Versions served only ever grew (RFC 1982).
    pub fn assert_never_went_back(&self) {
        let s = self.served.lock().unwrap();
        for w in s.windows(2) {
            assert!(
                w[1].0.is_newer_than(w[0].0),
                "{}: served {:?} after {:?}",
                self.gateway,
                w[1],
                w[0]
            );
        }
    }

    /// Stops it as a crash would (the broker sends its last will).
    pub fn kill(self) {
        self.task.abort();
    }
}

impl Drop for SimAgent {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The master running in-process; stopped on drop.
pub struct Master {
    pub metrics: SharedMetrics,
    pub metrics_addr: Option<std::net::SocketAddr>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Master {
    /// Starts `sdwan-discovery run ARGS` in this runtime.
    pub async fn start(args: &[String]) -> Master {
        let Command::Run(run) = cli::parse(args.iter().map(Into::into)).unwrap() else {
            panic!("not a run command: {args:?}")
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            let mut tx = Some(tx);
            let r = sdwan_discovery::run(*run, shutdown, |r| {
                let _ = tx.take().unwrap().send(r.clone());
            })
            .await;
            if let Err(e) = r {
                panic!("master failed: {e}");
            }
        });
        let running = tokio::time::timeout(Duration::from_secs(10), rx)
            .await
            .unwrap()
            .unwrap();
        Master {
            metrics: running.metrics,
            metrics_addr: running.metrics_addr,
            stop: Some(stop),
            task,
        }
    }

    /// Stops it and waits until it has disconnected.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let task = std::mem::replace(&mut self.task, tokio::spawn(async {}));
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .unwrap()
            .unwrap();
    }

    pub fn plans(&self) -> u64 {
        self.metrics.lock().unwrap().plans
    }
}

impl Drop for Master {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

pub fn write_file(dir: &std::path::Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// Standard args: kubeconfig, topology, broker, prefix.
pub fn args(
    kubeconfig: &std::path::Path,
    topology: &std::path::Path,
    broker: &str,
    extra: &[&str],
) -> Vec<String> {
    let mut a: Vec<String> = vec![
        "run".into(),
        "--kubeconfig".into(),
        kubeconfig.display().to_string(),
        "--topology".into(),
        topology.display().to_string(),
        "--broker".into(),
        broker.into(),
        "--topic-prefix".into(),
        PREFIX.into(),
        "--retained-wait".into(),
        "1000".into(),
    ];
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

/// A plain embedded broker (rumqttd) on a free loopback port, for tests that are about the
/// master and not about TLS.
pub fn plain_broker() -> std::net::SocketAddr {
    sdwan_discovery::broker::start("127.0.0.1:0".parse().unwrap()).unwrap()
}

/// The sdwan-agent binary beside this test's target directory.
pub fn agent_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|d| d.parent()).unwrap();
    let bin = dir.join("sdwan-agent");
    assert!(
        bin.exists(),
        "{} not found: build it with `cargo build -p sdwan-agent --features worker` (cargo nextest run --workspace does)",
        bin.display()
    );
    bin
}

/// The master-process harness of the watch and leader tests: a fake API server holding two
/// Ready workers (w1 in zone a, w2 in zone b), then `more_nodes`, then service default/web
/// (NodePort 30080) with its endpoint on w1; a temp dir with the kubeconfig and [`TOPOLOGY`];
/// an embedded plain broker and a [`Recorder`] on it.
pub struct Setup {
    pub api: FakeApiServer,
    pub dir: TempDir,
    pub broker: std::net::SocketAddr,
    pub recorder: Recorder,
}

impl Setup {
    pub async fn start(name: &str, more_nodes: &[Value]) -> Setup {
        let api = FakeApiServer::start().await.unwrap();
        api.apply(node("w1", "192.0.2.1", "a", true));
        api.apply(node("w2", "192.0.2.2", "b", true));
        for n in more_nodes {
            api.apply(n.clone());
        }
        api.apply(service("default", "web", 30080));
        api.apply(slice("default", "web", &["w1"]));
        let dir = TempDir::new(name);
        write_file(dir.path(), "kubeconfig", &api.kubeconfig_yaml());
        write_file(dir.path(), "topology.toml", TOPOLOGY);
        let broker = plain_broker();
        let recorder = Recorder::start(Recorder::plain(broker, &format!("rec-{name}"))).await;
        Setup {
            api,
            dir,
            broker,
            recorder,
        }
    }

    /// [`args`] for this setup's kubeconfig, topology and broker, then `extra`.
    pub fn args(&self, extra: &[&str]) -> Vec<String> {
        args(
            &self.dir.join("kubeconfig"),
            &self.dir.join("topology.toml"),
            &format!("mqtt://{}", self.broker),
            extra,
        )
    }
}

/// mosquitto without TLS, ACL or persistence (a restart loses every retained message), the
/// fake API server with w1 (zone a), w2 (zone b) and default/web on w1, and [`TOPOLOGY`] with
/// a kubeconfig in a temp dir: the set-up of the tests that run the master binary.
pub struct Rig {
    pub api: FakeApiServer,
    pub dir: TempDir,
    pub broker: Mosquitto,
}

impl Rig {
    /// Starts the broker and the API server (needs mosquitto).
    pub async fn start(name: &str) -> Rig {
        Rig::start_with(
            name,
            &MosquittoConfig {
                tls: None,
                acl: None,
                persistence: false,
                max_packet_size: None,
            },
        )
        .await
    }

    /// The same with the broker configured as `config` says (e.g. the design's ACL).
    pub async fn start_with(name: &str, config: &MosquittoConfig) -> Rig {
        sdwan_testsupport::require_tool("mosquitto");
        let dir = TempDir::new(name);
        let broker = Mosquitto::start(dir.path(), config);
        let api = FakeApiServer::start().await.unwrap();
        api.apply(node("w1", "192.0.2.1", "a", true));
        api.apply(node("w2", "192.0.2.2", "b", true));
        api.apply(service("default", "web", 30080));
        api.apply(slice("default", "web", &["w1"]));
        write_file(dir.path(), "kubeconfig", &api.kubeconfig_yaml());
        write_file(dir.path(), "topology.toml", TOPOLOGY);
        Rig { api, dir, broker }
    }

    /// The broker's address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.broker.port()))
    }

    /// The master's arguments for this rig, then `extra`.
    pub fn args(&self, extra: &[&str]) -> Vec<String> {
        args(
            &self.dir.join("kubeconfig"),
            &self.dir.join("topology.toml"),
            &format!("mqtt://{}", self.addr()),
            extra,
        )
    }
}

/// `GET path` over HTTP/1.0; the whole response, or "" when nothing listens yet.
pub fn http_get(addr: SocketAddr, path: &str) -> String {
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return String::new();
    };
    let _ = write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// The value of the sample `name` (with its labels) in a `/metrics` text.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// Polls `/metrics` at `addr` until `cond` holds (20 s); returns the text.
pub async fn wait_metrics(addr: SocketAddr, what: &str, cond: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = tokio::task::spawn_blocking(move || http_get(addr, "/metrics"))
            .await
            .unwrap();
        if cond(&text) {
            return text;
        }
        assert!(Instant::now() < deadline, "timed out: {what}\n{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Publishes `payload` retained on `topic` as MQTT user `user` (as that gateway or the
/// master would) and waits until the broker acknowledged it.
pub async fn publish_as(broker: &str, user: &str, topic: &str, payload: impl Into<Vec<u8>>) {
    let mut link = LinkOptions::new(BrokerUrl::parse_quiet(broker).unwrap(), user);
    link.username = Some(user.to_string());
    link.clean_session = true;
    let (client, mut el) = AsyncClient::new(link.mqtt_options().unwrap(), 8);
    client
        .publish(topic, QoS::AtLeastOnce, true, payload.into())
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_)) =
                el.poll().await.expect("publisher connection")
            {
                break;
            }
        }
    })
    .await
    .expect("PUBACK within 10 s");
    let _ = client.disconnect().await;
}
