//! The payload v2 publisher (`sdwan_discovery::publish`) on virtual time, against in-memory
//! peers: a broker that keeps retained messages and simulated agents that decide with
//! `v2::accept` and apply with `Snapshot::apply` / `Snapshot::assemble`, as the real agent
//! must (`docs/payload-v2.md`).

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use sdwan_contract::v2::accept::{self, DeltaAction, Held, NoticeAction, PartAction};
use sdwan_contract::v2::encode::{decode_owned, Message, Service, Snapshot};
use sdwan_contract::v2::{
    Digest, Family, Node, Port, Str, Tier, Version, ZoneHeader, MAX_PARTS, TAIL_REFRESH_BYTES,
};
use sdwan_discovery::publish::{
    AgentStatus, Config, Input, Kind, Now, Outputs, Publish, Publisher,
};
use sdwan_testsupport::Rng;

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

// ---------------------------------------------------------------------------------------
// Content

/// A cluster: node slots (as many for every gateway) and services (name, hosts).
#[derive(Debug, Clone)]
struct Cluster {
    ttl: u32,
    nodes: Vec<Option<u8>>,
    services: BTreeMap<String, (u16, Vec<u16>)>,
}

impl Cluster {
    fn new(nodes: usize, services: usize) -> Cluster {
        let mut c = Cluster {
            ttl: 30,
            nodes: (0..nodes).map(|i| Some(i as u8)).collect(),
            services: BTreeMap::new(),
        };
        for i in 0..services {
            c.services.insert(
                format!("svc-{i:05}"),
                (30000 + i as u16, vec![(i % nodes) as u16]),
            );
        }
        c
    }

    /// One random change, as the planner would see it.
    fn change(&mut self, rng: &mut Rng) {
        let n = self.nodes.len() as u16;
        match rng.below(100) {
            0..=39 => {
                // Endpoints move.
                let keys: Vec<String> = self.services.keys().cloned().collect();
                let k = rng.pick(&keys).clone();
                let s = self.services.get_mut(&k).unwrap();
                let mut hosts: Vec<u16> = (0..n).filter(|_| rng.chance(30)).collect();
                if hosts.is_empty() {
                    hosts.push(rng.below(n as usize) as u16);
                }
                s.1 = hosts;
            }
            40..=59 => {
                let i = rng.next_u64() % 100_000;
                self.services.insert(
                    format!("new-{i:05}"),
                    (
                        30000 + (i % 20000) as u16,
                        vec![rng.below(n as usize) as u16],
                    ),
                );
            }
            60..=74 => {
                if self.services.len() > 1 {
                    let keys: Vec<String> = self.services.keys().cloned().collect();
                    let k = rng.pick(&keys).clone();
                    self.services.remove(&k);
                }
            }
            75..=89 => {
                // A worker goes NotReady or comes back.
                let i = rng.below(self.nodes.len());
                self.nodes[i] = match self.nodes[i] {
                    Some(_) => None,
                    None => Some(i as u8),
                };
            }
            90..=95 => self.ttl = 10 + (rng.next_u64() % 50) as u32,
            _ => {
                // A new worker: one more slot.
                let i = self.nodes.len();
                if i < 200 {
                    self.nodes.push(Some(i as u8));
                }
            }
        }
    }

    fn snapshot(&self, gw: &str) -> Snapshot {
        Snapshot {
            gateway: gw.to_string(),
            version: Version(0),
            zone: ZoneHeader {
                suffix: Str::new("k8s.internal").unwrap(),
                local: Str::new("local").unwrap(),
                ttl: self.ttl,
                service_ttl: 10,
                family: Family::Dual,
                nodes: self.nodes.len() as u16,
                probe: None,
            },
            nodes: self
                .nodes
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    n.map(|_| Node {
                        name: Str::new(&format!("worker-{i}")).unwrap(),
                        tier: Tier::Other,
                        v4: Some(Ipv4Addr::new(192, 168, 200, i as u8)),
                        v6: None,
                    })
                })
                .collect(),
            services: self
                .services
                .iter()
                .map(|(name, (port, hosts))| Service {
                    ns: "default".into(),
                    name: name.clone(),
                    short: false,
                    ports: vec![Port::parse(&format!("_http._tcp:{port}")).unwrap()],
                    hosts: hosts.clone(),
                })
                .collect(),
        }
    }
}

// ---------------------------------------------------------------------------------------
// In-memory peers

/// A simulated agent: the acceptance rules of `v2::accept`, the reference application of
/// `Snapshot::apply` / `Snapshot::assemble`.
#[derive(Debug, Default)]
struct Agent {
    held: Option<Snapshot>,
    /// Its digest.
    digest: Option<Digest>,
    online: bool,
    want: bool,
    /// Every digest served, in order.
    served: Vec<Digest>,
    /// The version of each.
    versions: Vec<Version>,
    /// Resyncing (subscribed to the parts and tail) until this version is held.
    target: Option<Version>,
    conflicts: usize,
}

impl Agent {
    fn held(&self) -> Option<Held> {
        Some(Held {
            version: self.held.as_ref()?.version,
            digest: self.digest?,
        })
    }

    /// Holds `s` (without counting it as served: for set-ups).
    fn set_held(&mut self, s: Snapshot) {
        self.digest = Some(s.digest());
        self.held = Some(s);
    }

    fn status(&self) -> AgentStatus {
        AgentStatus {
            held: self.held.as_ref().map(|h| h.version),
            digest: self.digest,
            want_snapshot: self.want,
            online: self.online,
        }
    }

    fn serve(&mut self, s: Snapshot) {
        let d = s.digest();
        if self.served.last() != Some(&d) {
            self.served.push(d);
            self.versions.push(s.version);
        }
        self.digest = Some(d);
        self.held = Some(s);
    }

    /// A message on `v2/delta`.
    fn on_delta_topic(&mut self, bytes: &[u8], retained: &HashMap<String, Vec<u8>>, gw: &str) {
        if bytes.is_empty() {
            return;
        }
        match decode_owned(bytes).expect("the publisher's messages decode") {
            Message::Delta(d) => match accept::delta(self.held(), d.base, d.version, d.digest) {
                DeltaAction::Apply => {
                    let mut next = self.held.clone().unwrap();
                    match next.apply(&d) {
                        Ok(()) => self.serve(next),
                        Err(_) => self.resync(retained, gw),
                    }
                }
                DeltaAction::Gap => {
                    self.target = Some(d.version);
                    self.resync(retained, gw);
                }
                DeltaAction::Conflict => self.conflicts += 1,
                DeltaAction::Replay | DeltaAction::Ignore | DeltaAction::Wait => {}
            },
            Message::Notice {
                version, digest, ..
            } => match accept::notice(self.held(), version, digest) {
                NoticeAction::Resync => {
                    self.target = Some(version);
                    self.resync(retained, gw);
                }
                NoticeAction::Conflict => self.conflicts += 1,
                NoticeAction::Ignore => {}
            },
            Message::Part(_) => panic!("a part on the delta topic"),
        }
    }

