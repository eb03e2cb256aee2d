//! Branch autonomy (issue 14): which workers this gateway's branch can reach.
//!
//! - [`Prober`]: the pure state machine (no I/O, time passed in, seeded jitter): per node
//!   slot a schedule, the hysteresis (down after [`Params::down_after`] failures in a row, up
//!   after [`Params::up_after`] successes), a smoothed RTT; it asks for probes to start
//!   ([`Output::Start`]) within a bound of connects in flight, and keeps the down bitmap.
//! - [`BranchView`]: what the answer path and the status read, shared without a lock per
//!   query: the down bitmap and RTTs as `AtomicU32` words (32-bit MIPS has no 64-bit
//!   atomics), the zone layout they belong to, the answer policy (fail closed, RTT order,
//!   stale), the `reach` summary for the status.
//! - [`driver`]: the thread that runs it: non-blocking TCP connects with a timeout, all in
//!   one `poll(2)` loop (no thread per worker).
//!
//! Defaults and why (`docs/agent.md`, "Probing"): an up worker is probed every 0.8-1.0 s;
//! a failure is confirmed by further connects every 100 ms (they overlap: a blackholed
//! connect costs the whole 400 ms timeout) and the worker is down after 10 failures in a
//! row, so a cut is seen within 1.0 + 0.4 + 9 x 0.1 + 0.4 = 2.7 s. At 10 % packet loss a
//! connect fails with p = 1 - 0.9^2 = 0.19 (SYN or SYN-ACK lost; the timeout is shorter
//! than the 1 s SYN retransmit); 10 failures in a row then happen once in ~190 days of one
//! worker (p^9 per failed routine probe, one routine probe a second).

pub mod driver;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use sdwan_agent_core::v2zone::NodeView;
use sdwan_agent_core::{Health, ZoneV2, NO_BASE};
use sdwan_contract::v2::{Family, Proto, MAX_NODES, MAX_SERVICES};
use sdwan_link::status::{Reach, MAX_REACH_DOWN};

/// Words of the down bitmap (one bit per node slot).
pub const WORDS: usize = MAX_NODES / 32;

/// The probing settings (see the module documentation for the defaults' reasons).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// An up (or down) worker is probed every `interval` times 0.8..=1.0 (jitter).
    pub interval: Duration,
    /// Spacing of the confirming probes after a failure (or of a down worker's successes).
    pub confirm: Duration,
    /// A connect not established within this is a failure.
    pub timeout: Duration,
    /// Failures in a row that make a worker down.
    pub down_after: u8,
    /// Successes in a row that make a down worker up.
    pub up_after: u8,
    /// Connects in flight at most, over all workers.
    pub max_in_flight: usize,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            interval: Duration::from_secs(1),
            confirm: Duration::from_millis(100),
            timeout: Duration::from_millis(400),
            down_after: 10,
            up_after: 3,
            max_in_flight: 32,
        }
    }
}

/// One node slot's state.
#[derive(Debug, Clone, Copy)]
struct Slot {
    target: Option<SocketAddr>,
    down: bool,
    /// Failures (while up) or successes (while down) in a row.
    streak: u8,
    /// When the next probe is due.
    next: Duration,
    /// Smoothed RTT in microseconds (0: not measured).
    srtt_us: u32,
}

const EMPTY: Slot = Slot {
    target: None,
    down: false,
    streak: 0,
    next: Duration::ZERO,
    srtt_us: 0,
};

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Time passed: start what is due.
    Tick,
    /// A probe of `target` ended: `Some(rtt)` connected, `None` failed (refused, timeout).
    Result {
        /// The address probed.
        target: SocketAddr,
        /// The connect time, or `None`.
        rtt: Option<Duration>,
    },
    /// The zone changed: the probe target of each node slot (`None`: not probed). State
    /// follows a target to its new slot.
    Zone(Vec<Option<SocketAddr>>),
}

