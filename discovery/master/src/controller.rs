//! The control loop: watch messages in, bursts coalesced (an isolated change is planned at
//! once), one plan per burst. Gateways get payload v2 (`docs/payload-v2.md`) through the pure
//! [`Publisher`]: the controller feeds it each gateway's desired content when it changed,
//! the agents' statuses, the connection, the leadership and its timer, and carries out the
//! publishes it returns (retained or not, QoS 1). Workers get proxy payload v2 the same way,
//! through a second [`Publisher`] over [`WorkerProxy`] (`sdwan_plan::proxy_v2`). A start
//! or takeover reads the retained status documents (gateways' and workers'), never zones or
//! proxies. Convergence compares content: a gateway or worker is converged when the digest it
//! reports is the desired content's.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;
use std::time::{Duration, Instant};

use sdwan_contract::v2::{Digest, Version};
use sdwan_link::rumqttc::{self, AsyncClient, EventLoop, QoS, SubscribeFilter};
use sdwan_link::{State, Status, TopicKind, Topics};
use sdwan_plan::proxy_v2::{Proxies, WorkerProxy};
use sdwan_plan::v2::Zone;
use sdwan_plan::{Change, Planner, Snapshot, Topology};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use crate::leader::Leadership;
use crate::metrics::{parse_digest, SharedMetrics};
use crate::publish::{self, AgentStatus, Content, Input, Kind, Now, Publisher};
use crate::watch::{Resource, WatchMsg};

/// What the MQTT event loop task reports.
#[derive(Debug)]
pub enum Inbound {
    /// Connected (again).
    Connected,
    /// A subscription was acknowledged.
    SubAck,
    /// A message on a subscribed topic.
    Publish {
        /// Topic.
        topic: String,
        /// Payload.
        payload: bytes::Bytes,
    },
    /// The connection failed or dropped; the loop reconnects with backoff.
    Disconnected(String),
}

/// Publishes the controller handed to the MQTT client and those the broker acknowledged, and
/// those planned but not handed over yet, so a shutdown can say what it abandons.
#[derive(Debug, Default)]
pub struct PublishCounts {
    /// Handed to the client (queued for the event loop).
    pub queued: AtomicU64,
    /// Acknowledged by the broker (PUBACK).
    pub acked: AtomicU64,
    /// Of the current flush, not handed to the client yet.
    pub unqueued: AtomicU64,
}

impl PublishCounts {
    /// Publishes planned or queued that the broker has not acknowledged.
    pub fn pending(&self) -> u64 {
        let queued = self.queued.load(Ordering::Relaxed);
        let acked = self.acked.load(Ordering::Relaxed);
        queued.saturating_sub(acked) + self.unqueued.load(Ordering::Relaxed)
    }
}

/// Polls the rumqttc event loop forever, reconnecting with backoff (which starts over only
/// after a connection stayed up [`sdwan_link::backoff::STABLE_AFTER`], issue 12: a broker
/// that drops the master right after each CONNACK, for example for a payload over its size
/// limit, must not get a reconnect storm). Counts the broker's PUBACKs into `counts`.
pub async fn mqtt_loop(
    mut el: EventLoop,
    tx: UnboundedSender<Inbound>,
    counts: Arc<PublishCounts>,
) {
    let mut backoff = sdwan_link::Backoff::with_seed(u64::from(std::process::id()));
    let max_packet = el.mqtt_options.max_packet_size();
    loop {
        let msg = match el.poll().await {
            Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => {
                backoff.connected(Instant::now());
                Inbound::Connected
            }
            Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_))) => Inbound::SubAck,
            Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) => {
                counts.acked.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => Inbound::Publish {
                topic: p.topic,
                payload: p.payload,
            },
            Ok(_) => continue,
            Err(e) => {
                let (delay, up) = backoff.disconnected(Instant::now());
                let mut reason = sdwan_link::options::describe_error(&e, max_packet);
                if let Some(up) = up {
                    reason = format!(
                        "{reason} (connection was up {:.1} s; reconnecting in {:.1} s)",
                        up.as_secs_f64(),
                        delay.as_secs_f64()
                    );
                }
                let _ = tx.send(Inbound::Disconnected(reason));
                tokio::time::sleep(delay).await;
                continue;
            }
        };
        if tx.send(msg).is_err() {
            return;
        }
    }
}

/// Timing of burst coalescing.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// A burst ends after this much quiet; the first event after this much quiet is planned
    /// at once (an isolated change waits for nothing). Also the publisher's `quiet`.
    pub debounce: Duration,
    /// A burst never delays a plan longer than this after its first event.
    pub max_delay: Duration,
    /// Longest wait for the retained statuses at start.
    pub retained_wait: Duration,
}

/// Where the cluster comes from.
#[derive(Debug)]
pub enum Source {
    /// Watch messages.
    Watch(UnboundedReceiver<WatchMsg>),
    /// A fixed snapshot (`run --cluster-file`).
    Static(Box<Snapshot>),
}

