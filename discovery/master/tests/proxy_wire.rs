//! Proxy payload v2 on the wire (issue 11 item 6): the master (in-process) against the fake
//! API server and a real mosquitto; the test subscribes as each worker would, follows its
//! stream with the worker's state machine (`v2::proxy::follow::Follower`), reports `held`
//! and `digest` in the worker's retained status, and renders `sdwan.conf` and the help page
//! with `sdwan-render`: they must be what the plan wants (the same rendering of
//! `sdwan_plan::proxy_v2` content planned here from the same objects), and the master's
//! metrics must say converged, by digest. Needs mosquitto (Debian: mosquitto).

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use sdwan_contract::v2::proxy::follow::{Follower, Source, Step};
use sdwan_contract::v2::proxy::ProxySnapshot;
use sdwan_contract::v2::Version;
use sdwan_discovery::metrics::SharedMetrics;
use sdwan_fake_apiserver::FakeApiServer;
use sdwan_link::rumqttc::{self, AsyncClient, QoS};
use sdwan_plan::{Planner, Snapshot as Cluster, Topology};
use sdwan_testsupport::mosquitto::{Mosquitto, MosquittoConfig};
use sdwan_testsupport::{require_tool, TempDir};
use serde_json::Value;

/// What a simulated worker saw and serves.
#[derive(Default)]
struct Seen {
    /// The content it serves.
    served: Option<ProxySnapshot>,
    /// Every version served, in order.
    versions: Vec<Version>,
    /// Messages handled, per topic leaf kind (`part`, `tail`, `delta`).
    messages: Vec<(&'static str, usize)>,
    refused: Vec<String>,
}

/// A worker on the broker: subscribed to `P/nodes/NODE/v2/delta` always and to `part/+`
/// and `tail` while its follower resyncs, reporting what it serves in its retained status.
struct SimWorker {
    seen: Arc<Mutex<Seen>>,
    task: tokio::task::JoinHandle<()>,
}

impl SimWorker {
    async fn start(broker: std::net::SocketAddr, node: &str) -> SimWorker {
        let mut link = Recorder::plain(broker, &format!("simw-{node}"));
        link.clean_session = true;
        let opts = link.mqtt_options().unwrap();
        let (client, mut el) = AsyncClient::new(opts, 256);
        let seen: Arc<Mutex<Seen>> = Arc::default();
        let seen2 = seen.clone();
        let node = node.to_string();
        let task = tokio::spawn(async move {
            let base = format!("{PREFIX}/nodes/{node}/v2/");
            let status_topic = format!("{PREFIX}/nodes/{node}/status");
            let (mut f, _) = Follower::new(&node, None);
            let mut resyncing = true;
            loop {
                let Ok(ev) = el.poll().await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let mut steps = Vec::new();
                match ev {
                    rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_)) => {
                        let _ = client
                            .subscribe(format!("{base}delta"), QoS::AtLeastOnce)
                            .await;
                        steps.push(Step::Resync);
                    }
                    rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)) => {
                        let Some(leaf) = p.topic.strip_prefix(&base) else {
                            continue;
                        };
                        let (src, kind) = match leaf {
                            "delta" => (Source::Delta, "delta"),
                            "tail" => (Source::Tail, "tail"),
                            _ => (Source::Part, "part"),
                        };
                        seen2.lock().unwrap().messages.push((kind, p.payload.len()));
                        steps = f.handle(src, &p.payload);
                    }
                    _ => {}
                }
                let mut report = false;
                while !steps.is_empty() {
                    let mut next = Vec::new();
                    for s in steps {
                        match s {
                            Step::Serve(c) => {
                                {
                                    let mut sn = seen2.lock().unwrap();
                                    sn.versions.push(c.version);
                                    sn.served = Some(c.clone());
                                }
                                next.extend(f.served(c));
                                report = true;
                            }
                            Step::Resync if !resyncing || f.held().is_none() => {
                                resyncing = true;
                                for t in ["part/+", "tail"] {
                                    let _ = client
                                        .subscribe(format!("{base}{t}"), QoS::AtLeastOnce)
                                        .await;
                                }
                            }
                            Step::Resync => {}
                            Step::Synced => {
                                resyncing = false;
                                for t in ["part/+", "tail"] {
                                    let _ = client.unsubscribe(format!("{base}{t}")).await;
                                }
                            }
                            Step::Refused(why) => seen2.lock().unwrap().refused.push(why),
                        }
                    }
                    steps = next;
                }
                if report {
                    let mut st = sdwan_link::Status::online(None, None, "0.1.0");
                    if let Some(h) = f.held() {
                        st.held = Some(h.version.0);
                        st.digest = Some(format!("{:016x}", h.digest.0));
                    }
                    let _ = client
                        .publish(&status_topic, QoS::AtLeastOnce, true, st.to_json())
                        .await;
                }
            }
        });
        SimWorker { seen, task }
    }

    fn served(&self) -> Option<ProxySnapshot> {
        self.seen.lock().unwrap().served.clone()
    }
}

