//! The master's payload v2 publisher (`docs/payload-v2.md`, issue 11) as a pure state
//! machine: [`Publisher::handle`]`(now, input) -> outputs`. No I/O and no clock of its own
//! (quinn-proto style, like [`crate::leader::Elector`]): the driver feeds it the desired
//! content per gateway (a [`Snapshot`] from the planner), the agents' statuses, the broker
//! connection and leadership events and timer ticks, and carries out what comes back: MQTT
//! publishes ([`Publish`]: topic, bytes, retain, QoS) and the instant of the next tick.
//!
//! Layout:
//! - [`Input`], [`Outputs`], [`Publish`], [`Now`]: what goes in and out;
//! - [`Publisher`]: one stream per gateway (its current version and content, the retained
//!   snapshot the tail starts from, the agent's last status, the coalescing state);
//! - [`Convergence`]: desired digest vs reported digest, per gateway;
//! - [`Egress`]: messages and bytes published, per kind, so a benchmark reads what a change
//!   costs.
//!
//! Rules (each has unit tests on virtual time below, and `tests/publish.rs` drives simulated
//! agents that apply [`sdwan_contract::v2::accept`] and [`Snapshot::apply`]):
//! - coalescing, per gateway: a change to a gateway that published nothing for `quiet` goes
//!   out at once; further changes within `quiet` are held and merged, published after `quiet`
//!   without a change, and never later than `max_delay` after the first held one;
//! - a change goes as a delta on `v2/delta` naming its base, after the retained tail (the
//!   merged delta from the retained snapshot) is rewritten; a tail above
//!   [`TAIL_REFRESH_BYTES`] is replaced by a refreshed snapshot at the current version (then
//!   an empty tail); retained parts beyond the new count are deleted; a change no delta can
//!   carry (settings, slot count, a delta above the message limit) is a snapshot and a notice;
//! - a lagging agent (status older than the current version `lag_grace` after it was
//!   published) gets a notice on its own topics only, at most once per `resync_interval`; if
//!   it still lags at the next one, the snapshot is rewritten at the current version too;
//!   `want` rewrites the snapshot unless one was written within `lag_grace`;
//! - versions: nothing is published between [`Input::Lead`] and `status_wait` later, while the
//!   retained statuses arrive (the master reads statuses, never zones). Then per gateway: an
//!   agent holding the desired digest has its version adopted (no delta, no notice; the
//!   retained snapshot is refreshed at it), else the stream starts at
//!   [`Version::start`]`(clock, held)` plus `takeover_jump` (past what a deposed leader may
//!   still have in flight) with a snapshot and a notice; each next version is
//!   [`Version::next`]`(clock)` (a clock stepping back never moves versions back; `u64::MAX`
//!   is followed by `0`). A status holding a version newer than the stream: with the current
//!   or desired digest it is adopted, with another the stream moves past it (snapshot, notice)
//!   if that is still so `foreign_grace` later, so that two publishers briefly alive at once
//!   do not take turns overtaking each other while their content is the same.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::{Duration, Instant};

use sdwan_contract::v2::encode::{encode_notice, Delta, EncodeError, Snapshot};
use sdwan_contract::v2::proxy::{self, ProxyDelta, ProxySnapshot};
use sdwan_contract::v2::{Digest, Version, MAX_PARTS, TAIL_REFRESH_BYTES};
use sdwan_link::Topics;
use sdwan_plan::proxy_v2::WorkerProxy;
use sdwan_plan::v2::Zone;

/// The content of one kind of stream: a gateway's zone ([`Snapshot`], topics
/// `P/gateways/ID/v2/...`) or a worker's proxy ([`ProxySnapshot`], topics
/// `P/nodes/NODE/v2/...`). The [`Publisher`] is the same for both: versions, parts, tail,
/// deltas, notices, resync and convergence do not depend on what the content is.
pub trait Content: Clone + std::fmt::Debug {
    /// What a stream is named after in logs and metrics: `"gateway"` or `"node"`.
    const KIND: &'static str;
    /// The stream's id (gateway id or node name).
    fn id(&self) -> &str;
    /// The version the content has.
    fn version(&self) -> Version;
    /// Gives the content `version`.
    fn set_version(&mut self, version: Version);
    /// The digest of the content (`docs/payload-v2.md`, "Digest").
    fn digest(&self) -> Digest;
    /// Whether the encoder accepts the content (limits, id rules).
    fn check(&self) -> Result<(), EncodeError>;
    /// The same content, whatever the versions.
    fn same_content(&self, other: &Self) -> bool;
    /// The snapshot parts.
    fn encode_parts(&self) -> Result<Vec<Vec<u8>>, EncodeError>;
    /// The encoded delta from `old` to `new` (`new`'s version and digest), or `None` when no
    /// delta can carry the change (settings, slot count).
    fn delta(old: &Self, new: &Self) -> Option<Result<Vec<u8>, EncodeError>>;
    /// A notice of `version` with `digest` for stream `id`.
    fn notice(id: &str, version: Version, digest: Digest) -> Result<Vec<u8>, EncodeError>;
    /// The topic `leaf` (`part/K`, `tail`, `delta`) of stream `id`.
    fn topic(topics: &Topics, id: &str, leaf: &str) -> String;
}

