//! The payload v2 publisher serving workers' proxy streams (`Publisher<ProxySnapshot>`,
//! issue 11 item 6) on virtual time, against in-memory peers: a broker that keeps retained
//! messages and simulated workers that follow their stream with the worker's own state
//! machine, `v2::proxy::follow::Follower` (`docs/payload-v2.md`, "Proxy payload v2").

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sdwan_contract::v2::proxy::follow::{Follower, Source, Step};
use sdwan_contract::v2::proxy::{Protocol, ProxyHeader, ProxyPort, ProxyService, ProxySnapshot};
use sdwan_contract::v2::{Digest, Version};
use sdwan_discovery::publish::{AgentStatus, Config, Input, Kind, Now, Publish, Publisher};

const PREFIX: &str = "t";

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn cfg() -> Config {
    Config {
        prefix: PREFIX.into(),
        quiet: ms(20),
        max_delay: ms(200),
        status_wait: ms(500),
        lag_grace: ms(5000),
        resync_interval: ms(10_000),
        foreign_grace: ms(2000),
        takeover_jump: ms(3_600_000),
        max_unknown: 4096,
    }
}

/// A cluster as workers see it: node slots and services (name -> NodePort, hosting slots).
#[derive(Debug, Clone)]
struct Cluster {
    slots: Vec<Option<String>>,
    services: BTreeMap<String, (u16, Vec<u16>)>,
}

impl Cluster {
    fn new(workers: usize, services: usize) -> Cluster {
        Cluster {
            slots: (0..workers).map(|i| Some(format!("w{i}"))).collect(),
            services: (0..services)
                .map(|i| {
                    (
                        format!("svc-{i:04}"),
                        (30000 + i as u16, vec![(i % workers) as u16]),
                    )
                })
                .collect(),
        }
    }

    /// Worker `me`'s content: every service, `here` where it has an endpoint.
    fn snapshot(&self, me: u16) -> ProxySnapshot {
        ProxySnapshot {
            node: format!("w{me}"),
            version: Version(0),
            proxy: ProxyHeader {
                suffix: "k8s.internal".into(),
                local: "local".into(),
                listen_port: 80,
                upstream_host: "127.0.0.1".into(),
                dir: "/etc/nginx/sdwan".into(),
                ipv6: false,
                nodes: self.slots.len() as u16,
            },
            nodes: self.slots.clone(),
            services: self
                .services
                .iter()
                .map(|(name, (np, hosts))| ProxyService {
                    ns: "default".into(),
                    name: name.clone(),
                    unique: true,
                    ports: vec![ProxyPort {
                        name: None,
                        protocol: Protocol::Tcp,
                        port: 80,
                        node_port: *np,
                    }],
                    here: hosts.contains(&me),
                    nodes: hosts.iter().copied().filter(|h| *h != me).collect(),
                })
                .collect(),
        }
    }
}

/// A simulated worker: its follower, what it serves, whether it is subscribed to the parts
/// and tail (only while resyncing) and connected at all.
struct Worker {
    node: String,
    follower: Follower,
    resyncing: bool,
    online: bool,
    served: Vec<(Version, Digest)>,
    refused: Vec<String>,
}

impl Worker {
    fn new(node: &str, held: Option<ProxySnapshot>) -> Worker {
        let (follower, step) = Follower::new(node, held);
        assert_eq!(step, Step::Resync);
        Worker {
            node: node.into(),
            follower,
            resyncing: true,
            online: true,
            served: Vec::new(),
            refused: Vec::new(),
        }
    }

    fn steps(&mut self, steps: Vec<Step>, broker: &Broker) {
        for s in steps {
            match s {
                Step::Serve(content) => {
                    self.served.push((content.version, content.digest()));
                    if let Some(Step::Synced) = self.follower.served(content) {
                        self.resyncing = false;
                    }
                }
                Step::Resync => {
                    self.resyncing = true;
                    // Subscribing delivers what is retained.
                    let retained = broker.retained_for(&self.node);
                    for (src, payload) in retained {
                        let st = self.follower.handle(src, &payload);
                        self.steps(st, broker);
                    }
                }
                Step::Synced => self.resyncing = false,
                Step::Refused(why) => self.refused.push(why),
            }
        }
    }