    /// Reads the retained snapshot and tail (at start, after a gap or a notice).
    fn resync(&mut self, retained: &HashMap<String, Vec<u8>>, gw: &str) {
        let topic = |leaf: &str| format!("{PREFIX}/gateways/{gw}/v2/{leaf}");
        let mut parts = Vec::new();
        for k in 0..MAX_PARTS {
            match retained.get(&topic(&format!("part/{k}"))) {
                Some(b) if !b.is_empty() => parts.push(decode_owned(b).unwrap()),
                _ => break,
            }
        }
        let whole = match parts.first() {
            Some(Message::Part(p)) if parts.len() == usize::from(p.parts) => {
                Snapshot::assemble(&parts).ok()
            }
            _ => None,
        };
        let Some(snap) = whole else {
            self.want = true;
            return;
        };
        self.want = false;
        let tail = retained
            .get(&topic("tail"))
            .filter(|b| !b.is_empty())
            .map(|b| match decode_owned(b).unwrap() {
                Message::Delta(d) => d,
                m => panic!("tail is not a delta: {m:?}"),
            });
        let mut next = self.held.clone();
        match accept::part(self.held(), None, snap.version, snap.digest()) {
            PartAction::Restart | PartAction::Stage => {
                let mut staged = snap;
                if let Some(t) = &tail {
                    if t.base == staged.version {
                        let _ = staged.apply(t);
                    }
                }
                next = Some(staged);
            }
            PartAction::Conflict => self.conflicts += 1,
            PartAction::Replay | PartAction::Ignore => {}
        }
        // The tail on what is held ("as left").
        if let (Some(t), Some(h)) = (&tail, &next) {
            let held = Held {
                version: h.version,
                digest: h.digest(),
            };
            if accept::delta(Some(held), t.base, t.version, t.digest) == DeltaAction::Apply {
                let mut n = h.clone();
                if n.apply(t).is_ok() {
                    next = Some(n);
                }
            }
        }
        if let Some(n) = next {
            if self.held.as_ref() != Some(&n) {
                self.serve(n);
            }
        }
        // Still short of the version that sent it here: ask for a snapshot (the real agent
        // does so after 10 s; here at once) and stay subscribed.
        let v = self.held.as_ref().map(|h| h.version);
        match (self.target, v) {
            (Some(t), Some(v)) if t.is_newer_than(v) => self.want = true,
            _ => self.target = None,
        }
    }
}

/// One publisher in the simulation, with its own wall clock offset and message delay.
struct Peer {
    p: Publisher,
    timer: Option<Instant>,
    clock_offset: i64,
    delay: Duration,
    last_arrival: Instant,
}

/// Broker, agents and publishers on one virtual clock.
struct Sim {
    t0: Instant,
    now: Instant,
    wall0: u64,
    seq: u64,
    /// Publishes on their way to the broker.
    queue: BTreeMap<(Instant, u64), Publish>,
    pubs: Vec<Peer>,
    retained: HashMap<String, Vec<u8>>,
    agents: BTreeMap<String, Agent>,
    /// Chance in 100 that a delta-topic message to an online agent is lost.
    loss: u64,
    rng: Rng,
    log: Vec<(Duration, Publish)>,
    keep_log: bool,
}

impl Sim {
    fn new(gateways: &[String], publishers: usize, seed: u64) -> Sim {
        let t0 = Instant::now();
        let mut sim = Sim {
            t0,
            now: t0,
            wall0: 1_764_694_800_000,
            seq: 0,
            queue: BTreeMap::new(),
            pubs: (0..publishers)
                .map(|_| Peer {
                    p: Publisher::new(cfg()),
                    timer: None,
                    clock_offset: 0,
                    delay: Duration::ZERO,
                    last_arrival: t0,
                })
                .collect(),
            retained: HashMap::new(),
            agents: gateways
                .iter()
                .map(|g| {
                    (
                        g.clone(),
                        Agent {
                            online: true,
                            ..Agent::default()
                        },
                    )
                })
                .collect(),
            loss: 0,
            rng: Rng::new(seed),
            log: Vec::new(),
            keep_log: true,
        };
        for i in 0..publishers {
            sim.give(i, Input::Connected);
        }
        // The agents boot: they read the retained snapshot (none yet: they want one) and
        // publish their status.
        for gw in gateways {
            sim.set_online(gw, true);
        }
        sim
    }

    fn wall(&self, i: usize) -> u64 {
        let el = (self.now - self.t0).as_millis() as i64;
        (self.wall0 as i64 + el + self.pubs[i].clock_offset) as u64
    }

    fn push(&mut self, at: Instant, e: Publish) {
        self.seq += 1;
        self.queue.insert((at, self.seq), e);
    }

    /// Hands `input` to publisher `i` now.
    fn give(&mut self, i: usize, input: Input) {
        let now = Now {
            mono: self.now,
            wall_ms: self.wall(i),
        };
        let Outputs { publishes, timer } = self.pubs[i].p.handle(now, input);
        self.pubs[i].timer = timer;
        for p in publishes {
            // MQTT keeps one client's QoS 1 messages in order.
            let at = (self.now + self.pubs[i].delay).max(self.pubs[i].last_arrival);
            self.pubs[i].last_arrival = at;
            self.push(at, p);
        }
    }

    fn desire(&mut self, cluster: &Cluster, to: &[usize]) {
        let gws: Vec<String> = self.agents.keys().cloned().collect();
        for gw in gws {
            let s = cluster.snapshot(&gw);
            for &i in to {
                self.give(i, Input::Desired(Box::new(s.clone())));
            }
        }
    }

    /// The agent's status goes to every publisher.
    fn report(&mut self, gw: &str) {
        let status = Some(self.agents[gw].status());
        for i in 0..self.pubs.len() {
            self.give(
                i,
                Input::Status {
                    gateway: gw.to_string(),
                    status,
                },
            );
        }
    }