impl Content for Snapshot {
    const KIND: &'static str = "gateway";
    fn id(&self) -> &str {
        &self.gateway
    }
    fn version(&self) -> Version {
        self.version
    }
    fn set_version(&mut self, version: Version) {
        self.version = version;
    }
    fn digest(&self) -> Digest {
        Snapshot::digest(self)
    }
    fn check(&self) -> Result<(), EncodeError> {
        Snapshot::check(self)
    }
    fn same_content(&self, b: &Self) -> bool {
        self.gateway == b.gateway
            && self.zone == b.zone
            && self.nodes == b.nodes
            && self.services == b.services
    }
    fn encode_parts(&self) -> Result<Vec<Vec<u8>>, EncodeError> {
        self.encode()
    }
    fn delta(old: &Self, new: &Self) -> Option<Result<Vec<u8>, EncodeError>> {
        Delta::between(old, new).map(|d| d.encode())
    }
    fn notice(id: &str, version: Version, digest: Digest) -> Result<Vec<u8>, EncodeError> {
        encode_notice(id, version, digest)
    }
    fn topic(topics: &Topics, id: &str, leaf: &str) -> String {
        topics.gateway_v2(id, leaf)
    }
}

/// A gateway's zone as the planner shares it (`sdwan_plan::v2::Zone`: pointers into what
/// the gateways of its class share): what the controller publishes. The same messages as
/// [`Snapshot`]'s, without a whole copy of the content per gateway and version.
impl Content for Zone {
    const KIND: &'static str = "gateway";
    fn id(&self) -> &str {
        self.gateway()
    }
    fn version(&self) -> Version {
        Zone::version(self)
    }
    fn set_version(&mut self, version: Version) {
        Zone::set_version(self, version);
    }
    fn digest(&self) -> Digest {
        Zone::digest(self)
    }
    fn check(&self) -> Result<(), EncodeError> {
        Zone::check(self)
    }
    fn same_content(&self, b: &Self) -> bool {
        Zone::same_content(self, b)
    }
    fn encode_parts(&self) -> Result<Vec<Vec<u8>>, EncodeError> {
        self.snapshot().encode()
    }
    fn delta(old: &Self, new: &Self) -> Option<Result<Vec<u8>, EncodeError>> {
        Zone::delta(old, new).map(|d| d.encode())
    }
    fn notice(id: &str, version: Version, digest: Digest) -> Result<Vec<u8>, EncodeError> {
        encode_notice(id, version, digest)
    }
    fn topic(topics: &Topics, id: &str, leaf: &str) -> String {
        topics.gateway_v2(id, leaf)
    }
}

impl Content for ProxySnapshot {
    const KIND: &'static str = "node";
    fn id(&self) -> &str {
        &self.node
    }
    fn version(&self) -> Version {
        self.version
    }
    fn set_version(&mut self, version: Version) {
        self.version = version;
    }
    fn digest(&self) -> Digest {
        ProxySnapshot::digest(self)
    }
    fn check(&self) -> Result<(), EncodeError> {
        ProxySnapshot::check(self)
    }
    fn same_content(&self, b: &Self) -> bool {
        self.node == b.node
            && self.proxy == b.proxy
            && self.nodes == b.nodes
            && self.services == b.services
    }
    fn encode_parts(&self) -> Result<Vec<Vec<u8>>, EncodeError> {
        self.encode()
    }
    fn delta(old: &Self, new: &Self) -> Option<Result<Vec<u8>, EncodeError>> {
        ProxyDelta::between(old, new).map(|d| d.encode())
    }
    fn notice(id: &str, version: Version, digest: Digest) -> Result<Vec<u8>, EncodeError> {
        proxy::encode_notice(id, version, digest)
    }
    fn topic(topics: &Topics, id: &str, leaf: &str) -> String {
        // `P/nodes/NODE/v2/LEAF` (`docs/payload-v2.md`, "Proxy payload v2").
        format!("{}/nodes/{id}/v2/{leaf}", topics.prefix())
    }
}

/// A worker's proxy as the planner shares it (`sdwan_plan::proxy_v2::WorkerProxy`): what
/// the controller publishes. The same messages as [`ProxySnapshot`]'s.
impl Content for WorkerProxy {
    const KIND: &'static str = "node";
    fn id(&self) -> &str {
        self.node()
    }
    fn version(&self) -> Version {
        WorkerProxy::version(self)
    }
    fn set_version(&mut self, version: Version) {
        WorkerProxy::set_version(self, version);
    }
    fn digest(&self) -> Digest {
        WorkerProxy::digest(self)
    }
    fn check(&self) -> Result<(), EncodeError> {
        WorkerProxy::check(self)
    }
    fn same_content(&self, b: &Self) -> bool {
        WorkerProxy::same_content(self, b)
    }
    fn encode_parts(&self) -> Result<Vec<Vec<u8>>, EncodeError> {
        self.snapshot().encode()
    }
    fn delta(old: &Self, new: &Self) -> Option<Result<Vec<u8>, EncodeError>> {
        WorkerProxy::delta(old, new).map(|d| d.encode())
    }
    fn notice(id: &str, version: Version, digest: Digest) -> Result<Vec<u8>, EncodeError> {
        proxy::encode_notice(id, version, digest)
    }
    fn topic(topics: &Topics, id: &str, leaf: &str) -> String {
        <ProxySnapshot as Content>::topic(topics, id, leaf)
    }
}