    /// Delivers `p` if this worker is subscribed to its topic.
    fn deliver(&mut self, p: &Publish, broker: &Broker) {
        if !self.online {
            return;
        }
        let Some(leaf) = p
            .topic
            .strip_prefix(&format!("{PREFIX}/nodes/{}/v2/", self.node))
        else {
            return;
        };
        let src = match leaf {
            "delta" => Source::Delta,
            "tail" if self.resyncing => Source::Tail,
            l if l.starts_with("part/") && self.resyncing => Source::Part,
            _ => return,
        };
        let st = self.follower.handle(src, &p.payload);
        self.steps(st, broker);
    }

    fn status(&self) -> AgentStatus {
        let h = self.follower.held();
        AgentStatus {
            held: h.map(|h| h.version),
            digest: h.map(|h| h.digest),
            want_snapshot: false,
            online: self.online,
        }
    }

    fn held(&self) -> Option<(Version, Digest)> {
        self.follower.held().map(|h| (h.version, h.digest))
    }
}

/// The retained messages, by topic.
#[derive(Default)]
struct Broker {
    retained: BTreeMap<String, Vec<u8>>,
}

impl Broker {
    fn keep(&mut self, p: &Publish) {
        if !p.retain {
            return;
        }
        if p.payload.is_empty() {
            self.retained.remove(&p.topic);
        } else {
            self.retained.insert(p.topic.clone(), p.payload.clone());
        }
    }

    /// The retained parts (in order) then the tail of `node`.
    fn retained_for(&self, node: &str) -> Vec<(Source, Vec<u8>)> {
        let base = format!("{PREFIX}/nodes/{node}/v2/");
        let mut out: Vec<(Source, Vec<u8>)> = self
            .retained
            .iter()
            .filter(|(t, _)| t.starts_with(&format!("{base}part/")))
            .map(|(_, p)| (Source::Part, p.clone()))
            .collect();
        if let Some(t) = self.retained.get(&format!("{base}tail")) {
            out.push((Source::Tail, t.clone()));
        }
        out
    }
}

/// Publisher, broker and workers on one virtual clock.
struct Sim {
    t0: Instant,
    now: Duration,
    wall0: u64,
    publisher: Publisher<ProxySnapshot>,
    broker: Broker,
    workers: Vec<Worker>,
    timer: Option<Instant>,
    log: Vec<Publish>,
}

impl Sim {
    fn new(workers: usize) -> Sim {
        Sim {
            t0: Instant::now(),
            now: Duration::ZERO,
            wall0: 1_764_694_800_000,
            publisher: Publisher::new(cfg()),
            broker: Broker::default(),
            workers: (0..workers)
                .map(|i| Worker::new(&format!("w{i}"), None))
                .collect(),
            timer: None,
            log: Vec::new(),
        }
    }

    fn at(&self) -> Now {
        Now {
            mono: self.t0 + self.now,
            wall_ms: self.wall0 + self.now.as_millis() as u64,
        }
    }

    fn input(&mut self, input: Input<ProxySnapshot>) {
        let out = self.publisher.handle(self.at(), input);
        self.timer = out.timer;
        for p in out.publishes {
            self.broker.keep(&p);
            for w in 0..self.workers.len() {
                let mut wk = std::mem::replace(&mut self.workers[w], Worker::new("x", None));
                wk.deliver(&p, &self.broker);
                self.workers[w] = wk;
            }
            self.log.push(p);
        }
    }

    /// Advances the clock by `d`, firing the publisher's timers on the way.
    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        while let Some(t) = self.timer.filter(|t| *t <= self.t0 + end) {
            self.now = self.now.max(t - self.t0);
            self.input(Input::Tick);
        }
        self.now = end;
    }

    /// Each worker reports its status.
    fn report(&mut self) {
        for i in 0..self.workers.len() {
            let (node, st) = (self.workers[i].node.clone(), self.workers[i].status());
            self.input(Input::Status {
                gateway: node,
                status: Some(st),
            });
        }
    }

    /// Lead and let the status wait pass.
    fn lead(&mut self) {
        self.input(Input::Connected);
        self.input(Input::Lead);
        self.advance(ms(600));
    }

    fn desire(&mut self, c: &Cluster) {
        for i in 0..self.workers.len() {
            self.input(Input::Desired(Box::new(c.snapshot(i as u16))));
        }
    }

    fn since(&self, mark: usize) -> &[Publish] {
        &self.log[mark..]
    }

    fn assert_serve(&self, c: &Cluster) {
        for (i, w) in self.workers.iter().enumerate() {
            let want = c.snapshot(i as u16);
            let got = w.follower.content().expect("a worker serves nothing");
            assert_eq!(got.services, want.services, "{}", w.node);
            assert_eq!(got.nodes, want.nodes, "{}", w.node);
            assert!(w.refused.is_empty(), "{}: {:?}", w.node, w.refused);
            let conv = self.publisher.convergence(&w.node).unwrap();
            assert_eq!(Some(conv.desired), w.held().map(|h| h.1), "{}", w.node);
        }
    }
}