/// The controller state.
#[derive(Debug)]
pub struct Controller {
    topics: Topics,
    client: AsyncClient,
    metrics: SharedMetrics,
    timing: Timing,
    topology: Topology,
    planner: Option<Planner>,
    /// Complete lists received before all three resources were listed once.
    initial: BTreeMap<Resource, Vec<Change>>,
    /// Workers whose proxy content may have changed since the last plan.
    dirty_nodes: BTreeSet<String>,
    /// The last proxy plan (its node slots: when they change, every worker is planned).
    proxies: Option<Proxies>,
    /// The gateways' payload v2 publisher (pure; this controller does its I/O).
    publisher: Publisher<Zone>,
    /// When the publisher asked to be called again.
    publisher_timer: Option<Instant>,
    /// The workers' proxy payload v2 publisher.
    proxy_publisher: Publisher<WorkerProxy>,
    /// When the proxy publisher asked to be called again.
    proxy_timer: Option<Instant>,
    /// The gateways' content last handed to the publisher.
    v2: Option<sdwan_plan::v2::Zones>,
    /// The topology's gateway ids: statuses of others are not followed.
    gateway_ids: HashSet<String>,
    burst_start: Option<Instant>,
    /// The current burst is planned at once: it began after a quiet of at least `debounce`,
    /// or it follows an at-once plan that published nothing.
    burst_now: bool,
    /// The last plan was made at once and published nothing, and no follow-up was planned
    /// at once since the last quiet: the next event may be planned at once too (a Service
    /// created after its EndpointSlice: the first event alone changes no content).
    follow_up: bool,
    /// A follow-up was planned at once since the last quiet.
    follow_up_used: bool,
    last_event: Instant,
    logged_warnings: HashSet<String>,
    /// Status topics whose last document was refused: each is warned about once, until a
    /// good document arrives on it (one gateway sending garbage must not flood the log).
    refused_status: HashSet<String>,
    connected: bool,
    /// Who may publish; `leading` is this controller's view, taken (after reading the retained
    /// payloads) when the election says so.
    leadership: Leadership,
    leading: bool,
    counts: Arc<PublishCounts>,
}

/// Distinct warnings remembered (and so logged) at most: a flood of new causes (statuses from
/// made-up gateway ids) can neither fill the log nor the memory.
const MAX_LOGGED_WARNINGS: usize = 10_000;

/// The warning for a status from gateway `id`, which the topology does not name; once
/// `logged` warnings were kept, one summary line stands for every further unknown gateway.
fn unknown_gateway_warning(id: &str, logged: usize) -> String {
    if logged + 1 >= MAX_LOGGED_WARNINGS {
        return "status from more gateways the topology does not name: not logged".to_string();
    }
    format!(
        "status from gateway {id:?}, which the topology does not name: it gets no zone (add a \
         [[gateway]] with id = {id:?}, or check the agent's --gateway-id)"
    )
}

/// Warnings about the topology against the cluster: a gateway `zone` that no node carries in
/// its `topology.kubernetes.io/zone` label (a typo, or a zone not labelled yet), so that
/// gateway's nearness falls back to its `near` list and then to every worker.
fn zone_warnings(topology: &Topology, snapshot: &Snapshot) -> Vec<String> {
    let carried: HashSet<&str> = snapshot
        .nodes()
        .values()
        .filter_map(|n| n.zone.as_deref())
        .collect();
    topology
        .gateways
        .iter()
        .filter_map(|g| {
            let zone = g.zone.as_deref()?;
            (!carried.contains(zone)).then(|| {
                format!(
                    "topology: gateway {}: zone {zone:?} is carried by no node (label \
                     topology.kubernetes.io/zone): its nearness falls back to near, then every worker",
                    g.id
                )
            })
        })
        .collect()
}

/// Logs `text` as a warning the first time it is seen (a cause is logged once, however often
/// it recurs), remembering at most [`MAX_LOGGED_WARNINGS`].
fn warn_once(logged: &mut HashSet<String>, text: String) {
    if logged.len() < MAX_LOGGED_WARNINGS && !logged.contains(&text) {
        log::warn!("{text}");
        logged.insert(text);
    }
}

impl Controller {
    /// A controller publishing through `client` under `topics`.
    pub fn new(
        topics: Topics,
        client: AsyncClient,
        metrics: SharedMetrics,
        timing: Timing,
        topology: Topology,
    ) -> Controller {
        if topology.gateways.is_empty() {
            log::warn!("topology: no [[gateway]]: no zone will be published to any gateway");
        }
        let gateway_ids: HashSet<String> = topology.gateways.iter().map(|g| g.id.clone()).collect();
        let config = publish::Config {
            prefix: topics.prefix().to_string(),
            quiet: timing.debounce,
            max_delay: timing.max_delay,
            // The controller reads the retained statuses before it says Lead.
            status_wait: Duration::ZERO,
            max_unknown: gateway_ids.len() + 64,
            ..publish::Config::default()
        };
        let proxy_publisher = Publisher::new(publish::Config {
            // Workers are not in the topology: at most one per node slot, and a margin.
            max_unknown: sdwan_contract::v2::MAX_NODES + 64,
            ..config.clone()
        });
        let publisher = Publisher::new(config);
        Controller {
            topics,
            client,
            metrics,
            timing,
            topology,
            planner: None,
            initial: BTreeMap::new(),
            dirty_nodes: BTreeSet::new(),
            proxies: None,
            publisher,
            publisher_timer: None,
            proxy_publisher,
            proxy_timer: None,
            v2: None,
            gateway_ids,
            burst_start: None,
            burst_now: false,
            follow_up: false,
            follow_up_used: false,
            // So that the first event is planned at once.
            last_event: Instant::now() - timing.debounce,
            logged_warnings: HashSet::new(),
            refused_status: HashSet::new(),
            connected: false,
            leadership: Leadership::always(),
            leading: true,
            counts: Arc::default(),
        }
    }