/// Timing and topics of a [`Publisher`].
#[derive(Debug, Clone)]
pub struct Config {
    /// The topic prefix `P` (`docs/mqtt.md`): a valid `sdwan_link::Topics` prefix.
    pub prefix: String,
    /// A burst of changes ends after this much quiet (and an isolated change goes at once).
    pub quiet: Duration,
    /// No change waits longer than this to be published.
    pub max_delay: Duration,
    /// After [`Input::Lead`], how long the retained statuses are awaited before publishing.
    pub status_wait: Duration,
    /// How long after a version was published an agent's status may still report an older
    /// one before it is sent a notice.
    pub lag_grace: Duration,
    /// Least time between two resyncs (notice or snapshot) of one gateway.
    pub resync_interval: Duration,
    /// How long a status may hold a version newer than the stream, with other content, before
    /// the stream moves past it.
    pub foreign_grace: Duration,
    /// How far past [`Version::start`] a stream starts when it cannot adopt the agent's
    /// version (milliseconds of versions): past the versions a previous leader made after the
    /// one the agent reports, which may still be on their way, so that agents ignore them.
    pub takeover_jump: Duration,
    /// Most gateways followed without desired content (statuses of gateways not planned, or
    /// not planned yet): a status from another unknown gateway beyond this is dropped, so a
    /// flood of made-up gateway ids cannot grow memory without limit. The master sets it to
    /// its topology's gateway count plus a margin (statuses arrive before the first plan).
    pub max_unknown: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            prefix: sdwan_link::DEFAULT_PREFIX.to_string(),
            quiet: Duration::from_millis(20),
            max_delay: Duration::from_millis(200),
            status_wait: Duration::from_millis(500),
            lag_grace: Duration::from_secs(5),
            resync_interval: Duration::from_secs(10),
            foreign_grace: Duration::from_secs(2),
            takeover_jump: Duration::from_secs(3600),
            max_unknown: 4096,
        }
    }
}

/// The time, passed in: a monotonic instant for timers, the wall clock for versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Monotonic time (timers, coalescing).
    pub mono: Instant,
    /// Milliseconds since the Unix epoch (versions); may step back.
    pub wall_ms: u64,
}

/// What an agent's status document says about its v2 zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AgentStatus {
    /// The version it serves (`held`), if any.
    pub held: Option<Version>,
    /// The digest of the content it serves.
    pub digest: Option<Digest>,
    /// `"want":"snapshot"`: it found no complete snapshot to read.
    pub want_snapshot: bool,
    /// The agent is connected (its last will says `false`): only online agents are resynced.
    pub online: bool,
}

/// An input to [`Publisher::handle`].
#[derive(Debug, Clone)]
pub enum Input<C = Snapshot> {
    /// The desired content of a stream (its `version` is ignored: the publisher picks it).
    Desired(Box<C>),
    /// The gateway is no longer planned: stop following it (its retained topics stay).
    Forget(String),
    /// A gateway's status document; `None` for an empty or deleted one (agent gone).
    Status {
        /// The gateway id.
        gateway: String,
        /// What it says.
        status: Option<AgentStatus>,
    },
    /// The broker connection is up.
    Connected,
    /// The broker connection is down: nothing is published until [`Input::Connected`].
    Disconnected,
    /// This publisher leads from now (a start or a takeover): versions are chosen again from
    /// the statuses, after `status_wait`.
    Lead,
    /// Another replica leads: publish nothing, forget the streams' versions.
    Depose,
    /// Time passed (the timer asked for in [`Outputs::timer`] fired).
    Tick,
}

/// MQTT quality of service of a publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qos {
    /// QoS 1: every v2 topic.
    AtLeastOnce,
}

/// What a published message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// A snapshot part (retained).
    Part,
    /// An empty retained message deleting a part beyond the snapshot's count.
    PartDelete,
    /// The retained tail (a delta, or empty when the snapshot is current).
    Tail,
    /// A delta on `v2/delta`.
    Delta,
    /// A notice on `v2/delta`.
    Notice,
}

/// One MQTT publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// The gateway it is for.
    pub gateway: String,
    /// What it is.
    pub kind: Kind,
    /// The full topic.
    pub topic: String,
    /// The payload (empty: delete the retained message).
    pub payload: Vec<u8>,
    /// Retained.
    pub retain: bool,
    /// QoS.
    pub qos: Qos,
}

/// What one [`Publisher::handle`] call asks the driver to do.
#[derive(Debug, Default)]
pub struct Outputs {
    /// Publish these, in this order.
    pub publishes: Vec<Publish>,
    /// Call again with [`Input::Tick`] at this instant (or earlier with another input).
    pub timer: Option<Instant>,
}

/// Messages and bytes (payload and topic) published, per kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Count {
    /// Messages.
    pub messages: u64,
    /// Payload bytes.
    pub bytes: u64,
    /// Topic bytes.
    pub topic_bytes: u64,
}