    fn arrive(&mut self, p: Publish) {
        if self.keep_log {
            self.log.push((self.now - self.t0, p.clone()));
        }
        if p.retain {
            if p.payload.is_empty() {
                self.retained.remove(&p.topic);
            } else {
                self.retained.insert(p.topic.clone(), p.payload.clone());
            }
        }
        let a = self.agents.get_mut(&p.gateway).unwrap();
        if a.online && (a.want || a.target.is_some()) && !p.topic.ends_with("/v2/delta") {
            // Subscribed to the parts and tail while resyncing.
            let before = a.status();
            a.resync(&self.retained, &p.gateway);
            if a.status() != before {
                self.report(&p.gateway);
            }
        }
        if p.topic.ends_with("/v2/delta") {
            let lost = self.loss > 0 && self.rng.chance(self.loss);
            let a = self.agents.get_mut(&p.gateway).unwrap();
            if a.online && !lost {
                let before = a.status();
                a.on_delta_topic(&p.payload, &self.retained, &p.gateway);
                if a.status() != before {
                    self.report(&p.gateway);
                }
            }
        }
    }

    fn set_online(&mut self, gw: &str, online: bool) {
        let a = self.agents.get_mut(gw).unwrap();
        a.online = online;
        if online {
            // At start the agent reads the retained snapshot and tail.
            a.resync(&self.retained, gw);
        }
        self.report(gw);
    }

    /// Runs events and timers up to `until`.
    fn run_until(&mut self, until: Instant) {
        loop {
            let next_event = self.queue.keys().next().map(|k| k.0);
            let next_timer = self
                .pubs
                .iter()
                .enumerate()
                .filter_map(|(i, n)| n.timer.map(|t| (t, i)))
                .min();
            let t = match (next_event, next_timer) {
                (Some(e), Some((tm, _))) => e.min(tm),
                (Some(e), None) => e,
                (None, Some((tm, _))) => tm,
                (None, None) => break,
            };
            if t > until {
                break;
            }
            self.now = self.now.max(t);
            if next_event == Some(t) {
                let k = *self.queue.keys().next().unwrap();
                let p = self.queue.remove(&k).unwrap();
                self.arrive(p);
            } else if let Some((_, i)) = next_timer {
                self.give(i, Input::Tick);
            }
        }
        self.now = self.now.max(until);
    }

    fn advance(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }

    fn at(&self, d: Duration) -> Instant {
        self.t0 + d
    }

    fn kinds_since(&self, from: usize) -> Vec<(String, Kind)> {
        self.log[from..]
            .iter()
            .map(|(_, p)| (p.topic.rsplit("/v2/").next().unwrap().to_string(), p.kind))
            .collect()
    }
}

fn gateways(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("gw-{i:04}")).collect()
}

/// Leads publisher `i` and lets the statuses be read.
fn lead(sim: &mut Sim, i: usize) {
    sim.give(i, Input::Lead);
    sim.advance(ms(600));
}

// ---------------------------------------------------------------------------------------
// Coalescing

#[test]
fn coalescing_sends_an_isolated_change_at_once_and_bounds_a_burst() {
    // (change instants in ms, instants of the deltas published)
    let mut cases: Vec<(Vec<u64>, Vec<u64>)> = vec![
        (vec![1000], vec![1000]),
        (vec![1000, 1100], vec![1000, 1100]),
        (vec![1000, 1005, 1010], vec![1000, 1030]),
        (vec![1000, 1019, 1040], vec![1000, 1039, 1060]),
    ];
    // Changes every 10 ms for 300 ms: the held ones wait max_delay (200 ms), not longer.
    cases.push((
        (0..=30).map(|i| 1000 + i * 10).collect(),
        vec![1000, 1210, 1320],
    ));
    for (changes, want) in cases {
        let gws = gateways(1);
        let mut sim = Sim::new(&gws, 1, 1);
        let mut cluster = Cluster::new(4, 3);
        sim.desire(&cluster, &[0]);
        lead(&mut sim, 0);
        let start = sim.log.len();
        for (k, &t) in changes.iter().enumerate() {
            sim.run_until(sim.at(ms(t)));
            cluster
                .services
                .insert(format!("burst-{k:03}"), (31000, vec![0]));
            sim.desire(&cluster, &[0]);
        }
        sim.advance(ms(1000));
        let got: Vec<u64> = sim.log[start..]
            .iter()
            .filter(|(_, p)| p.kind == Kind::Delta)
            .map(|(t, _)| t.as_millis() as u64)
            .collect();
        assert_eq!(got, want, "changes {changes:?}");
        // Nothing waited longer than max_delay.
        for &c in &changes {
            let next = got.iter().find(|&&g| g >= c).unwrap();
            assert!(next - c <= 200, "change at {c} published at {next}");
        }
        let a = &sim.agents["gw-0000"];
        assert_eq!(
            a.held.as_ref().unwrap().digest(),
            cluster.snapshot("gw-0000").digest()
        );
    }
}

// ---------------------------------------------------------------------------------------
// Delta, tail, snapshot, deletes