/// What to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Start a connect to `target` (node slot `slot`).
    Start {
        /// The node slot.
        slot: u16,
        /// The address and port.
        target: SocketAddr,
    },
    /// Slot `slot` is now down.
    Down(u16),
    /// Slot `slot` is up again.
    Up(u16),
}

/// The probing state machine (see the module documentation).
#[derive(Debug)]
pub struct Prober {
    params: Params,
    slots: Vec<Slot>,
    /// Probe target -> node slot, sorted by target (a sorted `Vec`: smaller code than a map).
    by_target: Vec<(SocketAddr, u16)>,
    in_flight: usize,
    rng: u64,
    down: [u32; WORDS],
}

impl Prober {
    /// A prober with no targets; `seed` drives the jitter.
    pub fn new(params: Params, seed: u64) -> Prober {
        Prober {
            params,
            slots: Vec::new(),
            by_target: Vec::new(),
            in_flight: 0,
            rng: seed | 1,
            down: [0; WORDS],
        }
    }

    /// The settings.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// xorshift64*: a fraction in 0..1.
    fn unit(&mut self) -> f64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn jittered(&mut self) -> Duration {
        self.params.interval.mul_f64(0.8 + 0.2 * self.unit())
    }

    /// Handles `input` at `now` (time since any fixed start), appending what to do to `out`.
    pub fn handle(&mut self, now: Duration, input: Input, out: &mut Vec<Output>) {
        match input {
            Input::Tick => {}
            Input::Result { target, rtt } => {
                self.in_flight = self.in_flight.saturating_sub(1);
                if let Some(i) = self.slot_of(&target) {
                    self.result(i, now, rtt, out);
                }
            }
            Input::Zone(targets) => self.zone(now, targets),
        }
        self.start_due(now, out);
    }

    fn result(&mut self, i: u16, now: Duration, rtt: Option<Duration>, out: &mut Vec<Output>) {
        let p = self.params;
        let s = &mut self.slots[usize::from(i)];
        match (rtt, s.down) {
            (Some(r), _) => {
                let us = r.as_micros().clamp(1, u128::from(u32::MAX)) as u32;
                // RFC 6298's smoothing: 7/8 old + 1/8 new.
                s.srtt_us = if s.srtt_us == 0 {
                    us
                } else {
                    ((u64::from(s.srtt_us) * 7 + u64::from(us)) / 8) as u32
                };
                if s.down {
                    s.streak += 1;
                    if s.streak >= p.up_after {
                        s.down = false;
                        s.streak = 0;
                        self.down[usize::from(i) / 32] &= !(1 << (i % 32));
                        out.push(Output::Up(i));
                    } else {
                        s.next = s.next.min(now + p.confirm);
                    }
                } else {
                    s.streak = 0;
                }
            }
            (None, true) => s.streak = 0,
            (None, false) => {
                s.streak += 1;
                if s.streak >= p.down_after {
                    s.down = true;
                    s.streak = 0;
                    s.srtt_us = 0;
                    self.down[usize::from(i) / 32] |= 1 << (i % 32);
                    out.push(Output::Down(i));
                } else {
                    s.next = s.next.min(now + p.confirm);
                }
            }
        }
    }

    fn zone(&mut self, now: Duration, targets: Vec<Option<SocketAddr>>) {
        let old = std::mem::take(&mut self.slots);
        let n = targets.len().clamp(1, usize::MAX) as u32;
        let mut slots = Vec::with_capacity(targets.len());
        let old_by_target = std::mem::take(&mut self.by_target);
        let old_slot = |t: &SocketAddr| {
            old_by_target
                .binary_search_by_key(t, |&(a, _)| a)
                .ok()
                .map(|k| old[old_by_target[k].1 as usize])
        };
        self.down = [0; WORDS];
        for (i, t) in targets.into_iter().enumerate().take(MAX_NODES) {
            let kept = t.and_then(|t| old_slot(&t));
            let slot = match (kept, t) {
                (Some(s), _) => s,
                (None, Some(t)) => Slot {
                    target: Some(t),
                    // Spread evenly over the interval.
                    next: now + self.params.interval * i as u32 / n,
                    ..EMPTY
                },
                (None, None) => EMPTY,
            };
            if let Some(t) = slot.target {
                self.by_target.push((t, i as u16));
            }
            if slot.down {
                self.down[i / 32] |= 1 << (i % 32);
            }
            slots.push(slot);
        }
        self.slots = slots;
        self.by_target.sort_unstable_by_key(|&(a, _)| a);
        // A target named by two slots (two nodes with one address) is looked up in one of
        // them, as a map would: results of the shared address update that slot.
        self.by_target.dedup_by_key(|&mut (a, _)| a);
    }