/// Egress since the publisher was made (subtract two readings for the cost of a change).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Egress {
    /// Snapshot parts.
    pub parts: Count,
    /// Deleted parts.
    pub part_deletes: Count,
    /// Tails.
    pub tails: Count,
    /// Deltas.
    pub deltas: Count,
    /// Notices.
    pub notices: Count,
    /// Versions published (each delta or snapshot of new content).
    pub versions: u64,
    /// Snapshots published (new version, refresh or resync).
    pub snapshots: u64,
}

impl Egress {
    /// Every message together.
    pub fn total(&self) -> Count {
        let mut t = Count::default();
        for c in [
            self.parts,
            self.part_deletes,
            self.tails,
            self.deltas,
            self.notices,
        ] {
            t.messages += c.messages;
            t.bytes += c.bytes;
            t.topic_bytes += c.topic_bytes;
        }
        t
    }

    /// The counts of messages that reach sessions subscribed all the time (`v2/delta`):
    /// deltas and notices. Parts and tails are delivered only to resyncing agents.
    pub fn delivered(&self) -> Count {
        Count {
            messages: self.deltas.messages + self.notices.messages,
            bytes: self.deltas.bytes + self.notices.bytes,
            topic_bytes: self.deltas.topic_bytes + self.notices.topic_bytes,
        }
    }

    fn add(&mut self, p: &Publish) {
        let c = match p.kind {
            Kind::Part => &mut self.parts,
            Kind::PartDelete => &mut self.part_deletes,
            Kind::Tail => &mut self.tails,
            Kind::Delta => &mut self.deltas,
            Kind::Notice => &mut self.notices,
        };
        c.messages += 1;
        c.bytes += p.payload.len() as u64;
        c.topic_bytes += p.topic.len() as u64;
    }
}

/// One gateway's convergence: converged only when the agent serves the desired content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Convergence {
    /// The digest of the desired content.
    pub desired: Digest,
    /// The version the desired content has (or will have) on the wire, once published.
    pub version: Option<Version>,
    /// The stream's current version (the last content published, desired or not).
    pub published: Option<Version>,
    /// What the agent last reported, if anything.
    pub reported: Option<AgentStatus>,
    /// The agent serves the desired content: `reported.digest == desired`, reported at a
    /// version no older than the stream's current one (a report from before the last publish
    /// may be stale: the agent may have moved on to what was published since, for example
    /// when content goes back to what it was).
    pub converged: bool,
}

/// See [`Convergence::converged`].
fn converged<C: Content>(s: &Stream<C>) -> bool {
    let (Some(d), Some(st)) = (s.desired_digest, s.status) else {
        return false;
    };
    st.digest == Some(d)
        && match (&s.current, st.held) {
            (Some(c), Some(h)) => !c.version().is_newer_than(h),
            (Some(_), None) => false,
            (None, _) => true,
        }
}

/// Why content was not published (the stream keeps its previous content).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The gateway.
    pub gateway: String,
    /// Why.
    pub error: EncodeError,
}

fn same_content<C: Content>(a: &C, b: &C) -> bool {
    a.same_content(b)
}

/// The phase of the publisher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Not leading: nothing is published.
    Standby,
    /// Leading, reading statuses until then.
    Reading(Instant),
    /// Leading and publishing.
    Live,
}

/// One gateway's stream.
#[derive(Debug)]
struct Stream<C> {
    /// Desired content not published yet (version meaningless) and its digest; once published
    /// it lives on as `current` only (a gateway's content is large: one copy fewer).
    desired: Option<(C, Digest)>,
    /// The digest of the latest desired content (pending or published).
    desired_digest: Option<Digest>,
    /// What is published: the content at the current version.
    current: Option<C>,
    /// Its digest (kept with it: the digest reads every item).
    current_digest: Digest,
    /// The retained snapshot the tail starts from.
    retained: Option<C>,
    /// Retained parts that may exist (`None`: unknown, after a start).
    retained_parts: Option<usize>,
    /// The agent's last status.
    status: Option<AgentStatus>,
    /// Last time this gateway's content was published.
    last_flush: Option<Instant>,
    /// First change held back, and the last one.
    held_since: Option<Instant>,
    last_change: Option<Instant>,
    /// When the current version was published.
    published_at: Option<Instant>,
    /// Last resync sent.
    last_resync: Option<Instant>,
    /// When the snapshot was last written.
    snapshot_at: Option<Instant>,
    /// Resyncs sent since the agent last reported progress (the second is a snapshot).
    resyncs: u32,
    /// Since when a status holds a newer version with other content.
    foreign_since: Option<Instant>,
    /// The instant this stream asked to be looked at.
    wake: Option<Instant>,
}

impl<C> Default for Stream<C> {
    fn default() -> Self {
        Stream {
            desired: None,
            desired_digest: None,
            current: None,
            current_digest: Digest(0),
            retained: None,
            retained_parts: None,
            status: None,
            last_flush: None,
            held_since: None,
            last_change: None,
            published_at: None,
            last_resync: None,
            snapshot_at: None,
            resyncs: 0,
            foreign_since: None,
            wake: None,
        }
    }
}