impl Drop for SimWorker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The cluster as the fake API server holds it, mirrored here to plan what workers want.
struct Objects(Vec<Value>);

impl Objects {
    fn apply(&mut self, api: &FakeApiServer, v: Value) {
        api.apply(v.clone());
        let key = |v: &Value| {
            (
                v["kind"].clone(),
                v["metadata"]["namespace"].clone(),
                v["metadata"]["name"].clone(),
            )
        };
        self.0.retain(|o| key(o) != key(&v));
        self.0.push(v);
    }

    /// Worker `node`'s content as the plan wants it.
    fn planned(&self, node: &str) -> ProxySnapshot {
        let mut cluster = Cluster::new();
        for o in &self.0 {
            match o["kind"].as_str().unwrap() {
                "Node" => cluster
                    .apply_node(&serde_json::from_value(o.clone()).unwrap())
                    .unwrap(),
                "Service" => cluster
                    .apply_service(&serde_json::from_value(o.clone()).unwrap())
                    .unwrap(),
                "EndpointSlice" => cluster
                    .apply_slice(&serde_json::from_value(o.clone()).unwrap())
                    .unwrap(),
                k => panic!("{k}"),
            }
        }
        let planner = Planner::new(cluster, Topology::from_toml(TOPOLOGY).unwrap());
        sdwan_plan::proxy_v2::proxies(planner.snapshot(), planner.plan())
            .snapshot(node, Version(0))
            .unwrap()
    }
}