    /// The node slot probing `target`.
    fn slot_of(&self, target: &SocketAddr) -> Option<u16> {
        let k = self
            .by_target
            .binary_search_by_key(target, |&(a, _)| a)
            .ok()?;
        Some(self.by_target[k].1)
    }

    /// Starts due probes, earliest first, while fewer than `max_in_flight` are out.
    fn start_due(&mut self, now: Duration, out: &mut Vec<Output>) {
        while self.in_flight < self.params.max_in_flight {
            let due = self
                .slots
                .iter()
                .enumerate()
                .filter(|(_, s)| s.target.is_some() && s.next <= now)
                .min_by_key(|(_, s)| s.next)
                .map(|(i, _)| i);
            let Some(i) = due else { break };
            let suspect = self.slots[i].streak > 0;
            let next = if suspect {
                now + self.params.confirm
            } else {
                now + self.jittered()
            };
            let s = &mut self.slots[i];
            s.next = next;
            self.in_flight += 1;
            out.push(Output::Start {
                slot: i as u16,
                target: s.target.expect("filtered"),
            });
        }
    }

    /// When the next probe is due (or `None` with nothing to probe); with the bound
    /// reached, the next result comes first.
    pub fn next_due(&self) -> Option<Duration> {
        self.slots
            .iter()
            .filter(|s| s.target.is_some())
            .map(|s| s.next)
            .min()
    }

    /// The down bitmap.
    pub fn down_words(&self) -> &[u32; WORDS] {
        &self.down
    }

    /// Whether slot `i` is down.
    pub fn is_down(&self, i: u16) -> bool {
        self.slots.get(usize::from(i)).is_some_and(|s| s.down)
    }

    /// The smoothed RTT of slot `i` in microseconds (0: not measured or down).
    pub fn srtt_us(&self, i: u16) -> u32 {
        self.slots.get(usize::from(i)).map_or(0, |s| s.srtt_us)
    }

    /// Whether some up worker has a measured RTT.
    pub fn has_rtt(&self) -> bool {
        self.slots.iter().any(|s| !s.down && s.srtt_us > 0)
    }

    /// Number of slots probed.
    pub fn probed(&self) -> usize {
        self.slots.iter().filter(|s| s.target.is_some()).count()
    }

    /// Connects in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// The status summary: `names[i]` is slot `i`'s node name.
    /// Several slots may name one worker (per-service probing): `workers` counts workers,
    /// `down` lists each worker with a down slot once; the RTTs are the slots'.
    pub fn reach(&self, names: &[String]) -> Reach {
        let mut down: Vec<String> = Vec::new();
        let mut rtts: Vec<u32> = Vec::new();
        let mut workers: Vec<&str> = Vec::new();
        for (i, s) in self.slots.iter().enumerate() {
            if s.target.is_none() {
                continue;
            }
            let name = names.get(i).map_or("", String::as_str);
            workers.push(name);
            if s.down {
                down.push(name.to_owned());
            } else if s.srtt_us > 0 {
                rtts.push(s.srtt_us);
            }
        }
        workers.sort_unstable();
        workers.dedup();
        down.sort();
        down.dedup();
        let more = down.len().saturating_sub(MAX_REACH_DOWN) as u32;
        down.truncate(MAX_REACH_DOWN);
        rtts.sort_unstable();
        let ms = |us: u32| us.div_ceil(1000);
        let at = |q: usize| rtts[(rtts.len() - 1) * q / 100];
        Reach {
            workers: workers.len() as u32,
            down,
            more,
            rtt_ms: (!rtts.is_empty()).then(|| [ms(at(50)), ms(at(90)), ms(at(100))]),
        }
    }
}