    /// The publish counters this controller updates (give them to [`mqtt_loop`]).
    pub fn publish_counts(&self) -> Arc<PublishCounts> {
        self.counts.clone()
    }

    /// Publishes only while `leadership` says this replica leads (leader election).
    pub fn with_leadership(mut self, leadership: Leadership) -> Controller {
        self.leading = !leadership.elects();
        {
            let mut m = self.metrics.lock().unwrap();
            m.leader_election = leadership.elects();
            m.leader = self.leading;
        }
        self.leadership = leadership;
        self
    }

    /// Leading now: the controller took the leadership and the election still grants it.
    fn may_publish(&self) -> bool {
        self.leading && self.leadership.is_leader(Instant::now())
    }

    /// Follows the election: on losing it, forget what was published (a later leadership
    /// starts from the retained statuses again); on winning it, read the retained statuses
    /// first, so that versions follow what the agents hold, then publish everything.
    async fn follow_leadership(&mut self, inbound: &mut UnboundedReceiver<Inbound>) {
        let leader = self.leadership.is_leader(Instant::now());
        if leader == self.leading {
            return;
        }
        if !leader {
            self.leading = false;
            self.metrics.lock().unwrap().leader = false;
            self.drive_both(|| Input::Depose, || Input::Depose).await;
            log::warn!("leadership lost: not publishing");
            return;
        }
        log::info!("leadership taken: reading the retained statuses before publishing");
        self.read_retained(inbound).await;
        self.leading = true;
        self.metrics.lock().unwrap().leader = true;
        self.drive_both(|| Input::Lead, || Input::Lead).await;
        self.mark_all();
        if self.planner.is_some() {
            self.note_event(Instant::now());
        }
    }

    /// The time for the publisher: monotonic, and the wall clock in milliseconds (versions).
    fn now() -> Now {
        let wall_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Now {
            mono: Instant::now(),
            wall_ms,
        }
    }

    /// Hands an input made by `gateways` to the gateways' publisher and one made by `nodes`
    /// to the workers' (connection and leadership events, ticks).
    async fn drive_both(
        &mut self,
        gateways: impl FnOnce() -> Input<Zone>,
        nodes: impl FnOnce() -> Input<WorkerProxy>,
    ) {
        self.drive(gateways(), None).await;
        self.drive(nodes(), None).await;
    }

    /// Hands `input` to the publisher of its kind of stream and carries out what it returns:
    /// the publishes, in order (QoS 1, retained as it says), the next timer, the convergence
    /// metrics of the streams concerned. `burst`: the first event of the burst this input
    /// comes from.
    async fn drive<C: Driven>(&mut self, input: Input<C>, burst: Option<Instant>) {
        let what = C::KIND;
        let gateway = what == "gateway";
        let mut touched: BTreeSet<String> = BTreeSet::new();
        match &input {
            Input::Desired(s) => {
                touched.insert(s.id().to_string());
            }
            Input::Status { gateway, .. } | Input::Forget(gateway) => {
                touched.insert(gateway.clone());
            }
            _ => {}
        }
        let before = C::publisher(self).egress().versions;
        let out = C::publisher(self).handle(Self::now(), input);
        *C::timer(self) = out.timer;
        for r in C::publisher(self).take_refused() {
            log::error!(
                "{what} {}: content refused by the payload v2 encoder, not published (the \
                 agent keeps what it has): {}",
                r.gateway,
                r.error
            );
        }
        let versions = C::publisher(self).egress().versions - before;
        // The metrics learn the desired content before it goes out: an agent that applies it
        // at once is never compared with the content before.
        let now = Instant::now();
        let mut sent: BTreeSet<&str> = BTreeSet::new();
        for p in &out.publishes {
            touched.insert(p.gateway.clone());
            if matches!(p.kind, Kind::Delta | Kind::Part) {
                sent.insert(&p.gateway);
            }
        }
        {
            let publisher = C::publisher(self);
            let convergence: Vec<(&String, publish::Convergence)> = touched
                .iter()
                .filter_map(|gw| Some((gw, publisher.convergence(gw)?)))
                .collect();
            let mut m = self.metrics.lock().unwrap();
            if gateway {
                m.published_zones += versions;
            } else {
                m.published_proxies += versions;
            }
            for (gw, c) in convergence {
                let published = sent.contains(gw.as_str()).then_some(now);
                if published.is_some() && c.version.is_some() {
                    if let Some(start) = burst {
                        m.event_to_publish
                            .observe(now.saturating_duration_since(start));
                    }
                    log::info!(
                        "{what} {gw}: publishing version {} (digest {:016x})",
                        c.version.map_or("none".into(), |v| v.0.to_string()),
                        c.desired.0
                    );
                }
                m.desired_v2(
                    gateway,
                    gw,
                    c.version.map(|v| v.0),
                    c.published.map(|v| v.0),
                    c.desired.0,
                    published,
                );
            }
        }
        drop(sent);
        let total = out.publishes.len();
        self.counts.unqueued.store(total as u64, Ordering::Relaxed);
        for (i, p) in out.publishes.into_iter().enumerate() {
            if !self.may_publish() {
                log::warn!(
                    "leadership ended: {} and {} more not published",
                    p.topic,
                    total - i - 1
                );
                break;
            }
            let len = p.payload.len();
            let kind = match p.kind {
                Kind::Part => "part",
                Kind::PartDelete => "part_delete",
                Kind::Tail => "tail",
                Kind::Delta => "delta",
                Kind::Notice => "notice",
            };
            let queued = self
                .client
                .publish(p.topic.clone(), QoS::AtLeastOnce, p.retain, p.payload)
                .await;
            self.counts.unqueued.fetch_sub(1, Ordering::Relaxed);
            if let Err(e) = queued {
                log::error!("mqtt: cannot queue {}: {e}", p.topic);
                continue;
            }
            self.counts.queued.fetch_add(1, Ordering::Relaxed);
            log::debug!("published {} ({len} bytes)", p.topic);
            self.metrics.lock().unwrap().published_v2(kind, len);
        }
        self.counts.unqueued.store(0, Ordering::Relaxed);
    }