/// Waits until each worker serves what the plan wants (rendered files equal) and the
/// master's metrics say it converged with the digest it serves.
async fn wait_served(metrics: &SharedMetrics, objs: &Objects, workers: &[(&str, &SimWorker)]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ok = workers.iter().all(|(node, w)| {
            let Some(got) = w.served() else { return false };
            let want = objs.planned(node);
            let m = metrics.lock().unwrap();
            let Some(c) = m.nodes.get(*node) else {
                return false;
            };
            sdwan_render::render_conf(&got) == sdwan_render::render_conf(&want)
                && sdwan_render::render_help(&got) == sdwan_render::render_help(&want)
                && c.converged()
                && c.applied_digest == Some(got.digest().0)
                && c.desired_digest == Some(want.digest().0)
        });
        if ok {
            return;
        }
        if Instant::now() > deadline {
            let m = metrics.lock().unwrap();
            let state: Vec<String> = workers
                .iter()
                .map(|(node, w)| {
                    format!(
                        "{node} serves {:?}\nmaster: {:?}\nrefused: {:?}",
                        w.served().map(|s| sdwan_render::render_conf(&s)),
                        m.nodes.get(*node),
                        w.seen.lock().unwrap().refused
                    )
                })
                .collect();
            panic!("timed out:\n{}", state.join("\n"));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn proxies(conf: &str, node_port: u16) -> bool {
    conf.contains(&format!(":{node_port}/;"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_follow_proxy_v2_from_the_master_and_render_what_the_plan_wants() {
    require_tool("mosquitto");
    let dir = TempDir::new("proxy-wire");
    let broker = Mosquitto::start(
        dir.path(),
        &MosquittoConfig {
            tls: None,
            acl: None,
            persistence: false,
            max_packet_size: None,
        },
    );
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], broker.port()));
    let api = FakeApiServer::start().await.unwrap();
    let mut objs = Objects(Vec::new());
    objs.apply(&api, node("w1", "192.0.2.1", "a", true));
    objs.apply(&api, node("w2", "192.0.2.2", "b", true));
    objs.apply(&api, service("default", "web", 30080));
    objs.apply(&api, slice("default", "web", &["w1"]));
    write_file(dir.path(), "kubeconfig", &api.kubeconfig_yaml());
    write_file(dir.path(), "topology.toml", TOPOLOGY);
    let run_args = args(
        &dir.join("kubeconfig"),
        &dir.join("topology.toml"),
        &format!("mqtt://{addr}"),
        &[],
    );
    let rec = Recorder::start(Recorder::plain(addr, "rec-proxy-wire")).await;
    let m = Master::start(&run_args).await;
    let w1 = SimWorker::start(addr, "w1").await;
    let w2 = SimWorker::start(addr, "w2").await;
    wait_served(&m.metrics, &objs, &[("w1", &w1), ("w2", &w2)]).await;
    let conf = |w: &SimWorker| sdwan_render::render_conf(&w.served().unwrap());
    assert!(proxies(&conf(&w1), 30080), "{}", conf(&w1));
    assert!(!proxies(&conf(&w2), 30080), "{}", conf(&w2));
    assert!(sdwan_render::render_help(&w2.served().unwrap()).contains("web"));

    // The endpoint moves to w2 and a service is added: each worker gets it as a delta (no
    // part after its first snapshot), small, and renders what the plan wants.
    let parts_before: Vec<usize> = [&w1, &w2]
        .iter()
        .map(|w| {
            let s = w.seen.lock().unwrap();
            s.messages.iter().filter(|(k, _)| *k == "part").count()
        })
        .collect();
    objs.apply(&api, slice("default", "web", &["w2"]));
    objs.apply(&api, service("default", "api", 30090));
    objs.apply(&api, slice("default", "api", &["w1"]));
    wait_served(&m.metrics, &objs, &[("w1", &w1), ("w2", &w2)]).await;
    assert!(!proxies(&conf(&w1), 30080) && proxies(&conf(&w1), 30090));
    assert!(proxies(&conf(&w2), 30080) && !proxies(&conf(&w2), 30090));
    for (w, before) in [&w1, &w2].iter().zip(parts_before) {
        let s = w.seen.lock().unwrap();
        let parts = s.messages.iter().filter(|(k, _)| *k == "part").count();
        assert_eq!(parts, before, "a snapshot was sent for a service change");
        let deltas: Vec<usize> = s
            .messages
            .iter()
            .filter(|(k, _)| *k == "delta")
            .map(|m| m.1)
            .collect();
        assert!(deltas.iter().all(|n| *n < 1000), "{deltas:?}");
        for v in s.versions.windows(2) {
            assert!(v[1].is_newer_than(v[0]), "{:?}", s.versions);
        }
    }

    // A restarted master reads only the statuses and adopts what the workers hold: nothing
    // new is served, and it reports them converged.
    m.stop().await;
    let served = |w: &SimWorker| w.seen.lock().unwrap().versions.len();
    let (n1, n2) = (served(&w1), served(&w2));
    let m = Master::start(&run_args).await;
    wait_served(&m.metrics, &objs, &[("w1", &w1), ("w2", &w2)]).await;
    {
        let mm = m.metrics.lock().unwrap();
        assert_eq!(mm.start_node_statuses, 2);
        assert!(
            mm.start_node_status_bytes > 100 && mm.start_node_status_bytes < 1000,
            "{} bytes of worker statuses",
            mm.start_node_status_bytes
        );
    }
    assert_eq!((served(&w1), served(&w2)), (n1, n2));
    m.stop().await;
    // No proxy payload v1 any more: nothing on `P/nodes/NODE/proxy`.
    let v1: Vec<String> = rec
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.topic.ends_with("/proxy"))
        .map(|s| s.topic.clone())
        .collect();
    assert!(v1.is_empty(), "{v1:?}");
    assert!(rec
        .seen
        .lock()
        .unwrap()
        .iter()
        .any(|s| s.topic.starts_with(&format!("{PREFIX}/nodes/w1/v2/part/"))));
}