/// The address of `node` probed on `port`: in the family the gateway answers first (IPv4
/// unless the policy is `ipv6`, else the other one).
fn address(node: &NodeView<'_>, family: Family, port: u16) -> Option<SocketAddr> {
    let v4 = node.v4.map(|a| SocketAddr::from((a, port)));
    let v6 = node.v6.map(|a| SocketAddr::from((a, port)));
    match family {
        Family::Ipv6 => v6,
        Family::Ipv4 => v4,
        Family::Dual => v4.or(v6),
    }
}

fn family<H: AsRef<[u8]> + AsMut<[u8]>>(zone: &ZoneV2<H>) -> Family {
    zone.header().map_or(Family::Dual, |h| h.family)
}

/// The probe target of each slot of `zone`: the node's [`address`] on `port`.
pub fn targets<H: AsRef<[u8]> + AsMut<[u8]>>(
    zone: &ZoneV2<H>,
    port: u16,
) -> (Vec<Option<SocketAddr>>, Vec<String>) {
    let family = family(zone);
    let mut t = Vec::new();
    let mut names = Vec::new();
    for slot in 0..zone.slot_count() as u16 {
        let node = zone.node(slot).filter(|n| n.candidate());
        t.push(node.and_then(|n| address(&n, family, port)));
        names.push(node.map_or_else(String::new, |n| {
            String::from_utf8_lossy(n.name).into_owned()
        }));
    }
    (t, names)
}

/// Per-service probing (`--probe-port service`): at most this many (service, candidate)
/// pairs, and so at most this many probe targets. Services are taken in (namespace, name)
/// order while their pairs fit; the rest are not probed on their own (their answers follow
/// the node state only).
pub const MAX_PAIRS: usize = 512;

/// No target for a pair (the host is not a present candidate).
const NO_TARGET: u16 = u16::MAX;

/// What per-service probing derives from a zone: the prober's targets, and how the answer
/// path's per-service bits map onto them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ServiceTargets {
    /// The prober's targets: (worker address, the service's NodePort), each once.
    pub targets: Vec<Option<SocketAddr>>,
    /// The worker (node slot) of each target.
    pub node: Vec<u16>,
    /// The worker's name of each target (the status lists workers).
    pub names: Vec<String>,
    /// `worker port NodePort (ns/name)` of each target, for the log.
    pub labels: Vec<String>,
    /// The first pair bit of each service, by index ([`NO_BASE`]: not probed).
    pub bases: Vec<u16>,
    /// The target of each pair bit ([`NO_TARGET`]: none).
    pub pair_target: Vec<u16>,
    /// Services with a TCP port left unprobed by [`MAX_PAIRS`].
    pub over_cap: usize,
}