    async fn subscribe(&self) {
        let filters = vec![
            SubscribeFilter::new(
                format!("{}/gateways/+/status", self.topics.prefix()),
                QoS::AtLeastOnce,
            ),
            SubscribeFilter::new(
                format!("{}/nodes/+/status", self.topics.prefix()),
                QoS::AtLeastOnce,
            ),
        ];
        if let Err(e) = self.client.subscribe_many(filters).await {
            log::error!("mqtt: subscribe failed: {e}");
        }
    }

    /// Reads what the broker retains for a start or takeover: the status documents of
    /// gateways and workers (what each agent holds: version and digest), never zones or
    /// proxies. Waits for the connection as
    /// long as it takes, then for the retained messages at most `retained_wait` (they arrive
    /// right after the subscription is acknowledged; 150 ms of quiet after that ends the wait
    /// early). The bytes read are logged and kept in the metrics.
    pub async fn read_retained(&mut self, inbound: &mut UnboundedReceiver<Inbound>) {
        let quiet = Duration::from_millis(150);
        let started = Instant::now();
        let mut acked_at: Option<tokio::time::Instant> = None;
        let mut deadline: Option<tokio::time::Instant> = None;
        let (mut statuses, mut status_bytes) = (0u64, 0u64);
        let (mut node_statuses, mut node_status_bytes) = (0u64, 0u64);
        if self.connected {
            // Taking over as leader: connected already.
            self.subscribe().await;
            deadline = Some(tokio::time::Instant::now() + self.timing.retained_wait);
        }
        loop {
            let wake = match (acked_at, deadline) {
                (Some(a), Some(d)) => Some((a + quiet).min(d)),
                (None, Some(d)) => Some(d),
                _ => None,
            };
            let msg = tokio::select! {
                m = inbound.recv() => m,
                _ = tokio::time::sleep_until(wake.unwrap_or_else(tokio::time::Instant::now)), if wake.is_some() => break,
            };
            let Some(msg) = msg else { break };
            match msg {
                Inbound::Connected => {
                    self.on_connected().await;
                    self.subscribe().await;
                    deadline = Some(tokio::time::Instant::now() + self.timing.retained_wait);
                }
                Inbound::SubAck => acked_at = Some(tokio::time::Instant::now()),
                Inbound::Publish { topic, payload } => {
                    if acked_at.is_some() {
                        acked_at = Some(tokio::time::Instant::now());
                    }
                    match self.topics.parse(&topic) {
                        Some(TopicKind::NodeStatus(_)) => {
                            node_statuses += 1;
                            node_status_bytes += payload.len() as u64;
                            self.on_status(&topic, &payload).await;
                        }
                        Some(TopicKind::GatewayStatus(_)) => {
                            statuses += 1;
                            status_bytes += payload.len() as u64;
                            self.on_status(&topic, &payload).await;
                        }
                        _ => self.on_status(&topic, &payload).await,
                    }
                }
                Inbound::Disconnected(e) => self.on_disconnected(&e).await,
            }
        }
        {
            let mut m = self.metrics.lock().unwrap();
            m.start_statuses = statuses;
            m.start_status_bytes = status_bytes;
            m.start_node_statuses = node_statuses;
            m.start_node_status_bytes = node_status_bytes;
        }
        log::info!(
            "start: read {statuses} retained gateway statuses ({status_bytes} bytes; no zones) \
             and {node_statuses} retained worker statuses ({node_status_bytes} bytes; no \
             proxies) in {:.0} ms",
            started.elapsed().as_secs_f64() * 1e3
        );
    }

    async fn on_connected(&mut self) {
        self.connected = true;
        self.metrics.lock().unwrap().broker_connected = true;
        log::info!("mqtt: connected");
        self.drive_both(|| Input::Connected, || Input::Connected)
            .await;
    }