/// The publisher (see the module documentation): one per kind of stream, gateways' zones
/// (`Publisher<Snapshot>`, the default) or workers' proxies (`Publisher<ProxySnapshot>`).
#[derive(Debug)]
pub struct Publisher<C = Snapshot> {
    cfg: Config,
    topics: Topics,
    phase: Phase,
    connected: bool,
    streams: HashMap<String, Stream<C>>,
    /// (wake, gateway), lazily deleted: an entry counts only while it equals the stream's
    /// `wake`.
    timers: BinaryHeap<Reverse<(Instant, String)>>,
    phase_timer: Option<Instant>,
    egress: Egress,
    refused: Vec<Refused>,
}

impl<C: Content> Publisher<C> {
    /// A publisher in standby (not leading, not connected).
    ///
    /// # Panics
    ///
    /// If `cfg.prefix` is not a valid topic prefix (`sdwan_link::Topics::new`).
    pub fn new(cfg: Config) -> Publisher<C> {
        let topics = Topics::new(&cfg.prefix).expect("Config::prefix: a valid topic prefix");
        Publisher {
            cfg,
            topics,
            phase: Phase::Standby,
            connected: false,
            streams: HashMap::new(),
            timers: BinaryHeap::new(),
            phase_timer: None,
            egress: Egress::default(),
            refused: Vec::new(),
        }
    }

    /// Messages and bytes published so far.
    pub fn egress(&self) -> Egress {
        self.egress
    }

    /// Content refused by the encoder since the last call (logged by the driver).
    pub fn take_refused(&mut self) -> Vec<Refused> {
        std::mem::take(&mut self.refused)
    }

    /// Whether it publishes now (leading, statuses read, connected).
    pub fn is_live(&self) -> bool {
        self.phase == Phase::Live && self.connected
    }

    /// The current version of a gateway's stream.
    pub fn version(&self, gateway: &str) -> Option<Version> {
        self.streams
            .get(gateway)?
            .current
            .as_ref()
            .map(|s| s.version())
    }

    /// A gateway's convergence (`None`: no desired content).
    pub fn convergence(&self, gateway: &str) -> Option<Convergence> {
        let s = self.streams.get(gateway)?;
        let desired = s.desired_digest.as_ref()?;
        let version = s
            .current
            .as_ref()
            .filter(|_| s.current_digest == *desired)
            .map(|c| c.version());
        Some(Convergence {
            desired: *desired,
            version,
            published: s.current.as_ref().map(|c| c.version()),
            reported: s.status,
            converged: converged(s),
        })
    }

    /// Gateways with desired content, and how many of them are converged.
    pub fn converged_count(&self) -> (usize, usize) {
        let mut all = 0;
        let mut ok = 0;
        for s in self.streams.values() {
            if s.desired_digest.is_some() {
                all += 1;
                ok += usize::from(converged(s));
            }
        }
        (all, ok)
    }

    /// Handles one input at `now`; returns what to publish and when to be called again.
    pub fn handle(&mut self, now: Now, input: Input<C>) -> Outputs {
        let mut out = Vec::new();
        match input {
            Input::Desired(snap) => {
                let gw = snap.id().to_string();
                let digest = snap.digest();
                let s = self.streams.entry(gw.clone()).or_default();
                let known = match (&s.desired, &s.current) {
                    (Some((d, dg)), _) => *dg == digest && same_content(d, &snap),
                    (None, Some(c)) => s.current_digest == digest && same_content(c, &snap),
                    (None, None) => false,
                };
                if !known {
                    s.desired = Some((*snap, digest));
                    s.desired_digest = Some(digest);
                    let quiet_since = s.last_flush.is_none_or(|t| now.mono >= t + self.cfg.quiet);
                    if s.held_since.is_none() && quiet_since {
                        s.held_since = Some(now.mono);
                        s.last_change = Some(now.mono);
                        self.flush_now(now, &gw, &mut out);
                    } else {
                        s.held_since.get_or_insert(now.mono);
                        s.last_change = Some(now.mono);
                    }
                    self.reschedule(&gw);
                }
            }
            Input::Forget(gw) => {
                self.streams.remove(&gw);
            }
            Input::Status { gateway, status } => {
                if !self.streams.contains_key(&gateway) {
                    // A gateway without a stream: follow it only while there is room.
                    if status.is_none() || self.unknown() >= self.cfg.max_unknown {
                        return self.outputs(now, out);
                    }
                }
                let s = self.streams.entry(gateway.clone()).or_default();
                if status.is_none() && s.desired_digest.is_none() && s.current.is_none() {
                    self.streams.remove(&gateway);
                    return self.outputs(now, out);
                }
                if s.status.map(|st| (st.held, st.digest)) != status.map(|st| (st.held, st.digest))
                {
                    s.resyncs = 0;
                }
                s.status = status;
                self.evaluate(now, &gateway, &mut out);
            }
            Input::Connected => {
                self.connected = true;
                self.run_due_all(now, &mut out);
            }
            Input::Disconnected => self.connected = false,
            Input::Lead => {
                let until = now.mono + self.cfg.status_wait;
                self.phase = Phase::Reading(until);
                self.phase_timer = Some(until);
                self.forget_versions();
            }
            Input::Depose => {
                self.phase = Phase::Standby;
                self.phase_timer = None;
                self.forget_versions();
            }
            Input::Tick => {}
        }
        if let Phase::Reading(until) = self.phase {
            if now.mono >= until {
                self.phase = Phase::Live;
                self.phase_timer = None;
                self.run_due_all(now, &mut out);
            }
        }
        self.outputs(now, out)
    }