fn kinds(ps: &[Publish]) -> Vec<(Kind, String)> {
    ps.iter()
        .map(|p| {
            let leaf = p.topic.rsplit("/v2/").next().unwrap().to_string();
            (p.kind, leaf)
        })
        .collect()
}

#[test]
fn proxy_streams_start_with_a_snapshot_on_node_topics_then_go_by_delta() {
    let mut sim = Sim::new(3);
    let mut c = Cluster::new(3, 40);
    sim.lead();
    sim.desire(&c);
    // Each worker: parts, an empty tail, deletes of parts beyond (unknown at a start), notice.
    for p in &sim.log {
        assert!(
            p.topic
                .starts_with(&format!("{PREFIX}/nodes/{}/v2/", p.gateway)),
            "{}",
            p.topic
        );
    }
    let w0: Vec<_> = sim
        .log
        .iter()
        .filter(|p| p.gateway == "w0")
        .cloned()
        .collect();
    let k = kinds(&w0);
    assert_eq!(k[0], (Kind::Part, "part/0".into()));
    assert_eq!(k[1], (Kind::Tail, "tail".into()));
    assert_eq!(k.last().unwrap(), &(Kind::Notice, "delta".into()));
    sim.report();
    sim.assert_serve(&c);
    assert_eq!(sim.publisher.converged_count(), (3, 3));

    // One endpoint moves from w1 to w2, after a quiet: a tail and a delta per worker, at
    // once, nothing else; every worker applies it on its base.
    sim.advance(ms(100));
    let mark = sim.log.len();
    c.services.get_mut("svc-0001").unwrap().1 = vec![2];
    sim.desire(&c);
    let k = kinds(sim.since(mark));
    assert_eq!(k.len(), 6, "{k:?}");
    for pair in k.chunks(2) {
        assert_eq!(pair[0], (Kind::Tail, "tail".into()));
        assert_eq!(pair[1], (Kind::Delta, "delta".into()));
    }
    assert!(sim.since(mark).iter().all(|p| p.payload.len() < 400));
    sim.report();
    sim.assert_serve(&c);
    assert_eq!(sim.publisher.converged_count(), (3, 3));
    assert!(sim.workers[1].follower.content().unwrap().services[1].nodes == [2]);
    assert!(!sim.workers[1].follower.content().unwrap().services[1].here);
    assert!(sim.workers[2].follower.content().unwrap().services[1].here);
}

#[test]
fn proxy_changes_in_a_burst_coalesce_into_one_delta() {
    let mut sim = Sim::new(1);
    let mut c = Cluster::new(1, 10);
    sim.lead();
    sim.desire(&c);
    sim.advance(ms(100));
    let mark = sim.log.len();
    // The first change goes at once; four more within `quiet` of each other wait and go as
    // one delta after the quiet.
    for i in 0..5 {
        c.services.insert(format!("new-{i}"), (31000 + i, vec![0]));
        sim.desire(&c);
        sim.advance(ms(5));
    }
    let deltas = || {
        sim.since(mark)
            .iter()
            .filter(|p| p.kind == Kind::Delta)
            .count()
    };
    assert_eq!(deltas(), 1);
    sim.advance(ms(50));
    let deltas = sim
        .since(mark)
        .iter()
        .filter(|p| p.kind == Kind::Delta)
        .count();
    assert_eq!(deltas, 2);
    sim.report();
    sim.assert_serve(&c);
}