#[test]
fn a_change_is_a_tail_then_a_delta_naming_its_base() {
    let gws = gateways(1);
    let mut sim = Sim::new(&gws, 1, 2);
    let mut cluster = Cluster::new(4, 3);
    sim.desire(&cluster, &[0]);
    lead(&mut sim, 0);
    // The start: snapshot, empty tail, deletes of parts that may be left, notice.
    let mut want: Vec<(String, Kind)> =
        vec![("part/0".into(), Kind::Part), ("tail".into(), Kind::Tail)];
    want.extend((1..MAX_PARTS).map(|k| (format!("part/{k}"), Kind::PartDelete)));
    want.push(("delta".into(), Kind::Notice));
    assert_eq!(sim.kinds_since(0), want);
    let v0 = sim.pubs[0].p.version("gw-0000").unwrap();

    sim.advance(ms(1000));
    let from = sim.log.len();
    cluster.services.get_mut("svc-00001").unwrap().1 = vec![0, 2];
    sim.desire(&cluster, &[0]);
    sim.advance(ms(100));
    assert_eq!(
        sim.kinds_since(from),
        vec![("tail".into(), Kind::Tail), ("delta".into(), Kind::Delta)]
    );
    let v1 = sim.pubs[0].p.version("gw-0000").unwrap();
    let Message::Delta(d) = decode_owned(&sim.log[from + 1].1.payload).unwrap() else {
        panic!("not a delta")
    };
    assert_eq!((d.base, d.version), (v0, v1));
    assert!(!sim.log[from + 1].1.retain && sim.log[from].1.retain);
    let Message::Delta(t) = decode_owned(&sim.log[from].1.payload).unwrap() else {
        panic!("tail is not a delta")
    };
    assert_eq!((t.base, t.version), (v0, v1));

    // A second change: the tail merges both (still from the snapshot's version).
    sim.advance(ms(1000));
    let from = sim.log.len();
    cluster.services.remove("svc-00002");
    sim.desire(&cluster, &[0]);
    sim.advance(ms(100));
    let Message::Delta(t) = decode_owned(&sim.log[from].1.payload).unwrap() else {
        panic!("tail is not a delta")
    };
    assert_eq!(t.base, v0);
    assert_eq!(t.set.len() + t.hosts.len(), 1);
    assert_eq!(t.del.len(), 1);

    // Settings change: no delta can carry it: snapshot (parts, empty tail) and notice.
    sim.advance(ms(1000));
    let from = sim.log.len();
    cluster.ttl = 99;
    sim.desire(&cluster, &[0]);
    sim.advance(ms(100));
    assert_eq!(
        sim.kinds_since(from),
        vec![
            ("part/0".into(), Kind::Part),
            ("tail".into(), Kind::Tail),
            ("delta".into(), Kind::Notice)
        ]
    );
    assert!(sim.log[from + 1].1.payload.is_empty());
    let a = &sim.agents["gw-0000"];
    assert_eq!(
        a.held.as_ref().unwrap().digest(),
        cluster.snapshot("gw-0000").digest()
    );
}

#[test]
fn a_tail_past_the_limit_rewrites_the_snapshot_and_deletes_parts_beyond() {
    let gws = gateways(1);
    let mut sim = Sim::new(&gws, 1, 3);
    // ~4,000 services: more than one part.
    let mut cluster = Cluster::new(8, 4000);
    sim.desire(&cluster, &[0]);
    lead(&mut sim, 0);
    let parts_at_start = sim.log.iter().filter(|(_, p)| p.kind == Kind::Part).count();
    assert!(parts_at_start >= 2, "{parts_at_start} parts");

    // Small changes: tail grows, no snapshot.
    let mut tails = Vec::new();
    let mut k = 0;
    loop {
        sim.advance(ms(1000));
        let from = sim.log.len();
        // Drop 150 services per step (each `del` item is ~40 bytes).
        for _ in 0..150 {
            let key = cluster.services.keys().next().unwrap().clone();
            cluster.services.remove(&key);
        }
        k += 1;
        sim.desire(&cluster, &[0]);
        sim.advance(ms(100));
        let kinds = sim.kinds_since(from);
        if kinds.iter().any(|(_, kd)| *kd == Kind::Part) {
            // The refresh: parts at the current version, empty tail, deletes, then the delta.
            let v = sim.pubs[0].p.version("gw-0000").unwrap();
            let parts: Vec<&Publish> = sim.log[from..]
                .iter()
                .map(|(_, p)| p)
                .filter(|p| p.kind == Kind::Part)
                .collect();
            for p in &parts {
                let Message::Part(pd) = decode_owned(&p.payload).unwrap() else {
                    panic!()
                };
                assert_eq!(pd.version, v);
            }
            assert_eq!(kinds.last().unwrap().1, Kind::Delta);
            let tail = sim.log[from..]
                .iter()
                .find(|(_, p)| p.kind == Kind::Tail)
                .unwrap();
            assert!(tail.1.payload.is_empty());
            assert!(tails.iter().all(|&t| t <= TAIL_REFRESH_BYTES));
            let deletes: Vec<String> = sim.log[from..]
                .iter()
                .filter(|(_, p)| p.kind == Kind::PartDelete)
                .map(|(_, p)| p.topic.clone())
                .collect();
            let expect: Vec<String> = (parts.len()..parts_at_start)
                .map(|k| format!("{PREFIX}/gateways/gw-0000/v2/part/{k}"))
                .collect();
            assert_eq!(deletes, expect);
            assert!(!expect.is_empty(), "the snapshot shrank to fewer parts");
            break;
        }
        let tail = sim.log[from..]
            .iter()
            .find(|(_, p)| p.kind == Kind::Tail)
            .unwrap();
        tails.push(tail.1.payload.len());
        assert!(k < 40, "no refresh after {k} changes");
    }
    // Booting agents read the retained state: it is the current content.
    let mut fresh = Agent {
        online: true,
        ..Agent::default()
    };
    fresh.resync(&sim.retained, "gw-0000");
    assert_eq!(
        fresh.held.unwrap().digest(),
        cluster.snapshot("gw-0000").digest()
    );
    assert_eq!(
        sim.agents["gw-0000"].held.as_ref().unwrap().digest(),
        cluster.snapshot("gw-0000").digest()
    );
}

#[test]
fn nothing_is_published_while_disconnected_or_deposed_and_held_changes_go_out_merged() {
    let gws = gateways(2);
    let mut sim = Sim::new(&gws, 1, 8);
    let mut cluster = Cluster::new(4, 3);
    sim.desire(&cluster, &[0]);
    lead(&mut sim, 0);
    sim.advance(ms(1000));
    let v0 = sim.pubs[0].p.version("gw-0000").unwrap();
    // Three changes while the broker is away: nothing goes out.
    sim.give(0, Input::Disconnected);
    let from = sim.log.len();
    for k in 0..3 {
        cluster
            .services
            .insert(format!("away-{k}"), (30900, vec![k]));
        sim.desire(&cluster, &[0]);
        sim.advance(ms(1000));
    }
    assert_eq!(sim.log.len(), from);
    // Back: one tail and one delta per gateway, carrying all three.
    sim.give(0, Input::Connected);
    sim.advance(ms(100));
    let kinds: Vec<Kind> = sim.log[from..].iter().map(|(_, p)| p.kind).collect();
    assert_eq!(kinds, [Kind::Tail, Kind::Delta, Kind::Tail, Kind::Delta]);
    let Message::Delta(d) = decode_owned(&sim.log[from + 1].1.payload).unwrap() else {
        panic!("not a delta")
    };
    assert_eq!((d.base, d.set.len()), (v0, 3));
    // Deposed: nothing either, whatever comes in.
    sim.give(0, Input::Depose);
    let from = sim.log.len();
    cluster.services.clear();
    cluster.services.insert("last".into(), (30901, vec![0]));
    sim.desire(&cluster, &[0]);
    sim.agents.get_mut("gw-0000").unwrap().want = true;
    sim.report("gw-0000");
    sim.advance(ms(60_000));
    assert_eq!(sim.log.len(), from);
}