    fn outputs(&mut self, now: Now, mut out: Vec<Publish>) -> Outputs {
        self.run_due(now, &mut out);
        for p in &out {
            self.egress.add(p);
        }
        Outputs {
            publishes: out,
            timer: self.next_timer(),
        }
    }

    /// Streams without desired content (see [`Config::max_unknown`]).
    fn unknown(&self) -> usize {
        self.streams
            .values()
            .filter(|s| s.desired_digest.is_none() && s.current.is_none())
            .count()
    }

    /// The number of gateways followed (with desired content or a status).
    pub fn gateways(&self) -> usize {
        self.streams.len()
    }

    fn forget_versions(&mut self) {
        for s in self.streams.values_mut() {
            if let Some(c) = s.current.take() {
                if s.desired.is_none() {
                    s.desired = Some((c, s.current_digest));
                }
            }
            s.retained = None;
            s.retained_parts = None;
            s.published_at = None;
            s.foreign_since = None;
        }
    }

    fn next_timer(&mut self) -> Option<Instant> {
        // Drop stale heap entries.
        while let Some(Reverse((at, gw))) = self.timers.peek() {
            if self.streams.get(gw).and_then(|s| s.wake) == Some(*at) {
                break;
            }
            self.timers.pop();
        }
        let t = self.timers.peek().map(|Reverse((at, _))| *at);
        match (t, self.phase_timer) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn run_due(&mut self, now: Now, out: &mut Vec<Publish>) {
        while let Some(Reverse((at, _))) = self.timers.peek() {
            if *at > now.mono {
                break;
            }
            let Some(Reverse((at, gw))) = self.timers.pop() else {
                break;
            };
            if self.streams.get(&gw).and_then(|s| s.wake) == Some(at) {
                if let Some(s) = self.streams.get_mut(&gw) {
                    s.wake = None;
                }
                self.evaluate(now, &gw, out);
            }
        }
    }

    fn run_due_all(&mut self, now: Now, out: &mut Vec<Publish>) {
        let mut gws: Vec<String> = self.streams.keys().cloned().collect();
        gws.sort_unstable();
        for gw in gws {
            self.evaluate(now, &gw, out);
        }
    }

    /// Does whatever is due for `gw` and sets its next wake.
    fn evaluate(&mut self, now: Now, gw: &str, out: &mut Vec<Publish>) {
        if self.phase == Phase::Live && self.connected {
            self.flush_if_due(now, gw, out);
            self.check_agent(now, gw, out);
        }
        self.reschedule(gw);
    }

    fn flush_due_at(&self, s: &Stream<C>) -> Option<Instant> {
        let since = s.held_since?;
        let last = s.last_change.unwrap_or(since);
        let by_quiet = last + self.cfg.quiet;
        let by_max = since + self.cfg.max_delay;
        Some(by_quiet.min(by_max))
    }

    fn flush_if_due(&mut self, now: Now, gw: &str, out: &mut Vec<Publish>) {
        let Some(s) = self.streams.get(gw) else {
            return;
        };
        if s.desired.is_none() {
            // Nothing pending.
            return;
        }
        // The first publish of a stream after a start waits for nothing but the phase.
        let due = if s.current.is_none() {
            Some(now.mono)
        } else {
            self.flush_due_at(s)
        };
        if due.is_some_and(|d| d <= now.mono) {
            self.flush_now(now, gw, out);
        }
    }

    fn reschedule(&mut self, gw: &str) {
        let live = self.phase == Phase::Live && self.connected;
        let Some(s) = self.streams.get(gw) else {
            return;
        };
        let mut wake: Option<Instant> = None;
        let mut at = |t: Option<Instant>| {
            if let Some(t) = t {
                wake = Some(wake.map_or(t, |w: Instant| w.min(t)));
            }
        };
        if live {
            at(self.flush_due_at(s));
            if let (Some(cur), Some(st)) = (&s.current, s.status) {
                let lagging = st.held.is_none_or(|h| cur.version().is_newer_than(h));
                if st.online && (st.want_snapshot || lagging) {
                    let grace = s.published_at.map(|p| p + self.cfg.lag_grace);
                    let rate = s.last_resync.map(|r| r + self.cfg.resync_interval);
                    let t = if st.want_snapshot {
                        let fresh = s.snapshot_at.map(|p| p + self.cfg.lag_grace);
                        match (fresh, rate) {
                            (Some(a), Some(b)) => Some(a.max(b)),
                            (a, b) => a.or(b),
                        }
                    } else {
                        match (grace, rate) {
                            (Some(a), Some(b)) => Some(a.max(b)),
                            (a, b) => a.or(b),
                        }
                    };
                    at(t);
                }
            }
            at(s.foreign_since.map(|f| f + self.cfg.foreign_grace));
        }
        if s.wake != wake {
            if let Some(s) = self.streams.get_mut(gw) {
                s.wake = wake;
            }
            if let Some(w) = wake {
                self.timers.push(Reverse((w, gw.to_string())));
            }
        }
    }

    /// Reacts to the agent's status: adopt its version, move past a foreign one, resync a
    /// lagging agent.
    fn check_agent(&mut self, now: Now, gw: &str, out: &mut Vec<Publish>) {
        let cfg = self.cfg.clone();
        let Some(s) = self.streams.get_mut(gw) else {
            return;
        };
        let (Some(cur), Some(st)) = (s.current.as_ref(), s.status) else {
            return;
        };
        let cur_version = cur.version();
        let cur_digest = s.current_digest;
        if let Some(held) = st.held {
            let foreign = held.is_newer_than(cur_version)
                || (held == cur_version && st.digest != Some(cur_digest));
            if foreign {
                // Content this stream has or is about to publish, under a version another
                // publisher (or a previous life) made: take the version over.
                if st.digest == Some(cur_digest) {
                    let content = cur.clone();
                    self.adopt(now, gw, content, held, out);
                    return;
                }
                if let Some((want, d)) = &s.desired {
                    if st.digest == Some(*d) && held.is_newer_than(cur_version) {
                        let content = want.clone();
                        self.adopt(now, gw, content, held, out);
                        return;
                    }
                }
                let since = *s.foreign_since.get_or_insert(now.mono);
                if now.mono >= since + cfg.foreign_grace {
                    s.foreign_since = None;
                    let mut next = Version::start(now.wall_ms, Some(held));
                    if !next.is_newer_than(cur_version) {
                        next = cur_version.next(now.wall_ms);
                    }
                    self.publish_snapshot(now, gw, next, out);
                }
                return;
            }
        }
        s.foreign_since = None;
        if !st.online {
            return;
        }
        let lagging = st.held.is_none_or(|h| cur_version.is_newer_than(h));
        if st.want_snapshot {
            // Unless a snapshot was written lately (the agent, subscribed, gets it).
            if s.snapshot_at.is_none_or(|t| now.mono >= t + cfg.lag_grace) {
                self.resync(now, gw, true, out);
            }
        } else if lagging && s.published_at.is_none_or(|p| now.mono >= p + cfg.lag_grace) {
            self.resync(now, gw, false, out);
        }
    }

    fn resync(&mut self, now: Now, gw: &str, snapshot: bool, out: &mut Vec<Publish>) {
        let interval = self.cfg.resync_interval;
        let Some(s) = self.streams.get_mut(gw) else {
            return;
        };
        if s.last_resync.is_some_and(|r| now.mono < r + interval) {
            return;
        }
        let Some(cur) = s.current.as_ref() else {
            return;
        };
        s.last_resync = Some(now.mono);
        s.resyncs += 1;
        let (v, d) = (cur.version(), s.current_digest);
        if snapshot {
            // The agent found no complete snapshot: the broker may have lost it.
            self.write_snapshot(now, gw, out);
            return;
        }
        if s.resyncs > 1 {
            // A notice did not help: the agent holds a version between the retained snapshot
            // and the current one, which neither the snapshot nor the tail reaches (or the
            // broker lost them). The snapshot moves to the current version.
            self.write_snapshot(now, gw, out);
        }
        if let Ok(bytes) = C::notice(gw, v, d) {
            out.push(self.publish(gw, Kind::Notice, "delta", bytes, false));
        }
    }

    /// Takes `version` for `content`, as the agent already holds it: nothing goes to the
    /// agent; the retained tail (or, without a retained snapshot of this publisher, the
    /// snapshot) is brought to the adopted version for agents that boot.
    fn adopt(
        &mut self,
        now: Now,
        gw: &str,
        mut content: C,
        version: Version,
        out: &mut Vec<Publish>,
    ) {
        let Some(s) = self.streams.get_mut(gw) else {
            return;
        };
        content.set_version(version);
        if s.desired
            .as_ref()
            .is_some_and(|(d, _)| same_content(d, &content))
        {
            s.desired = None;
            s.held_since = None;
            s.last_change = None;
        }
        s.foreign_since = None;
        s.published_at = Some(now.mono);
        let tail = s.retained.as_ref().and_then(|r| {
            if r.version() == version {
                return Some(Vec::new());
            }
            C::delta(r, &content)?
                .ok()
                .filter(|t| t.len() <= TAIL_REFRESH_BYTES)
        });
        s.current_digest = content.digest();
        s.current = Some(content);
        match tail {
            Some(t) => out.push(self.publish(gw, Kind::Tail, "tail", t, true)),
            None => {
                self.write_snapshot(now, gw, out);
            }
        }
    }

    /// Publishes the held-back change of `gw` now (or the first version after a start).
    fn flush_now(&mut self, now: Now, gw: &str, out: &mut Vec<Publish>) {
        if !(self.phase == Phase::Live && self.connected) {
            return;
        }
        let Some(s) = self.streams.get_mut(gw) else {
            return;
        };
        let Some((want, digest)) = s.desired.take() else {
            return;
        };
        s.held_since = None;
        s.last_change = None;
        s.last_flush = Some(now.mono);
        if let Err(error) = want.check() {
            // Bad content never reaches an agent; the stream keeps what it has.
            self.refused.push(Refused {
                gateway: gw.to_string(),
                error,
            });
            return;
        }
        let Some(cur) = s.current.take() else {
            // A start: adopt what the agent holds if it is the desired content.
            let st = s.status;
            if let Some(held) = st
                .filter(|st| st.digest == Some(digest))
                .and_then(|st| st.held)
            {
                self.adopt(now, gw, want, held, out);
                return;
            }
            s.current = Some(want);
            s.current_digest = digest;
            let v = self.start_version(now, st.and_then(|st| st.held));
            self.publish_snapshot(now, gw, v, out);
            return;
        };
        if same_content(&cur, &want) {
            s.current = Some(cur);
            return;
        }
        let version = cur.version().next(now.wall_ms);
        let mut next = want;
        next.set_version(version);
        let delta = C::delta(&cur, &next);
        let Some(Ok(delta)) = delta else {
            // No delta carries it (settings, slot count) or it is too large: a snapshot.
            s.current = Some(next);
            s.current_digest = digest;
            self.publish_snapshot(now, gw, version, out);
            return;
        };
        let tail = s
            .retained
            .as_ref()
            .and_then(|r| C::delta(r, &next))
            .and_then(|t| t.ok())
            .filter(|t| t.len() <= TAIL_REFRESH_BYTES);
        s.current = Some(next);
        s.current_digest = digest;
        s.published_at = Some(now.mono);
        self.egress.versions += 1;
        match tail {
            Some(t) => out.push(self.publish(gw, Kind::Tail, "tail", t, true)),
            // The tail would pass the limit: the retained snapshot moves to this version.
            None => {
                self.write_snapshot(now, gw, out);
            }
        }
        out.push(self.publish(gw, Kind::Delta, "delta", delta, false));
    }

    /// The first version of a stream that cannot adopt the agent's: [`Version::start`] (the
    /// clock, or past what the agent holds), then `takeover_jump` further, so that it is newer
    /// than what a previous leader had in flight.
    fn start_version(&self, now: Now, held: Option<Version>) -> Version {
        let jump = u64::try_from(self.cfg.takeover_jump.as_millis()).unwrap_or(u64::MAX >> 2);
        let jump = jump.min(u64::MAX >> 2);
        let v = Version(Version::start(now.wall_ms, held).0.wrapping_add(jump));
        match held {
            // Near the half-way mark of the serial space the jump could pass it: stay newer.
            Some(h) if !v.is_newer_than(h) => Version(h.0.wrapping_add(1).wrapping_add(jump)),
            _ => v,
        }
    }

    /// Makes `version` the current version of the current content and publishes its
    /// snapshot (parts, empty tail, deletes), then a notice.
    fn publish_snapshot(&mut self, now: Now, gw: &str, version: Version, out: &mut Vec<Publish>) {
        let Some(s) = self.streams.get_mut(gw) else {
            return;
        };
        let Some(cur) = s.current.as_mut() else {
            return;
        };
        cur.set_version(version);
        let digest = s.current_digest;
        s.published_at = Some(now.mono);
        s.foreign_since = None;
        self.egress.versions += 1;
        if self.write_snapshot(now, gw, out) {
            if let Ok(bytes) = C::notice(gw, version, digest) {
                out.push(self.publish(gw, Kind::Notice, "delta", bytes, false));
            }
        }
    }

    /// Writes the current content as the retained snapshot: parts, an empty tail, deletes of
    /// the parts beyond. False if the encoder refused it.
    fn write_snapshot(&mut self, now: Now, gw: &str, out: &mut Vec<Publish>) -> bool {
        let Some(s) = self.streams.get_mut(gw) else {
            return false;
        };
        let Some(cur) = s.current.clone() else {
            return false;
        };
        let parts = match cur.encode_parts() {
            Ok(p) => p,
            Err(error) => {
                self.refused.push(Refused {
                    gateway: gw.to_string(),
                    error,
                });
                return false;
            }
        };
        let before = s.retained_parts.unwrap_or(MAX_PARTS);
        let n = parts.len();
        s.retained = Some(cur);
        s.retained_parts = Some(n);
        s.snapshot_at = Some(now.mono);
        self.egress.snapshots += 1;
        for (k, p) in parts.into_iter().enumerate() {
            out.push(self.publish(gw, Kind::Part, &format!("part/{k}"), p, true));
        }
        out.push(self.publish(gw, Kind::Tail, "tail", Vec::new(), true));
        for k in n..before {
            out.push(self.publish(gw, Kind::PartDelete, &format!("part/{k}"), Vec::new(), true));
        }
        true
    }

    fn publish(&self, gw: &str, kind: Kind, leaf: &str, payload: Vec<u8>, retain: bool) -> Publish {
        Publish {
            gateway: gw.to_string(),
            kind,
            topic: C::topic(&self.topics, gw, leaf),
            payload,
            retain,
            qos: Qos::AtLeastOnce,
        }
    }
}