/// The per-service targets of `zone`, at most `cap` pairs: for each service with a TCP
/// port, its first TCP port's NodePort on each of its candidate hosts.
pub fn service_targets<H: AsRef<[u8]> + AsMut<[u8]>>(
    zone: &ZoneV2<H>,
    cap: usize,
) -> ServiceTargets {
    let family = family(zone);
    let mut st = ServiceTargets::default();
    for i in 0..zone.service_count() {
        let Some(svc) = zone.service(i) else { break };
        let port = svc.ports().find(|p| p.proto == Proto::Tcp);
        let Some(port) = port.filter(|_| st.over_cap == 0) else {
            st.over_cap += usize::from(port.is_some());
            st.bases.push(NO_BASE);
            continue;
        };
        if st.pair_target.len() + svc.host_count() > cap.min(usize::from(NO_BASE)) {
            st.over_cap += 1;
            st.bases.push(NO_BASE);
            continue;
        }
        st.bases.push(st.pair_target.len() as u16);
        for slot in svc.hosts() {
            let node = zone.node(slot).filter(|n| n.candidate());
            let Some((n, a)) = node.and_then(|n| Some((n, address(&n, family, port.node_port)?)))
            else {
                st.pair_target.push(NO_TARGET);
                continue;
            };
            let t = match st.targets.iter().position(|&t| t == Some(a)) {
                Some(t) => t,
                None => {
                    let name = String::from_utf8_lossy(n.name).into_owned();
                    st.labels.push(format!(
                        "{name} port {} ({}/{})",
                        port.node_port,
                        String::from_utf8_lossy(svc.ns),
                        String::from_utf8_lossy(svc.name)
                    ));
                    st.targets.push(Some(a));
                    st.node.push(slot);
                    st.names.push(name);
                    st.targets.len() - 1
                }
            };
            st.pair_target.push(t as u16);
        }
    }
    st
}

/// The node bitmap of per-service probing: a worker is down when it has targets and all of
/// them are down (unreachable as a whole); its RTT is the least of its up targets'.
fn node_state(p: &Prober, st: &ServiceTargets) -> ([u32; WORDS], Vec<u32>) {
    let mut any_up = [0u32; WORDS];
    let mut any = [0u32; WORDS];
    let mut rtt = vec![0u32; MAX_NODES];
    for (t, &n) in st.node.iter().enumerate() {
        let (w, b) = (usize::from(n) / 32, 1 << (n % 32));
        any[w] |= b;
        if !p.is_down(t as u16) {
            any_up[w] |= b;
            let r = p.srtt_us(t as u16);
            let e = &mut rtt[usize::from(n)];
            if r > 0 && (*e == 0 || r < *e) {
                *e = r;
            }
        }
    }
    (std::array::from_fn(|w| any[w] & !any_up[w]), rtt)
}

/// A fingerprint of `zone`'s node slots (slot, addresses): the down bitmap of one layout
/// means nothing for another. Deltas that change no node keep it.
pub fn layout<H: AsRef<[u8]> + AsMut<[u8]>>(zone: &ZoneV2<H>) -> u64 {
    let mut h = Fnv::new();
    for slot in 0..zone.slot_count() as u16 {
        h.eat(&slot.to_be_bytes());
        if let Some(n) = zone.node(slot) {
            h.eat(&n.v4.unwrap_or_default());
            h.eat(&n.v6.unwrap_or_default());
            h.eat(&[u8::from(n.candidate())]);
        }
    }
    h.finish()
}