    async fn on_disconnected(&mut self, e: &str) {
        if self.connected {
            log::warn!("mqtt: connection lost: {e}");
        } else {
            log::warn!("mqtt: cannot connect: {e}");
        }
        self.connected = false;
        self.metrics.lock().unwrap().broker_connected = false;
        self.drive_both(|| Input::Disconnected, || Input::Disconnected)
            .await;
    }

    /// Gateway `name`'s view of the workers (issue 14) into the metrics; logs what changed.
    fn note_reach(&mut self, name: &str, reach: Option<&sdwan_link::status::Reach>) {
        self.note_workers();
        let lines = self.metrics.lock().unwrap().reach.status(name, reach);
        lines.iter().for_each(|l| log::info!("{l}"));
    }

    /// The cluster's node names into the reach metrics (which names may be labels).
    fn note_workers(&self) {
        if let Some(p) = &self.planner {
            let mut m = self.metrics.lock().unwrap();
            m.reach.set_workers(p.snapshot().nodes().keys());
        }
    }

    async fn on_status(&mut self, topic: &str, payload: &[u8]) {
        let (gateway, name) = match self.topics.parse(topic) {
            Some(TopicKind::GatewayStatus(id)) => (true, id.to_string()),
            Some(TopicKind::NodeStatus(n)) => (false, n.to_string()),
            _ => return,
        };
        let known = !gateway || self.gateway_ids.contains(&name);
        if payload.is_empty() {
            if known {
                // The agent's status was deleted: it holds nothing we know of.
                if gateway {
                    self.note_reach(&name, None);
                    let input: Input<Zone> = Input::Status {
                        gateway: name,
                        status: None,
                    };
                    self.drive(input, None).await;
                } else {
                    let input: Input<WorkerProxy> = Input::Status {
                        gateway: name,
                        status: None,
                    };
                    self.drive(input, None).await;
                }
            }
            return;
        }
        if !known {
            // Not followed (no memory per made-up gateway id); warned about once.
            let text = unknown_gateway_warning(&name, self.logged_warnings.len());
            warn_once(&mut self.logged_warnings, text);
            return;
        }
        let status = match Status::from_json(payload) {
            Ok(s) => s,
            Err(e) => {
                if self.refused_status.len() < MAX_LOGGED_WARNINGS
                    && self.refused_status.insert(topic.to_string())
                {
                    log::warn!(
                        "{topic}: {e} (refused; further refusals on this topic are not logged \
                         until it sends a valid status)"
                    );
                }
                return;
            }
        };
        self.refused_status.remove(topic);
        if gateway {
            self.note_reach(&name, status.reach.as_ref());
        }
        let (before, latency, c) = {
            let mut m = self.metrics.lock().unwrap();
            let before = if gateway {
                m.gateways.get(&name)
            } else {
                m.nodes.get(&name)
            }
            .cloned();
            let latency = m.status(gateway, &name, &status, Instant::now());
            let c = if gateway {
                m.gateways[&name].clone()
            } else {
                m.nodes[&name].clone()
            };
            (before, latency, c)
        };
        if before.as_ref() != Some(&c) {
            let lat = latency.map(|d| format!(", {:.1} ms after publish", d.as_secs_f64() * 1e3));
            let err = c
                .error
                .as_ref()
                .map_or(String::new(), |e| format!(", error: {e}"));
            let state = if c.online { "online" } else { "offline" };
            let num = |v: Option<u64>| v.map_or("none".into(), |s| s.to_string());
            let what = if gateway { "gateway" } else { "node" };
            {
                let dig = |d: Option<u64>| d.map_or("none".into(), |d| format!("{d:016x}"));
                log::info!(
                    "{what} {name}: {state}, holds version {} digest {}, desired version {} \
                     digest {}: {}{err}{}{}",
                    num(c.applied),
                    dig(c.applied_digest),
                    num(c.desired),
                    dig(c.desired_digest),
                    if c.converged() {
                        "converged"
                    } else {
                        "not converged"
                    },
                    if status.want.is_some() {
                        ", wants a snapshot"
                    } else {
                        ""
                    },
                    lat.unwrap_or_default(),
                );
            }
        }
        let st = AgentStatus {
            held: status.held.map(Version),
            digest: status.digest.as_deref().and_then(parse_digest).map(Digest),
            want_snapshot: status.want.as_deref() == Some("snapshot"),
            online: status.state == State::Online,
        };
        if gateway {
            let input: Input<Zone> = Input::Status {
                gateway: name,
                status: Some(st),
            };
            self.drive(input, None).await;
        } else {
            let input: Input<WorkerProxy> = Input::Status {
                gateway: name,
                status: Some(st),
            };
            self.drive(input, None).await;
        }
    }

    fn note_event(&mut self, at: Instant) {
        let now = Instant::now();
        if self.burst_start.is_none() {
            self.burst_start = Some(at);
            // Issue 11, item 9: a change after a quiet of `debounce` is planned at once, and
            // so is the one event after it when that plan published nothing (at most one
            // such follow-up per quiet, so a flood of events that change nothing is not
            // planned one by one); the other events that follow within `debounce` coalesce
            // (bounded by `max_delay`).
            let quiet = now.saturating_duration_since(self.last_event) >= self.timing.debounce;
            let follow = std::mem::take(&mut self.follow_up) && !quiet;
            if quiet {
                self.follow_up_used = false;
            }
            self.follow_up_used |= follow;
            self.burst_now = quiet || follow;
        }
        self.last_event = now;
    }