#[test]
fn a_worker_offline_through_changes_is_resynced_from_the_retained_snapshot_and_tail() {
    let mut sim = Sim::new(2);
    let mut c = Cluster::new(2, 20);
    sim.lead();
    sim.desire(&c);
    sim.report();
    sim.workers[1].online = false;
    sim.report();
    for i in 0..50u16 {
        sim.advance(ms(30));
        c.services.get_mut("svc-0003").unwrap().0 = 31000 + i;
        sim.desire(&c);
    }
    sim.advance(ms(300));
    sim.report();
    assert!(!sim.publisher.convergence("w1").unwrap().converged);
    // Back online: it resyncs by itself (a reconnect subscribes to parts and tail).
    sim.workers[1].online = true;
    let st = sim.workers[1].follower.handle(Source::Delta, b"");
    assert!(st.is_empty());
    let (node, held) = ("w1", sim.workers[1].follower.content().cloned());
    let mut w = Worker::new(node, held);
    w.steps(vec![Step::Resync], &sim.broker);
    sim.workers[1] = w;
    sim.report();
    sim.assert_serve(&c);
    assert_eq!(sim.publisher.converged_count(), (2, 2));
}

#[test]
fn a_lagging_worker_that_missed_a_delta_gets_a_notice() {
    let mut sim = Sim::new(1);
    let mut c = Cluster::new(1, 5);
    sim.lead();
    sim.desire(&c);
    sim.report();
    // The delta is lost on its way (the worker's session dropped it).
    sim.advance(ms(100));
    sim.workers[0].online = false;
    c.services.remove("svc-0002");
    sim.desire(&c);
    sim.workers[0].online = true;
    sim.report();
    let mark = sim.log.len();
    assert!(!sim.publisher.convergence("w0").unwrap().converged);
    // After `lag_grace` a notice on its own topic; it resyncs from the retained content.
    sim.advance(ms(5100));
    let k = kinds(sim.since(mark));
    assert!(k.contains(&(Kind::Notice, "delta".into())), "{k:?}");
    sim.report();
    sim.assert_serve(&c);
}

#[test]
fn new_node_slots_go_as_a_snapshot_and_a_notice() {
    let mut sim = Sim::new(2);
    let mut c = Cluster::new(2, 5);
    sim.lead();
    sim.desire(&c);
    sim.report();
    sim.advance(ms(100));
    let mark = sim.log.len();
    c.slots.push(Some("w9".into()));
    sim.desire(&c);
    let k = kinds(sim.since(mark));
    assert!(k.contains(&(Kind::Part, "part/0".into())), "{k:?}");
    assert!(k.contains(&(Kind::Notice, "delta".into())), "{k:?}");
    assert!(!k.iter().any(|(k, _)| *k == Kind::Delta), "{k:?}");
    sim.report();
    sim.assert_serve(&c);
}

#[test]
fn a_restarted_master_adopts_the_version_a_worker_holds_with_the_desired_content() {
    let c = Cluster::new(2, 8);
    let mut held = c.snapshot(0);
    held.version = Version(4242);
    let mut other = c.snapshot(1);
    other.services.pop();
    other.version = Version(u64::MAX);
    let mut sim = Sim::new(0);
    sim.workers = vec![
        Worker::new("w0", Some(held.clone())),
        Worker::new("w1", Some(other)),
    ];
    sim.input(Input::Connected);
    sim.input(Input::Lead);
    sim.report();
    sim.advance(ms(600));
    let mark = sim.log.len();
    sim.desire(&c);
    // w0 holds the desired content: its version is adopted, nothing reaches it on `delta`.
    assert_eq!(sim.publisher.version("w0"), Some(Version(4242)));
    assert!(!sim
        .since(mark)
        .iter()
        .any(|p| p.gateway == "w0" && p.topic.ends_with("/delta")));
    // w1 holds other content at the last version: the stream goes past it (wrapping), never
    // under the same version.
    let v1 = sim.publisher.version("w1").unwrap();
    assert!(v1.is_newer_than(Version(u64::MAX)), "{v1:?}");
    sim.report();
    sim.assert_serve(&c);
    assert_eq!(sim.workers[0].served, []);
    assert_eq!(sim.publisher.converged_count(), (2, 2));
}

#[test]
fn a_worker_reporting_the_desired_version_with_other_content_is_not_converged() {
    let mut sim = Sim::new(1);
    let c = Cluster::new(1, 3);
    sim.lead();
    sim.desire(&c);
    let v = sim.publisher.version("w0").unwrap();
    sim.input(Input::Status {
        gateway: "w0".into(),
        status: Some(AgentStatus {
            held: Some(v),
            digest: Some(Digest(1)),
            want_snapshot: false,
            online: true,
        }),
    });
    assert!(!sim.publisher.convergence("w0").unwrap().converged);
    sim.report();
    assert!(sim.publisher.convergence("w0").unwrap().converged);
}