#[test]
fn content_breaking_a_rule_is_refused_and_the_agent_keeps_its_zone() {
    let gws = gateways(1);
    let mut sim = Sim::new(&gws, 1, 10);
    let mut cluster = Cluster::new(4, 3);
    sim.desire(&cluster, &[0]);
    lead(&mut sim, 0);
    sim.advance(ms(1000));
    let good = cluster.snapshot("gw-0000");
    let v = sim.pubs[0].p.version("gw-0000");
    // A host beyond the node slots.
    let mut bad = good.clone();
    bad.services[0].hosts = vec![9];
    let from = sim.log.len();
    sim.give(0, Input::Desired(Box::new(bad)));
    sim.advance(ms(1000));
    assert_eq!(sim.log.len(), from);
    let refused = sim.pubs[0].p.take_refused();
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].gateway, "gw-0000");
    assert_eq!(refused[0].error.to_string(), "item 0: invalid `hosts`");
    assert_eq!(sim.pubs[0].p.version("gw-0000"), v);
    assert_eq!(sim.agents["gw-0000"].digest, Some(good.digest()));
    // Good content again goes out.
    cluster.services.get_mut("svc-00000").unwrap().1 = vec![3];
    sim.desire(&cluster, &[0]);
    sim.advance(ms(100));
    assert_eq!(
        sim.agents["gw-0000"].digest,
        Some(cluster.snapshot("gw-0000").digest())
    );
}

#[test]
fn egress_counts_every_message_and_byte_of_a_change() {
    let gws = gateways(10);
    let mut sim = Sim::new(&gws, 1, 9);
    let mut cluster = Cluster::new(4, 3);
    sim.desire(&cluster, &[0]);
    lead(&mut sim, 0);
    sim.advance(ms(1000));
    let before = sim.pubs[0].p.egress();
    let from = sim.log.len();
    cluster.services.get_mut("svc-00001").unwrap().1 = vec![0, 1, 2];
    sim.desire(&cluster, &[0]);
    sim.advance(ms(100));
    let after = sim.pubs[0].p.egress();
    let sum = |k: Kind| -> (u64, u64) {
        sim.log[from..]
            .iter()
            .filter(|(_, p)| p.kind == k)
            .fold((0, 0), |(m, b), (_, p)| (m + 1, b + p.payload.len() as u64))
    };
    let (dm, db) = sum(Kind::Delta);
    let (tm, tb) = sum(Kind::Tail);
    assert_eq!((dm, tm), (10, 10));
    assert_eq!(after.deltas.messages - before.deltas.messages, dm);
    assert_eq!(after.deltas.bytes - before.deltas.bytes, db);
    assert_eq!(after.tails.bytes - before.tails.bytes, tb);
    assert_eq!(after.delivered().bytes - before.delivered().bytes, db);
    assert_eq!(after.versions - before.versions, 10);
    let topics: u64 = sim.log[from..]
        .iter()
        .map(|(_, p)| p.topic.len() as u64)
        .sum();
    assert_eq!(
        after.total().topic_bytes - before.total().topic_bytes,
        topics
    );
}

// ---------------------------------------------------------------------------------------
// Lagging agents

#[test]
fn a_lagging_gateway_is_resynced_alone() {
    let gws = gateways(3);
    let mut sim = Sim::new(&gws, 1, 4);
    let mut cluster = Cluster::new(4, 5);
    sim.desire(&cluster, &[0]);
    lead(&mut sim, 0);
    sim.advance(ms(1000));
    // gw-0001 misses the next delta (lost while connected).
    sim.agents.get_mut("gw-0001").unwrap().online = false;
    cluster.services.get_mut("svc-00000").unwrap().1 = vec![1, 2];
    sim.desire(&cluster, &[0]);
    sim.advance(ms(100));
    sim.agents.get_mut("gw-0001").unwrap().online = true;
    let from = sim.log.len();
    // Its status (sent on reconnect without a resync, as after a lost message) lags.
    sim.report("gw-0001");
    sim.advance(ms(10_000));
    let to: Vec<(String, Kind)> = sim.log[from..]
        .iter()
        .map(|(_, p)| (p.gateway.clone(), p.kind))
        .collect();
    assert_eq!(to, vec![("gw-0001".to_string(), Kind::Notice)]);
    let want = cluster.snapshot("gw-0001").digest();
    assert_eq!(sim.agents["gw-0001"].held.as_ref().unwrap().digest(), want);
    assert_eq!(sim.pubs[0].p.converged_count(), (3, 3));

    // `want`: the broker lost the retained snapshot; only that gateway's is republished, at
    // most once per resync interval.
    sim.retained.retain(|t, _| !t.contains("gw-0002"));
    let from = sim.log.len();
    sim.agents.get_mut("gw-0002").unwrap().want = true;
    sim.report("gw-0002");
    sim.report("gw-0002");
    sim.advance(ms(100));
    let to: Vec<(String, Kind)> = sim.log[from..]
        .iter()
        .map(|(_, p)| (p.gateway.clone(), p.kind))
        .collect();
    assert_eq!(
        to,
        vec![
            ("gw-0002".to_string(), Kind::Part),
            ("gw-0002".to_string(), Kind::Tail)
        ]
    );
    let mut fresh = Agent::default();
    fresh.resync(&sim.retained, "gw-0002");
    assert_eq!(
        fresh.held.unwrap().digest(),
        cluster.snapshot("gw-0002").digest()
    );
}

// ---------------------------------------------------------------------------------------
// Versions at a start or takeover