    fn mark_all(&mut self) {
        if let Some(p) = &self.planner {
            self.dirty_nodes.extend(p.plan().nodes.keys().cloned());
        }
    }

    fn on_watch(&mut self, msg: WatchMsg) {
        match msg {
            WatchMsg::Error(r, _) => {
                *self
                    .metrics
                    .lock()
                    .unwrap()
                    .watch_errors
                    .entry(r.as_str())
                    .or_default() += 1;
            }
            WatchMsg::Event(r, change, at) => {
                *self
                    .metrics
                    .lock()
                    .unwrap()
                    .watch_events
                    .entry(r.as_str())
                    .or_default() += 1;
                let Some(p) = self.planner.as_mut() else {
                    // This resource is listed but another is not yet: keep the event with
                    // the list, in order.
                    if let Some(l) = self.initial.get_mut(&r) {
                        l.push(change);
                    }
                    return;
                };
                let changed = p.update([change]);
                self.note_input_errors(&changed.input_errors);
                self.dirty_nodes.extend(changed.nodes);
                self.note_event(at);
            }
            WatchMsg::Listed(r, list, at) => {
                *self
                    .metrics
                    .lock()
                    .unwrap()
                    .relists
                    .entry(r.as_str())
                    .or_default() += 1;
                match self.planner.as_mut() {
                    Some(p) => {
                        // A relist: swap in the new objects of this resource at once.
                        let mut snap = p.snapshot().clone();
                        match r {
                            Resource::Nodes => {
                                let names: Vec<String> = snap.nodes().keys().cloned().collect();
                                names.iter().for_each(|n| snap.delete_node(n));
                            }
                            Resource::Services => {
                                let keys: Vec<_> = snap.services().keys().cloned().collect();
                                keys.iter().for_each(|(ns, n)| snap.delete_service(ns, n));
                            }
                            Resource::EndpointSlices => {
                                let keys: Vec<_> = snap.slices().keys().cloned().collect();
                                keys.iter().for_each(|(ns, n)| snap.delete_slice(ns, n));
                            }
                        }
                        let errors = apply_all(&mut snap, list);
                        self.note_input_errors(&errors);
                        let changed = self.planner.as_mut().unwrap().set_snapshot(snap);
                        self.dirty_nodes.extend(changed.nodes);
                        self.note_event(at);
                    }
                    None => {
                        self.initial.insert(r, list);
                        if self.initial.len() == Resource::ALL.len() {
                            let mut snap = Snapshot::new();
                            let lists = std::mem::take(&mut self.initial);
                            let mut errors = Vec::new();
                            for (_, l) in lists {
                                errors.extend(apply_all(&mut snap, l));
                            }
                            self.note_input_errors(&errors);
                            self.start_planner(snap);
                            self.note_event(at);
                        }
                    }
                }
            }
        }
    }

    fn start_planner(&mut self, snap: Snapshot) {
        self.metrics.lock().unwrap().synced = true;
        self.planner = Some(Planner::new(snap, self.topology.clone()));
        self.mark_all();
    }

    fn note_input_errors(&mut self, errors: &[sdwan_plan::InputError]) {
        if errors.is_empty() {
            return;
        }
        self.metrics.lock().unwrap().input_errors += errors.len() as u64;
        for e in errors {
            log::warn!("ignored: {e}");
        }
    }

    /// Hands the publisher the payload v2 content of every gateway whose content may have
    /// changed since the last call (`Zones::changed_since`), as a shared `Zone` (the
    /// publisher compares it with what it published by the services that are not the same
    /// `Arc`, and publishes only a real change). Done in standby too: a replica taking over
    /// then has every gateway's content at hand.
    async fn plan_gateways(&mut self, burst: Instant) {
        let Some(planner) = self.planner.as_ref() else {
            return;
        };
        // Planned from the plan before where there is one: unchanged services are shared
        // with it (and with what the publisher keeps), so the publisher compares by pointer.
        let zones = match &self.v2 {
            Some(old) => old.next(planner.snapshot(), planner.topology()),
            None => sdwan_plan::v2::zones(planner.snapshot(), planner.topology()),
        };
        for w in zones.warnings() {
            warn_once(&mut self.logged_warnings, format!("plan: {w}"));
        }
        let changed: Vec<String> = zones
            .changed_since(self.v2.as_ref())
            .into_iter()
            .map(str::to_string)
            .collect();
        for gw in &changed {
            if let Some(zone) = zones.zone(gw, Version(0)) {
                self.drive(Input::Desired(Box::new(zone)), Some(burst))
                    .await;
            }
        }
        self.v2 = Some(zones);
    }