/// FNV-1a over the bytes of a layout; never 0, which means "no layout yet".
struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    fn eat(&mut self, b: &[u8]) {
        for &x in b {
            self.0 = (self.0 ^ u64::from(x)).wrapping_mul(0x100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0.max(1)
    }
}

/// A fingerprint of what per-service bits mean: [`layout`] and, per service in index
/// order, its name, ports and hosts. Deltas that change no service keep it.
pub fn service_layout<H: AsRef<[u8]> + AsMut<[u8]>>(zone: &ZoneV2<H>) -> u64 {
    let mut h = Fnv(layout(zone));
    for svc in (0..zone.service_count()).map_while(|i| zone.service(i)) {
        h.eat(&[svc.ns.len() as u8]);
        h.eat(svc.ns);
        h.eat(&[svc.name.len() as u8]);
        h.eat(svc.name);
        for p in svc.ports() {
            h.eat(&p.node_port.to_be_bytes());
            h.eat(&[u8::from(p.proto == Proto::Tcp)]);
        }
        h.eat(&(svc.host_count() as u16).to_be_bytes());
        for s in svc.hosts() {
            h.eat(&s.to_be_bytes());
        }
    }
    h.finish()
}

/// A [`layout`] in 32 bits, never 0 (0 means "none").
fn fold(layout: u64) -> u32 {
    ((layout ^ (layout >> 32)) as u32).max(1)
}

/// What the answer path and the status read of the prober (see the module documentation).
#[derive(Debug)]
pub struct BranchView {
    down: [AtomicU32; WORDS],
    rtt_us: Box<[AtomicU32]>,
    /// The [`layout`] the bitmap belongs to, folded to 32 bits ([`fold`]: 32-bit MIPS has no
    /// 64-bit atomics); 0 while it is being rewritten.
    layout: AtomicU32,
    /// Per-service probing: a bit per (service, candidate) pair, the first bit of each
    /// service (empty without it), and the [`service_layout`] they belong to, folded.
    pairs: [AtomicU32; MAX_PAIRS / 32],
    bases: Box<[AtomicU16]>,
    service_layout: AtomicU32,
    fail_closed: bool,
    rtt_order: bool,
    stale: AtomicBool,
    /// Tenths of a second since `start` when the broker was last seen connected (32 bits:
    /// 13 years; 32-bit MIPS has no 64-bit atomics).
    broker_seen_ds: AtomicU32,
    start: std::time::Instant,
    reach: Mutex<Option<Reach>>,
    reach_dirty: AtomicBool,
}

impl BranchView {
    /// An empty view: nothing down, not stale; `services`: per-service probing.
    pub fn new(fail_closed: bool, rtt_order: bool, services: bool) -> BranchView {
        let bases = if services { MAX_SERVICES } else { 0 };
        BranchView {
            down: std::array::from_fn(|_| AtomicU32::new(0)),
            rtt_us: (0..MAX_NODES).map(|_| AtomicU32::new(0)).collect(),
            layout: AtomicU32::new(0),
            pairs: std::array::from_fn(|_| AtomicU32::new(0)),
            bases: (0..bases).map(|_| AtomicU16::new(NO_BASE)).collect(),
            service_layout: AtomicU32::new(0),
            fail_closed,
            rtt_order,
            stale: AtomicBool::new(false),
            broker_seen_ds: AtomicU32::new(0),
            start: std::time::Instant::now(),
            reach: Mutex::new(None),
            reach_dirty: AtomicBool::new(false),
        }
    }

    /// Whether the view carries per-service bits (`--probe-port service`).
    pub fn services(&self) -> bool {
        !self.bases.is_empty()
    }

    /// The health the answer path uses for a zone of `layout` and [`service_layout`] `svc`
    /// (0 without per-service probing): the bitmaps that belong to them, else every node
    /// (and pair) up (a zone just swapped in, for the moment the prober takes to see it).
    /// No allocation, no lock.
    #[inline]
    pub fn health(&self, layout: u64, svc: u64) -> Health<'_> {
        let mut h = if self.layout.load(Ordering::Acquire) == fold(layout) {
            let h = Health::new(&self.down);
            if self.rtt_order {
                h.with_rtt(&self.rtt_us)
            } else {
                h
            }
        } else {
            Health::ALL_UP
        };
        if self.services() && self.service_layout.load(Ordering::Acquire) == fold(svc) {
            h = h.with_services(&self.pairs, &self.bases);
        }
        h.with_fail_closed(self.fail_closed)
            .with_stale(self.stale.load(Ordering::Relaxed))
    }

    /// Publishes the prober's bitmap for a zone of `layout`, and its RTTs when `rtt`.
    pub fn publish(&self, layout: u64, p: &Prober, rtt: bool) {
        let rtts = (self.rtt_order && rtt).then(|| (0..MAX_NODES as u16).map(|i| p.srtt_us(i)));
        self.publish_nodes(layout, p.down_words(), rtts);
    }

    fn publish_nodes(
        &self,
        layout: u64,
        down: &[u32; WORDS],
        rtts: Option<impl Iterator<Item = u32>>,
    ) {
        let layout = fold(layout);
        if self.layout.load(Ordering::Relaxed) != layout {
            self.layout.store(0, Ordering::Release);
        }
        for (w, &v) in self.down.iter().zip(down) {
            w.store(v, Ordering::Relaxed);
        }
        if let Some(rtts) = rtts.filter(|_| self.rtt_order) {
            for (r, v) in self.rtt_us.iter().zip(rtts) {
                r.store(v, Ordering::Relaxed);
            }
        }
        self.layout.store(layout, Ordering::Release);
    }

    /// Per-service probing: publishes the pair bits of the prober (whose slots are
    /// `st`'s targets) for a zone of [`service_layout`] `svc` and the node bitmap derived
    /// from them (a worker is down when all its targets are), its RTTs when `rtt`.
    pub fn publish_services(
        &self,
        layout: u64,
        svc: u64,
        p: &Prober,
        st: &ServiceTargets,
        rtt: bool,
    ) {
        let svc = fold(svc);
        if self.service_layout.load(Ordering::Relaxed) != svc {
            self.service_layout.store(0, Ordering::Release);
            for (i, b) in self.bases.iter().enumerate() {
                b.store(
                    st.bases.get(i).copied().unwrap_or(NO_BASE),
                    Ordering::Relaxed,
                );
            }
        }
        let mut pairs = [0u32; MAX_PAIRS / 32];
        for (k, &t) in st.pair_target.iter().enumerate().take(MAX_PAIRS) {
            if t != NO_TARGET && p.is_down(t) {
                pairs[k / 32] |= 1 << (k % 32);
            }
        }
        for (w, v) in self.pairs.iter().zip(pairs) {
            w.store(v, Ordering::Relaxed);
        }
        self.service_layout.store(svc, Ordering::Release);
        let (down, rtts) = node_state(p, st);
        self.publish_nodes(layout, &down, rtt.then(|| rtts.into_iter()));
    }

    /// The broker connection is up now.
    pub fn broker_seen(&self) {
        let ds = (self.start.elapsed().as_millis() / 100).min(u128::from(u32::MAX)) as u32;
        self.broker_seen_ds.store(ds, Ordering::Relaxed);
    }

    /// Marks answers stale when the broker was last seen more than `after` ago (`None`:
    /// never stale); returns whether they are.
    pub fn update_stale(&self, after: Option<Duration>) -> bool {
        let seen =
            Duration::from_millis(u64::from(self.broker_seen_ds.load(Ordering::Relaxed)) * 100);
        let stale = after.is_some_and(|a| self.start.elapsed().saturating_sub(seen) > a);
        if self.stale.swap(stale, Ordering::Relaxed) != stale {
            if stale {
                log::warn!(
                    "no broker for more than {} s: answers are marked stale (EDE 3, TTL <= 30 s)",
                    after.unwrap_or_default().as_secs()
                );
            } else {
                log::info!("broker back: answers are no longer stale");
            }
        }
        stale
    }

    /// Sets the status summary; `urgent` (the down set changed) asks for a status now.
    pub fn set_reach(&self, reach: Reach, urgent: bool) {
        let mut r = self.reach.lock().unwrap_or_else(|e| e.into_inner());
        if r.as_ref() != Some(&reach) {
            *r = Some(reach);
            if urgent {
                self.reach_dirty.store(true, Ordering::Relaxed);
            }
        }
    }

    /// No summary (nothing is probed); asks for a status if there was one.
    pub fn clear_reach(&self) {
        let mut r = self.reach.lock().unwrap_or_else(|e| e.into_inner());
        if r.take().is_some() {
            self.reach_dirty.store(true, Ordering::Relaxed);
        }
    }

    /// The status summary, if the prober made one.
    pub fn reach(&self) -> Option<Reach> {
        self.reach.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether a status is due for `reach` (and clears the request).
    pub fn take_reach_dirty(&self) -> bool {
        self.reach_dirty.swap(false, Ordering::Relaxed)
    }

    /// Asks for a status for the summary (the periodic RTT update).
    pub fn mark_reach_dirty(&self) {
        self.reach_dirty.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests;