#[test]
fn versions_at_a_start_come_from_the_statuses() {
    const MAX: u64 = u64::MAX;
    let wall = 1_764_694_800_000u64;
    // (held, holds the desired content, clock offset ms, expected version, notice sent)
    // A start that cannot adopt goes `takeover_jump` (1 h) past `Version::start`.
    const J: u64 = 3_600_000;
    let clock = wall + 500;
    let now = clock + J;
    let cases: &[(Option<u64>, bool, i64, u64, bool)] = &[
        (None, false, 0, now, true),
        (Some(5), false, 0, now, true),
        // The agent holds a version ahead of the clock: past it.
        (Some(clock + 99_999), false, 0, clock + 100_000 + J, true),
        // The agent holds the desired content: its version is adopted, whatever it is.
        (Some(clock + 99_999), true, 0, clock + 99_999, false),
        (Some(5), true, 0, 5, false),
        (Some(MAX), false, 0, now, true),
        (Some(MAX), true, 0, MAX, false),
        // The clock is just below the agent's version at the top: wraps past 0, newer.
        (Some(MAX), false, (MAX - 10 - clock) as i64, J, true),
        // The clock half the serial space away from what the agent holds.
        (Some(clock.wrapping_sub(1 << 62)), false, 0, now, true),
        (
            Some(clock.wrapping_sub((1 << 63) - 10)),
            false,
            0,
            clock.wrapping_sub((1 << 63) - 11) + J,
            true,
        ),
    ];
    for &(held, same, offset, want, notice) in cases {
        let gws = gateways(1);
        let mut sim = Sim::new(&gws, 1, 5);
        sim.pubs[0].clock_offset = offset;
        let cluster = Cluster::new(4, 3);
        let mut held_snap = if same {
            cluster.snapshot("gw-0000")
        } else {
            Cluster::new(4, 2).snapshot("gw-0000")
        };
        if let Some(h) = held {
            held_snap.version = Version(h);
            sim.agents.get_mut("gw-0000").unwrap().set_held(held_snap);
        }
        sim.desire(&cluster, &[0]);
        sim.report("gw-0000");
        lead(&mut sim, 0);
        assert_eq!(
            sim.pubs[0].p.version("gw-0000"),
            Some(Version(want)),
            "{held:?} {same} {offset}"
        );
        let notices = sim
            .log
            .iter()
            .filter(|(_, p)| p.kind == Kind::Notice)
            .count();
        assert_eq!(notices, usize::from(notice), "{held:?} {same}");
        let deltas = sim
            .log
            .iter()
            .filter(|(_, p)| p.kind == Kind::Delta)
            .count();
        assert_eq!(deltas, 0);
        let a = &sim.agents["gw-0000"];
        assert_eq!(a.held.as_ref().unwrap().version, Version(want));
        assert_eq!(
            a.held.as_ref().unwrap().digest(),
            cluster.snapshot("gw-0000").digest()
        );
    }
}

#[test]
fn a_clock_stepping_back_never_moves_versions_back() {
    let gws = gateways(1);
    let mut sim = Sim::new(&gws, 1, 6);
    let mut cluster = Cluster::new(4, 3);
    sim.desire(&cluster, &[0]);
    lead(&mut sim, 0);
    let mut last = sim.pubs[0].p.version("gw-0000").unwrap();
    for (k, step) in [-3_600_000i64, 0, -1, 5].into_iter().enumerate() {
        sim.pubs[0].clock_offset += step;
        sim.advance(ms(1000));
        cluster
            .services
            .insert(format!("step-{k}"), (30500, vec![1]));
        sim.desire(&cluster, &[0]);
        sim.advance(ms(100));
        let v = sim.pubs[0].p.version("gw-0000").unwrap();
        assert!(v.is_newer_than(last), "{v} after {last}");
        last = v;
    }
    let a = &sim.agents["gw-0000"];
    assert_eq!(a.held.as_ref().unwrap().version, last);
}

#[test]
fn a_status_newer_than_the_stream_is_adopted_or_overtaken() {
    let gws = gateways(1);
    let mut sim = Sim::new(&gws, 1, 7);
    let cluster = Cluster::new(4, 3);
    sim.desire(&cluster, &[0]);
    lead(&mut sim, 0);
    let v = sim.pubs[0].p.version("gw-0000").unwrap();
    // The agent reports a newer version with the same content: adopted, nothing to it.
    let from = sim.log.len();
    sim.agents
        .get_mut("gw-0000")
        .unwrap()
        .held
        .as_mut()
        .unwrap()
        .version = Version(v.0 + 1000);
    sim.report("gw-0000");
    sim.advance(ms(5000));
    assert_eq!(sim.pubs[0].p.version("gw-0000"), Some(Version(v.0 + 1000)));
    assert!(sim.log[from..]
        .iter()
        .all(|(_, p)| p.kind == Kind::Tail || p.kind == Kind::Part));
    // With other content: after the grace, a snapshot past it and a notice.
    let mut other = Cluster::new(4, 2).snapshot("gw-0000");
    other.version = Version(v.0 + 5000);
    sim.agents.get_mut("gw-0000").unwrap().set_held(other);
    let from = sim.log.len();
    sim.report("gw-0000");
    sim.advance(ms(1000));
    assert_eq!(sim.log.len(), from, "waits out the grace");
    sim.advance(ms(2000));
    let v2 = sim.pubs[0].p.version("gw-0000").unwrap();
    assert!(v2.is_newer_than(Version(v.0 + 5000)));
    assert!(sim.log[from..].iter().any(|(_, p)| p.kind == Kind::Notice));
    let a = &sim.agents["gw-0000"];
    assert_eq!(
        a.held.as_ref().unwrap().digest(),
        cluster.snapshot("gw-0000").digest()
    );
}

// ---------------------------------------------------------------------------------------
// Two publishers