    /// Hands the workers' publisher the proxy payload v2 content (`sdwan_plan::proxy_v2`)
    /// of every worker whose content may have changed since the last call (the planner's
    /// changed nodes; every worker when the node slots changed), and forgets workers that
    /// have no content any more. Done in standby too, as for gateways.
    async fn plan_proxies(&mut self, burst: Instant) {
        let Some(planner) = self.planner.as_ref() else {
            return;
        };
        // From the plan before where there is one: unchanged services are shared with it.
        let proxies = match &self.proxies {
            Some(old) => old.next(planner.snapshot(), planner.plan()),
            None => sdwan_plan::proxy_v2::proxies(planner.snapshot(), planner.plan()),
        };
        let mut dirty = std::mem::take(&mut self.dirty_nodes);
        if self.proxies.as_ref().map(Proxies::slots) != Some(proxies.slots()) {
            dirty.extend(proxies.nodes().map(str::to_string));
        }
        for node in dirty {
            match proxies.proxy(&node, Version(0)) {
                Some(proxy) => {
                    self.drive(Input::Desired(Box::new(proxy)), Some(burst))
                        .await;
                }
                None => {
                    let input: Input<WorkerProxy> = Input::Forget(node.clone());
                    self.drive(input, None).await;
                    self.metrics.lock().unwrap().forget(false, &node);
                }
            }
        }
        self.proxies = Some(proxies);
    }

    /// Versions published so far, gateways' and workers'.
    fn published_count(&self) -> u64 {
        self.publisher.egress().versions + self.proxy_publisher.egress().versions
    }

    /// Plans and publishes what changed since the last flush.
    async fn flush(&mut self) {
        let Some(start) = self.burst_start.take() else {
            return;
        };
        let at_once = std::mem::take(&mut self.burst_now);
        let before = self.published_count();
        self.flush_burst(start).await;
        let published = self.published_count() != before;
        self.follow_up = at_once && !published && !self.follow_up_used;
    }

    async fn flush_burst(&mut self, start: Instant) {
        self.note_workers();
        self.plan_gateways(start).await;
        self.plan_proxies(start).await;
        let Some(planner) = self.planner.as_ref() else {
            return;
        };
        if !self.may_publish() {
            // A standby replica keeps its content warm but publishes nothing.
            self.metrics.lock().unwrap().plans += 1;
            return;
        }
        let plan = planner.plan();
        // v1 payload limits do not apply to what is published (payload v2 carries every
        // record): a v1 truncation warning would only mislead.
        let mut warnings: Vec<String> = plan
            .warnings
            .iter()
            .filter(|w| !matches!(w, sdwan_plan::Warning::ZoneTruncated { .. }))
            .map(|w| format!("plan: {w}"))
            .collect();
        warnings.extend(zone_warnings(planner.topology(), planner.snapshot()));
        for text in warnings {
            warn_once(&mut self.logged_warnings, text);
        }
        let mut m = self.metrics.lock().unwrap();
        m.plans += 1;
        m.ready = true;
    }

    fn flush_at(&self) -> Option<FlushAt> {
        flush_at(
            self.burst_start,
            self.burst_now,
            self.last_event,
            &self.timing,
        )
    }

    /// Runs until `shutdown` resolves or the sources end. `shutdown` is only seen between
    /// steps: a flush blocked on a broker that stopped reading does not see it, so the caller
    /// bounds the whole run (`crate::run`, [`crate::SHUTDOWN_GRACE`]).
    pub async fn run(
        mut self,
        source: Source,
        mut inbound: UnboundedReceiver<Inbound>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        if !self.leadership.elects() {
            self.read_retained(&mut inbound).await;
            self.drive_both(|| Input::Lead, || Input::Lead).await;
        }
        let mut watch_rx = match source {
            Source::Watch(rx) => Some(rx),
            Source::Static(snap) => {
                self.start_planner(*snap);
                self.note_event(Instant::now());
                self.flush().await;
                None
            }
        };
        tokio::pin!(shutdown);
        let mut leadership = self.leadership.clone();
        loop {
            let flush_at = match self.flush_at() {
                // Planned here, not through a timer: tokio rounds a timer's deadline up to
                // its next millisecond tick, so even a deadline already past would cost an
                // isolated change up to ~2 ms (measured in the testbed, docs/benchmarks.md).
                Some(FlushAt::Now) => {
                    self.flush().await;
                    continue;
                }
                Some(FlushAt::At(at)) => Some(tokio::time::Instant::from_std(at)),
                None => None,
            };
            let publisher_at = self.publisher_timer;
            let proxy_at = self.proxy_timer;
            let lease_end = if self.leading {
                self.leadership.deadline()
            } else {
                None
            };
            tokio::select! {
                _ = leadership.changed() => self.follow_leadership(&mut inbound).await,
                _ = tokio::time::sleep_until(tokio::time::Instant::from_std(lease_end.unwrap_or_else(Instant::now))), if lease_end.is_some() => {
                    self.follow_leadership(&mut inbound).await;
                }
                m = async { watch_rx.as_mut().unwrap().recv().await }, if watch_rx.is_some() => match m {
                    Some(m) => {
                        self.on_watch(m);
                        // Everything already received goes into the same plan: a plan made
                        // at once (an isolated change, a takeover) never publishes a state
                        // older than what this master already knows.
                        if let Some(rx) = watch_rx.as_mut() {
                            while let Ok(m) = rx.try_recv() {
                                self.on_watch(m);
                            }
                        }
                    }
                    None => { log::error!("watchers stopped"); break }
                },
                m = inbound.recv() => match m {
                    Some(Inbound::Connected) => {
                        self.on_connected().await;
                        self.subscribe().await;
                    }
                    Some(Inbound::SubAck) => {}
                    Some(Inbound::Publish { topic, payload }) => self.on_status(&topic, &payload).await,
                    Some(Inbound::Disconnected(e)) => self.on_disconnected(&e).await,
                    None => { log::error!("mqtt loop stopped"); break }
                },
                _ = tokio::time::sleep_until(flush_at.unwrap_or_else(tokio::time::Instant::now)), if flush_at.is_some() => {
                    self.flush().await;
                }
                _ = tokio::time::sleep_until(tokio::time::Instant::from_std(publisher_at.unwrap_or_else(Instant::now))), if publisher_at.is_some() => {
                    self.drive(Input::<Zone>::Tick, None).await;
                }
                _ = tokio::time::sleep_until(tokio::time::Instant::from_std(proxy_at.unwrap_or_else(Instant::now))), if proxy_at.is_some() => {
                    let input: Input<WorkerProxy> = Input::Tick;
                    self.drive(input, None).await;
                }
                _ = &mut shutdown => break,
            }
        }
        // Never wait here: the request channel may be full of publishes the broker does not
        // read.
        let _ = self.client.try_disconnect();
    }
}