/// A takeover while the deposed leader's messages are still on their way (delayed by up to
/// seconds, its clock ahead or behind), or while it keeps publishing not knowing it lost:
/// every agent only ever moves to newer desired content, and ends on the latest.
///
/// The limit (docs/discovery.md): the new leader's first versions pass the old leader's
/// messages in flight when the agents report a version of the old stream or the clocks differ
/// by less than the time since the old leader started; here the old leader led 2 s, or
/// 120 s when the clocks differ by a minute.
#[test]
fn two_publishers_never_move_an_agent_back_to_older_content() {
    // (seed, clock of the new leader minus the old one's in ms, delay of the old one's
    // messages in ms, the old one keeps publishing after the takeover, it led for ms first)
    let cases: &[(u64, i64, u64, bool, u64)] = &[
        (11, 0, 0, false, 0),
        (12, 3_000, 50, false, 0),
        (13, -3_000, 300, false, 0),
        (14, -60_000, 5_000, false, 120_000),
        (15, 0, 0, true, 0),
        (16, 3_000, 50, true, 0),
        (17, -3_000, 300, true, 0),
        (18, -60_000, 20, true, 120_000),
    ];
    for &(seed, skew, delay, keeps, led) in cases {
        let gws = gateways(20);
        let mut sim = Sim::new(&gws, 2, seed);
        sim.pubs[0].delay = ms(delay);
        sim.pubs[1].clock_offset = skew;
        let mut cluster = Cluster::new(6, 10);
        let mut rng = Rng::new(seed);
        let mut history: Vec<Cluster> = vec![cluster.clone()];
        sim.desire(&cluster, &[0, 1]);
        lead(&mut sim, 0);
        sim.advance(ms(led));
        for step in 0..40 {
            if step == 10 {
                sim.give(1, Input::Lead);
                if !keeps {
                    sim.give(0, Input::Depose);
                }
            }
            cluster.change(&mut rng);
            history.push(cluster.clone());
            sim.desire(&cluster, &[0, 1]);
            sim.advance(ms(rng.below(400) as u64));
        }
        sim.give(0, Input::Depose);
        sim.advance(ms(60_000));
        let mut conflicts = 0;
        for (gw, a) in &sim.agents {
            let digests: Vec<Digest> = history.iter().map(|c| c.snapshot(gw).digest()).collect();
            let mut at = 0;
            for d in &a.served {
                let i = digests[at..]
                    .iter()
                    .position(|x| x == d)
                    .unwrap_or_else(|| {
                        let idx: Vec<Option<usize>> = a
                            .served
                            .iter()
                            .map(|d| digests.iter().position(|x| x == d))
                            .collect();
                        panic!(
                            "case {seed}: {gw} served {d}, not newer desired content: {idx:?} {:?}",
                            a.versions
                        )
                    });
                at += i;
            }
            assert_eq!(a.served.last(), digests.last(), "case {seed}: {gw}");
            conflicts += a.conflicts;
        }
        // Only two publishers alive at once can make one version twice (the agent refuses
        // the second and reports it).
        if !keeps {
            assert_eq!(conflicts, 0, "case {seed}");
        }
        assert_eq!(sim.pubs[1].p.converged_count(), (20, 20), "case {seed}");
    }
}

// ---------------------------------------------------------------------------------------
// Scale

/// 2,000 gateways, 50 random changes (seeded), agents that go offline for a while and lose
/// messages: every agent converges to the desired digest. Prints the egress per change.
#[test]
fn two_thousand_gateways_converge_through_fifty_changes() {
    let n: usize = std::env::var("PUBLISH_GATEWAYS").map_or(2000, |v| v.parse().unwrap());
    let gws = gateways(n);
    let mut sim = Sim::new(&gws, 1, 42);
    sim.keep_log = false;
    sim.loss = 1;
    let mut rng = Rng::new(42);
    let mut cluster = Cluster::new(12, 20);
    sim.desire(&cluster, &[0]);
    lead(&mut sim, 0);
    let mut offline: Vec<String> = Vec::new();
    let mut per_change = Vec::new();
    for _ in 0..50 {
        // Some agents go away, some come back.
        for _ in 0..20 {
            let gw = rng.pick(&gws).clone();
            if !offline.contains(&gw) {
                sim.set_online(&gw, false);
                offline.push(gw);
            }
        }
        if offline.len() > 100 {
            for gw in offline.drain(..50).collect::<Vec<_>>() {
                sim.set_online(&gw, true);
            }
        }
        let before = sim.pubs[0].p.egress();
        cluster.change(&mut rng);
        sim.desire(&cluster, &[0]);
        sim.advance(ms(300 + rng.below(2000) as u64));
        let after = sim.pubs[0].p.egress();
        per_change.push((
            after.delivered().messages - before.delivered().messages,
            after.delivered().bytes - before.delivered().bytes,
            after.total().bytes - before.total().bytes,
        ));
    }
    for gw in std::mem::take(&mut offline) {
        sim.set_online(&gw, true);
    }
    sim.advance(ms(60_000));
    for (gw, a) in &sim.agents {
        assert_eq!(
            a.held.as_ref().map(Snapshot::digest),
            Some(cluster.snapshot(gw).digest()),
            "{gw}: {:?} {:?} {:?}",
            a.versions,
            a.status(),
            sim.pubs[0].p.convergence(gw)
        );
    }
    assert_eq!(sim.pubs[0].p.converged_count(), (n, n));
    let e = sim.pubs[0].p.egress();
    let max_delivered = per_change.iter().map(|c| c.1).max().unwrap();
    println!(
        "egress: {} versions, {} snapshots; deltas {} msgs {} B, notices {} msgs {} B, parts {} msgs {} B, tails {} msgs {} B",
        e.versions,
        e.snapshots,
        e.deltas.messages,
        e.deltas.bytes,
        e.notices.messages,
        e.notices.bytes,
        e.parts.messages,
        e.parts.bytes,
        e.tails.messages,
        e.tails.bytes
    );
    println!("per change (delivered msgs, delivered bytes, all bytes): {per_change:?}");
    println!("largest delivered per change: {max_delivered} B");
}

#[test]
fn statuses_of_gateways_without_content_are_bounded() {
    let t0 = Instant::now();
    let now = |ms: u64| Now {
        mono: t0 + ms_d(ms),
        wall_ms: 1_764_694_800_000 + ms,
    };
    fn ms_d(n: u64) -> Duration {
        Duration::from_millis(n)
    }
    let mut p = Publisher::new(Config {
        max_unknown: 10,
        ..cfg()
    });
    p.handle(now(0), Input::Connected);
    p.handle(now(0), Input::Lead);
    p.handle(now(600), Input::Tick);
    let status = AgentStatus {
        held: Some(Version(7)),
        digest: Some(Digest(1)),
        want_snapshot: true,
        online: true,
    };
    // A flood of statuses from made-up gateway ids: at most 10 are followed, and none gets
    // anything published.
    for i in 0..10_000u64 {
        let out = p.handle(
            now(600 + i),
            Input::Status {
                gateway: format!("made-up-{i}"),
                status: Some(status),
            },
        );
        assert!(out.publishes.is_empty());
    }
    assert_eq!(p.gateways(), 10);
    // A deleted status of a gateway without content forgets it.
    p.handle(
        now(20_000),
        Input::Status {
            gateway: "made-up-0".into(),
            status: None,
        },
    );
    assert_eq!(p.gateways(), 9);
    // A planned gateway is still served in full, status and all.
    let snap = Cluster::new(4, 3).snapshot("gw-real");
    let out = p.handle(now(20_001), Input::Desired(Box::new(snap)));
    assert!(out.publishes.iter().any(|x| x.kind == Kind::Notice));
    assert_eq!(p.gateways(), 10);
    p.handle(
        now(20_002),
        Input::Status {
            gateway: "gw-real".into(),
            status: Some(status),
        },
    );
    assert_eq!(p.convergence("gw-real").unwrap().reported, Some(status));
}