/// When the current burst is planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FlushAt {
    /// At once: an isolated change, or the one follow-up of an at-once plan that published
    /// nothing.
    Now,
    /// When no event came for `debounce`, at the latest `max_delay` after the burst's first.
    At(Instant),
}

/// When the burst that began at `burst_start` (if any) is planned: at once when `burst_now`,
/// else `debounce` after the last event, never later than `max_delay` after its first.
fn flush_at(
    burst_start: Option<Instant>,
    burst_now: bool,
    last_event: Instant,
    timing: &Timing,
) -> Option<FlushAt> {
    let start = burst_start?;
    if burst_now {
        return Some(FlushAt::Now);
    }
    Some(FlushAt::At(
        (last_event + timing.debounce).min(start + timing.max_delay),
    ))
}

/// A kind of stream this controller drives: which of its publishers and timers is its.
trait Driven: Content {
    fn publisher(c: &mut Controller) -> &mut Publisher<Self>;
    fn timer(c: &mut Controller) -> &mut Option<Instant>;
}

impl Driven for Zone {
    fn publisher(c: &mut Controller) -> &mut Publisher<Self> {
        &mut c.publisher
    }
    fn timer(c: &mut Controller) -> &mut Option<Instant> {
        &mut c.publisher_timer
    }
}

impl Driven for WorkerProxy {
    fn publisher(c: &mut Controller) -> &mut Publisher<Self> {
        &mut c.proxy_publisher
    }
    fn timer(c: &mut Controller) -> &mut Option<Instant> {
        &mut c.proxy_timer
    }
}

fn apply_all(snap: &mut Snapshot, list: Vec<Change>) -> Vec<sdwan_plan::InputError> {
    let mut errors = Vec::new();
    for c in list {
        let r = match &c {
            Change::Node(n) => snap.apply_node(n),
            Change::Service(s) => snap.apply_service(s),
            Change::Slice(s) => snap.apply_slice(s),
            Change::NodeDeleted(n) => {
                snap.delete_node(n);
                Ok(())
            }
            Change::ServiceDeleted { namespace, name } => {
                snap.delete_service(namespace, name);
                Ok(())
            }
            Change::SliceDeleted { namespace, name } => {
                snap.delete_slice(namespace, name);
                Ok(())
            }
        };
        if let Err(e) = r {
            errors.push(e);
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing() -> Timing {
        Timing {
            debounce: Duration::from_millis(20),
            max_delay: Duration::from_millis(200),
            retained_wait: Duration::from_secs(1),
        }
    }

    #[test]
    fn no_burst_no_flush() {
        assert_eq!(flush_at(None, true, Instant::now(), &timing()), None);
        assert_eq!(flush_at(None, false, Instant::now(), &timing()), None);
    }

    #[test]
    fn an_at_once_burst_is_flushed_now_not_at_an_instant() {
        // Issue 11, item 9: not through a timer (tokio rounds deadlines up to its next
        // millisecond tick).
        let t = Instant::now();
        assert_eq!(flush_at(Some(t), true, t, &timing()), Some(FlushAt::Now));
        let later = t + Duration::from_millis(5);
        assert_eq!(
            flush_at(Some(t), true, later, &timing()),
            Some(FlushAt::Now)
        );
    }

    #[test]
    fn a_burst_waits_for_quiet_bounded_by_max_delay() {
        let t = Instant::now();
        let ms = Duration::from_millis;
        assert_eq!(
            flush_at(Some(t), false, t + ms(5), &timing()),
            Some(FlushAt::At(t + ms(25)))
        );
        // Events keep coming: never later than max_delay after the first.
        assert_eq!(
            flush_at(Some(t), false, t + ms(190), &timing()),
            Some(FlushAt::At(t + ms(200)))
        );
    }
}