#[path = "../../../bench/plan/synthetic.rs"]
#[allow(dead_code)]
mod synthetic;

/// The controller's publishers keep the planner's shared forms (`sdwan_plan::v2::Zone`,
/// `sdwan_plan::proxy_v2::WorkerProxy`, planned again with `next`); through a random run of
/// cluster changes (endpoints moving, services added and losing their endpoints, workers
/// going NotReady and back) they publish exactly the messages, in the same order, that the
/// same publisher publishes from owned snapshots: the wire is unchanged.
#[test]
fn shared_content_publishes_the_same_messages_as_owned_snapshots() {
    use sdwan_contract::v2::proxy::ProxySnapshot;
    use sdwan_plan::proxy_v2::WorkerProxy;
    use sdwan_plan::v2::Zone;
    use sdwan_plan::{Change, Planner, Snapshot as Cluster, Topology};
    use synthetic::{node, service, slice};

    let nodes = 12;
    let mut rng = Rng::new(20261203);
    let mut cluster = Cluster::new();
    for i in 0..nodes {
        cluster.apply_node(&node(i, i % 3 == 0, true)).unwrap();
    }
    let svc = |s: usize| (format!("team-{}", s % 4), format!("svc-{s:03}"));
    for s in 0..40 {
        let (ns, name) = svc(s);
        cluster
            .apply_service(&service(&ns, &name, 1 + s % 2, s))
            .unwrap();
        cluster
            .apply_slice(&slice(&ns, &name, &[s % nodes, (s * 7 + 3) % nodes]))
            .unwrap();
    }
    let topology = Topology::from_toml(
        "[[gateway]]\nid = \"gw-a\"\nzone = \"zone-01\"\n\
         [[gateway]]\nid = \"gw-b\"\nzone = \"zone-02\"\nnear = [\"worker0007\"]\n\
         [[gateway]]\nid = \"gw-c\"\nfamily = \"ipv6\"\n",
    )
    .unwrap();
    let mut planner = Planner::new(cluster, topology);
    let cfg = Config {
        status_wait: Duration::ZERO,
        ..Config::default()
    };
    let mut owned: Publisher<Snapshot> = Publisher::new(cfg.clone());
    let mut shared: Publisher<Zone> = Publisher::new(cfg.clone());
    let mut owned_p: Publisher<ProxySnapshot> = Publisher::new(cfg.clone());
    let mut shared_p: Publisher<WorkerProxy> = Publisher::new(cfg);
    let t0 = Instant::now();
    let at = |ms: u64| Now {
        mono: t0 + Duration::from_millis(ms),
        wall_ms: 1_764_694_800_000 + ms,
    };
    fn start<C: sdwan_discovery::publish::Content>(p: &mut Publisher<C>, now: Now) {
        p.handle(now, Input::Connected);
        p.handle(now, Input::Lead);
    }
    start(&mut owned, at(0));
    start(&mut shared, at(0));
    start(&mut owned_p, at(0));
    start(&mut shared_p, at(0));
    let mut zones = sdwan_plan::v2::zones(planner.snapshot(), planner.topology());
    let mut proxies = sdwan_plan::proxy_v2::proxies(planner.snapshot(), planner.plan());
    let mut added = 40;
    for step in 0..120u64 {
        // Some steps within the quiet time of the one before: held, merged, sent by a tick.
        let now = at(step * 500 + if step % 5 == 1 { 10 } else { 0 });
        if step > 0 {
            let change = match rng.below(5) {
                0 | 1 => {
                    let (ns, name) = svc(rng.below(added));
                    let to = [rng.below(nodes), rng.below(nodes)];
                    Change::Slice(Box::new(slice(&ns, &name, &to)))
                }
                2 => {
                    let (ns, name) = svc(added);
                    added += 1;
                    Change::Service(Box::new(service(&ns, &name, 1, added)))
                }
                3 => {
                    let (ns, name) = svc(rng.below(added));
                    Change::Slice(Box::new(slice(&ns, &name, &[])))
                }
                _ => {
                    let i = rng.below(nodes);
                    Change::Node(Box::new(node(i, i % 3 == 0, rng.chance(50))))
                }
            };
            planner.update([change]);
            zones = zones.next(planner.snapshot(), planner.topology());
            proxies = proxies.next(planner.snapshot(), planner.plan());
        }
        for gw in zones.gateways() {
            let a = owned.handle(
                now,
                Input::Desired(Box::new(zones.snapshot(gw, Version(0)).unwrap())),
            );
            let b = shared.handle(
                now,
                Input::Desired(Box::new(zones.zone(gw, Version(0)).unwrap())),
            );
            assert_eq!(a.publishes, b.publishes, "{gw}, step {step}");
            assert_eq!(a.timer, b.timer);
        }
        for i in 0..nodes {
            let n = format!("worker{i:04}");
            let (a, b) = match proxies.snapshot(&n, Version(0)) {
                Some(s) => (
                    owned_p.handle(now, Input::Desired(Box::new(s))),
                    shared_p.handle(
                        now,
                        Input::Desired(Box::new(proxies.proxy(&n, Version(0)).unwrap())),
                    ),
                ),
                None => (
                    owned_p.handle(now, Input::Forget(n.clone())),
                    shared_p.handle(now, Input::Forget(n.clone())),
                ),
            };
            assert_eq!(a.publishes, b.publishes, "{n}, step {step}");
        }
        // What was held back goes out on the tick.
        let tick = at(step * 500 + 400);
        assert_eq!(
            owned.handle(tick, Input::Tick).publishes,
            shared.handle(tick, Input::Tick).publishes
        );
        assert_eq!(
            owned_p.handle(tick, Input::Tick).publishes,
            shared_p.handle(tick, Input::Tick).publishes
        );
    }
    let (e, ep) = (shared.egress(), shared_p.egress());
    assert!(
        e.deltas.messages > 200 && ep.deltas.messages > 400,
        "{e:?} {ep:?}"
    );
}
