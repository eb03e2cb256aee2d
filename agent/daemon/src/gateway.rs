//! Gateway MQTT mode on payload v2 (`docs/payload-v2.md`): the driver around the core's
//! [`Staging`] and [`ZoneV2::apply_delta`](sdwan_agent_core::ZoneV2::apply_delta) and the
//! contract's acceptance rules (`sdwan_contract::v2::accept`).
//!
//! [`GatewayV2`] is an [`mqtt::Sink`](crate::mqtt::Sink): it is subscribed to
//! `P/gateways/ID/v2/delta` always, and to `v2/tail` and `v2/part/+` only while it resyncs
//! (at start, after a gap, a notice, a digest mismatch); once it serves a version at least as
//! new as the one that made it resync, it unsubscribes. Its rules:
//! - parts are staged in a [`Staging`] of their own; a whole, checked snapshot (with the
//!   retained tail applied on it when the tail starts from it) is swapped in whole;
//! - deltas and tails are applied into a spare zone built from the held one, checked against
//!   their digest, and swapped in whole; a delta only on exactly its base; a delta for
//!   another base starts a resync; replays are ignored; a version reused with other content
//!   is rejected and reported; versions compare by RFC 1982 (`u64::MAX -> 0` is newer);
//! - empty messages are "nothing here";
//! - after a reconnect it resyncs too (deltas sent while the session was down are lost);
//! - after [`WANT_AFTER`] of resync without a whole snapshot, the status says
//!   `"want":"snapshot"` (the master then republishes it);
//! - after every swap the status is published with `held`, `digest` and `error` (the last
//!   rejection), `serial` null; a whole snapshot is persisted (`persist::save_v2`) before
//!   that, deltas at most every [`PERSIST_EVERY`] (the last one at the next tick, also
//!   when the connection drops).
//!
//! While resyncing, a retained snapshot older than the held version is still staged when
//! the retained tail starts from it, since snapshot and tail together make a newer version
//! (an agent that was current, then offline through changes, catches up at once).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use sdwan_agent_core::v2zone::{PartStatus, Staging, Work, ZoneError};
use sdwan_agent_core::ZoneV2;
use sdwan_contract::v2::accept::{self, DeltaAction, Held, NoticeAction, PartAction};
use sdwan_contract::v2::decode::{self, Envelope, Scratch, Visitor};
use sdwan_contract::v2::{Kind, Version, MAX_PARTS};
use sdwan_link::{Status, Topics};

use crate::persist;
use crate::store::{OwnedZoneV2, ZoneStore};
use crate::VERSION;

/// Bytes of each v2 zone's record heap. Allocated zeroed and untouched, so only what a
/// zone uses is resident (~0.4 MB for 5,000 services on 500 workers); a zone that does not
/// fit is refused with "zone storage full".
pub const ZONE_HEAP_BYTES: usize = 8 << 20;

/// Deltas are persisted at most this often (flash wear: a busy cluster changes a gateway's
/// zone many times a minute, and each write is the whole zone); the rest at the next tick.
/// A whole snapshot is persisted at once.
pub const PERSIST_EVERY: Duration = Duration::from_secs(5);

/// How long a resync may wait for a whole snapshot before the status asks for one.
pub const WANT_AFTER: Duration = Duration::from_secs(10);

/// An empty zone with a heap of [`ZONE_HEAP_BYTES`].
pub fn new_zone() -> Box<OwnedZoneV2> {
    Box::new(ZoneV2::new(heap()))
}

/// A zeroed record heap of [`ZONE_HEAP_BYTES`].
pub fn heap() -> Box<[u8]> {
    vec![0u8; ZONE_HEAP_BYTES].into_boxed_slice()
}

/// Reads only a message's envelope (after the checked door).
struct Peek(Option<Envelope>);

impl Visitor for Peek {
    fn envelope(&mut self, env: &Envelope) -> Result<(), &'static str> {
        self.0 = Some(*env);
        Err("envelope read")
    }
}

pub(crate) fn peek(msg: &[u8], scratch: &mut Scratch) -> Result<Envelope, decode::Error> {
    let mut p = Peek(None);
    match decode::decode(msg, scratch, &mut p) {
        Ok(env) => Ok(env),
        Err(e) => p.0.ok_or(e),
    }
}

/// Shows a held version and digest (or "nothing").
fn show(h: Option<Held>) -> String {
    h.map_or_else(
        || "nothing".into(),
        |h| format!("version {} digest {}", h.version.0, h.digest),
    )
}

#[derive(Debug, Clone, Copy)]
struct Resync {
    since: Instant,
    /// The version that made it resync (notice, delta); `None` at start.
    target: Option<Version>,
}

/// Parts of one retained snapshot seen, whatever was done with them.
#[derive(Debug, Clone, Copy)]
struct Seen {
    version: Version,
    parts: u8,
    mask: u64,
}

/// The gateway's payload v2 state machine (see the module documentation).
pub struct GatewayV2 {
    id: String,
    delta_topic: String,
    tail_topic: String,
    part_filter: String,
    part_prefix: String,
    state_dir: Option<PathBuf>,
    store: Arc<ZoneStore>,
    work: Box<Work>,
    scratch: Box<Scratch>,
    staging: Option<Box<Staging<Box<[u8]>>>>,
    /// Time spent decoding and staging parts since the last whole snapshot.
    part_time: Duration,
    /// The zone in use is not on disk yet.
    persist_due: bool,
    /// When the zone was last written.
    persisted_at: Option<Instant>,
    /// The time of the message being handled.
    now: Instant,
    /// The retained tail, kept while it cannot be applied yet (its base is being fetched).
    tail: Option<Vec<u8>>,
    resync: Option<Resync>,
    seen: Option<Seen>,
    last_error: Option<String>,
    want: bool,
    /// The status document changed.
    dirty: bool,
    /// The branch view of a probing gateway (issue 14): `reach` in the status, the broker
    /// seen for stale answers.
    view: Option<Arc<crate::probe::BranchView>>,
    /// The broker connection is up.
    link_up: bool,
}

impl std::fmt::Debug for GatewayV2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayV2")
            .field("id", &self.id)
            .field("held", &self.store.held())
            .field("resync", &self.resync)
            .field("want", &self.want)
            .finish()
    }
}

impl GatewayV2 {
    /// The state machine of gateway `id` on `topics`, serving into `store` and persisting
    /// into `state_dir` when given. It starts resyncing (it reads the retained snapshot).
    pub fn new(
        id: &str,
        topics: &Topics,
        state_dir: Option<PathBuf>,
        store: Arc<ZoneStore>,
        now: Instant,
    ) -> GatewayV2 {
        let part_filter = topics.gateway_v2(id, "part/+");
        GatewayV2 {
            id: id.to_string(),
            delta_topic: topics.gateway_v2(id, "delta"),
            tail_topic: topics.gateway_v2(id, "tail"),
            part_prefix: part_filter.trim_end_matches('+').to_string(),
            part_filter,
            state_dir,
            store,
            work: Box::new(Work::new()),
            scratch: Box::new(Scratch::new()),
            staging: None,
            part_time: Duration::ZERO,
            persist_due: false,
            persisted_at: None,
            now,
            tail: None,
            resync: Some(Resync {
                since: now,
                target: None,
            }),
            seen: None,
            last_error: None,
            want: false,
            dirty: false,
            view: None,
            link_up: false,
        }
    }

    /// Reports the branch view in the status (`reach`) and the broker's presence to it.
    pub fn set_view(&mut self, view: Option<Arc<crate::probe::BranchView>>) {
        self.view = view;
    }

    /// What is served (version and digest), if a v2 zone is.
    pub fn held(&self) -> Option<Held> {
        self.store.held()
    }

    /// Whether it is resyncing (subscribed to the snapshot topics).
    pub fn resyncing(&self) -> bool {
        self.resync.is_some()
    }

    /// The last rejection, `None` after an apply.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    fn reject(&mut self, why: String) {
        warn!("rejected: {why}; keeping {}", show(self.held()));
        self.last_error = Some(why);
        self.dirty = true;
    }

    fn start_resync(&mut self, target: Option<Version>, why: &str, now: Instant) {
        if let (Some(h), Some(t)) = (self.held(), target) {
            if !t.is_newer_than(h.version) {
                return;
            }
        }
        match &mut self.resync {
            Some(r) => {
                if let Some(t) = target {
                    if r.target.is_none_or(|old| t.is_newer_than(old)) {
                        r.target = Some(t);
                    }
                }
                debug!("still resyncing ({why})");
            }
            None => {
                info!("resync because {why}: reading the retained snapshot and tail");
                self.resync = Some(Resync { since: now, target });
                self.seen = None;
            }
        }
    }

    /// Ends the resync when what is held is at least as new as what it waits for.
    fn maybe_current(&mut self) {
        let (Some(r), Some(h)) = (self.resync, self.held()) else {
            return;
        };
        if r.target.is_some_and(|t| t.is_newer_than(h.version)) {
            return;
        }
        info!("current at {}: leaving the snapshot topics", show(Some(h)));
        self.resync = None;
        self.staging = None;
        self.part_time = Duration::ZERO;
        self.tail = None;
        self.seen = None;
        if self.want {
            self.want = false;
            self.dirty = true;
        }
    }

    /// Swaps `zone` in, clears the error, persists it (a snapshot at once; a delta at most
    /// every [`PERSIST_EVERY`], the rest on a later tick).
    fn install(&mut self, zone: Box<OwnedZoneV2>, snapshot: bool, now: Instant) {
        self.store.swap_v2(zone);
        self.last_error = None;
        self.dirty = true;
        self.persist_due = true;
        if snapshot
            || self
                .persisted_at
                .is_none_or(|t| now.saturating_duration_since(t) >= PERSIST_EVERY)
        {
            self.persist(now);
        }
        self.maybe_current();
    }

    /// Writes the zone in use to the state directory, if one is set and a write is due.
    fn persist(&mut self, now: Instant) {
        if !std::mem::take(&mut self.persist_due) {
            return;
        }
        let Some(dir) = &self.state_dir else { return };
        let t = Instant::now();
        let served = self.store.load_full();
        let Some(zone) = served.as_deref().and_then(|s| s.v2()) else {
            return;
        };
        let held = zone.held();
        let saved = persist::save_v2(dir, zone);
        self.persisted_at = Some(now);
        debug!(
            "persisted {} in {} ms",
            show(held),
            crate::Tenths::millis(t.elapsed())
        );
        if let Err(e) = saved {
            let msg = format!(
                "{} applied but not persisted to {}: {e}",
                show(held),
                dir.display()
            );
            warn!("{msg}");
            self.last_error = Some(msg);
            self.dirty = true;
        }
    }

    fn on_part(&mut self, topic: &str, payload: &[u8], now: Instant) {
        if payload.is_empty() {
            debug!("{topic}: empty (nothing here)");
            return;
        }
        let env = match peek(payload, &mut self.scratch) {
            Ok(env) => env,
            Err(e) => return self.reject(format!("snapshot part on {topic}: {e}")),
        };
        if env.kind != Kind::Part {
            return self.reject(format!(
                "a {} message on a snapshot part topic",
                env.kind.as_str()
            ));
        }
        if env.gateway.as_str() != self.id {
            return self.reject(format!(
                "snapshot part for gateway {:?}, this is {:?}",
                env.gateway.as_str(),
                self.id
            ));
        }
        let what = format!(
            "snapshot part {} of {} of version {} digest {}",
            env.part, env.parts, env.version.0, env.digest
        );
        let held = self.held();
        // A retained snapshot older than the held version is still staged, while resyncing,
        // when the retained tail starts from it: together they make a newer version.
        let older = held.is_some_and(|h| h.version.is_newer_than(env.version));
        let base_of_tail = older && self.resync.is_some() && self.tail_base() == Some(env.version);
        self.see(&env, now);
        if let Some(h) = held.filter(|h| h.version == env.version) {
            if h.digest != env.digest {
                self.reject(format!(
                    "{what}: version {} reused with other content (held digest {})",
                    env.version.0, h.digest
                ));
            } else {
                debug!("{what}: held already");
            }
            return;
        }
        if older && !base_of_tail {
            debug!("{what}: older than {}, ignored", show(held));
            return;
        }
        let staging = self
            .staging
            .get_or_insert_with(|| Box::new(Staging::new(heap())));
        let held_for_rules = if base_of_tail { None } else { held };
        let t = Instant::now();
        let staged = staging.part(&self.id, held_for_rules, payload, &mut self.work);
        self.part_time += t.elapsed();
        match staged {
            Ok(PartStatus::Waiting(n)) => debug!("{what}: staged, {n} missing"),
            Ok(PartStatus::Complete) => self.finish_snapshot(&env),
            Ok(PartStatus::Skipped(PartAction::Conflict)) => {
                let other = match held.filter(|h| h.version == env.version) {
                    Some(h) => format!("held digest {}", h.digest),
                    None => staging
                        .staging()
                        .map_or_else(String::new, |s| format!("staged digest {}", s.digest)),
                };
                self.reject(format!(
                    "{what}: version {} reused with other content ({other})",
                    env.version.0
                ));
            }
            Ok(PartStatus::Skipped(a)) => debug!("{what}: {a:?}"),
            Err(e) => self.reject(format!("{what}: {e}")),
        }
    }

    /// Notes a part of a retained snapshot; once every part of a snapshot that is not newer
    /// than the held version was seen (a replay, or older with no tail to make it newer),
    /// the retained content has nothing newer to give.
    fn see(&mut self, env: &Envelope, _now: Instant) {
        let parts = env.parts.min(MAX_PARTS as u8);
        let s = match &mut self.seen {
            Some(s) if s.version == env.version && s.parts == parts => s,
            other => other.insert(Seen {
                version: env.version,
                parts,
                mask: 0,
            }),
        };
        s.mask |= 1u64 << (env.part % 64);
        let whole = s.mask.count_ones() as u8 == s.parts;
        let version = s.version;
        let Some(h) = self.held() else { return };
        if whole && !version.is_newer_than(h.version) && self.tail_base() != Some(version) {
            debug!(
                "retained snapshot {} seen whole; nothing newer than {}",
                version.0,
                show(Some(h))
            );
            self.maybe_current();
        }
    }

    fn tail_base(&self) -> Option<Version> {
        let tail = self.tail.as_deref()?;
        let mut scratch = Scratch::new();
        peek(tail, &mut scratch).ok()?.base
    }

    /// The staged snapshot is whole: apply the retained tail on it when it starts from it,
    /// swap in.
    fn finish_snapshot(&mut self, env: &Envelope) {
        let t = Instant::now();
        let spent = std::mem::take(&mut self.part_time);
        let Some(mut st) = self.staging.take() else {
            return;
        };
        let held = self.held();
        let Some(snap) = st.complete().and_then(|z| z.held()) else {
            return;
        };
        let mut with_tail = None;
        if let Some(tail) = self.tail.take() {
            let mut spare = new_zone();
            let zone = st.complete().expect("complete");
            match zone.apply_delta(&mut spare, &self.id, &tail, &mut self.work) {
                Ok(DeltaAction::Apply) => with_tail = Some(spare),
                Ok(DeltaAction::Gap) => self.tail = Some(tail),
                Ok(a) => debug!("tail on snapshot {}: {a:?}", snap.version.0),
                Err(e) => self.reject(format!("tail on snapshot {}: {e}", snap.version.0)),
            }
        }
        let zone = match with_tail {
            Some(z) => z,
            None => {
                let mut z = Box::new(OwnedZoneV2::new(Box::default()));
                st.swap_into(&mut z);
                z
            }
        };
        drop(st);
        let result = zone.held();
        if held.is_some_and(|h| result.is_none_or(|r| !r.version.is_newer_than(h.version))) {
            debug!(
                "snapshot {} (and tail) not newer than {}: dropped",
                snap.version.0,
                show(held)
            );
            return;
        }
        let ms = crate::Tenths::millis(spent + t.elapsed());
        match (result, with_tail_version(&snap, result)) {
            (Some(r), Some(_)) => info!(
                "applied snapshot {} digest {} in {} parts and the tail {}->{}: now {} ({ms} ms \
                 to decode, check and apply)",
                snap.version.0,
                snap.digest,
                env.parts,
                snap.version.0,
                r.version.0,
                show(Some(r))
            ),
            _ => info!(
                "applied snapshot {} digest {} in {} parts ({ms} ms to decode and check)",
                snap.version.0, snap.digest, env.parts
            ),
        }
        self.install(zone, true, self.now);
    }

    fn on_delta_topic(&mut self, payload: &[u8], now: Instant) {
        if payload.is_empty() {
            debug!("delta: empty (nothing here)");
            return;
        }
        let env = match peek(payload, &mut self.scratch) {
            Ok(env) => env,
            Err(e) => return self.reject(format!("message on the delta topic: {e}")),
        };
        if env.gateway.as_str() != self.id {
            return self.reject(format!(
                "{} for gateway {:?}, this is {:?}",
                env.kind.as_str(),
                env.gateway.as_str(),
                self.id
            ));
        }
        match env.kind {
            Kind::Notice => match accept::notice(self.held(), env.version, env.digest) {
                NoticeAction::Resync => self.start_resync(
                    Some(env.version),
                    &format!(
                        "a notice of version {} digest {}",
                        env.version.0, env.digest
                    ),
                    now,
                ),
                NoticeAction::Conflict => self.reject(format!(
                    "notice of version {} digest {}: version reused with other content (held \
                     digest {})",
                    env.version.0,
                    env.digest,
                    self.held().map(|h| h.digest).unwrap_or_default()
                )),
                NoticeAction::Ignore => debug!("notice of version {}: ignored", env.version.0),
            },
            Kind::Delta => self.on_delta(payload, &env, "delta", now),
            Kind::Part => self.reject("a snapshot part on the delta topic".into()),
        }
    }

    fn on_tail(&mut self, payload: &[u8], now: Instant) {
        if payload.is_empty() {
            debug!("tail: empty (nothing here)");
            self.tail = None;
            return;
        }
        let env = match peek(payload, &mut self.scratch) {
            Ok(env) => env,
            Err(e) => return self.reject(format!("tail: {e}")),
        };
        if env.kind != Kind::Delta {
            return self.reject(format!("a {} message on the tail topic", env.kind.as_str()));
        }
        if env.gateway.as_str() != self.id {
            return self.reject(format!(
                "tail for gateway {:?}, this is {:?}",
                env.gateway.as_str(),
                self.id
            ));
        }
        self.on_delta(payload, &env, "tail", now);
    }

    /// A delta or tail: applied on exactly its base.
    fn on_delta(&mut self, payload: &[u8], env: &Envelope, what: &str, now: Instant) {
        let base = env.base.unwrap_or(Version(0));
        let label = format!("{what} {}->{} digest {}", base.0, env.version.0, env.digest);
        let served = self.store.load_full();
        let Some(zone) = served
            .as_deref()
            .and_then(|s| s.v2())
            .filter(|z| z.held().is_some())
        else {
            debug!("{label}: nothing held yet, waiting for the snapshot");
            if what == "tail" {
                self.tail = Some(payload.to_vec());
            }
            self.start_resync(Some(env.version), "a delta while nothing is held", now);
            return;
        };
        let held = zone.held();
        let t = Instant::now();
        let mut spare = new_zone();
        let result = zone.apply_delta(&mut spare, &self.id, payload, &mut self.work);
        let ms = crate::Tenths::millis(t.elapsed());
        drop(served);
        match result {
            Ok(DeltaAction::Apply) => {
                info!("applied {label} ({ms} ms to apply and check)");
                self.install(spare, false, now);
            }
            Ok(DeltaAction::Replay) => {
                debug!("{label}: already held");
                if what == "tail" {
                    // The retained content is what is held.
                    self.tail = None;
                    self.maybe_current();
                }
            }
            Ok(DeltaAction::Ignore | DeltaAction::Wait) => debug!("{label}: older, ignored"),
            Ok(DeltaAction::Conflict) => self.reject(format!(
                "{label}: version {} reused with other content (held digest {})",
                env.version.0,
                held.map(|h| h.digest).unwrap_or_default()
            )),
            Ok(DeltaAction::Gap) => {
                if what == "tail" {
                    self.tail = Some(payload.to_vec());
                }
                self.start_resync(
                    Some(env.version),
                    &format!("{label} does not start from the held {}", show(held)),
                    now,
                );
            }
            Err(ZoneError::DigestMismatch) => {
                self.reject(format!(
                    "{label}: the content after applying it has another digest"
                ));
                self.start_resync(Some(env.version), &format!("{label} did not apply"), now);
            }
            Err(e) => {
                self.reject(format!("{label}: {e}"));
                self.start_resync(Some(env.version), &format!("{label} did not apply"), now);
            }
        }
    }
}

fn with_tail_version(snap: &Held, result: Option<Held>) -> Option<Version> {
    result
        .filter(|r| r.version != snap.version)
        .map(|r| r.version)
}

impl crate::mqtt::Sink for GatewayV2 {
    fn subscriptions(&self) -> Vec<String> {
        let mut t = vec![self.delta_topic.clone()];
        if self.resync.is_some() {
            // The tail first: brokers send retained messages in the order of the filters,
            // so the tail is known when the snapshot completes.
            t.push(self.tail_topic.clone());
            t.push(self.part_filter.clone());
        }
        t
    }

    fn connected(&mut self, now: Instant) {
        self.link_up = true;
        if let Some(v) = &self.view {
            v.broker_seen();
        }
        // Clean session: the retained snapshot comes again; the wait for it starts now.
        // After a reconnect, deltas published while the session was down are lost: read
        // the retained snapshot and tail again (parts of the held version are replays).
        match &mut self.resync {
            Some(r) => r.since = now,
            None => self.start_resync(None, "the broker connection was re-established", now),
        }
        self.seen = None;
    }

    fn disconnected(&mut self) {
        self.link_up = false;
    }

    fn handle(&mut self, topic: &str, payload: &[u8], now: Instant) -> bool {
        self.now = now;
        if topic == self.delta_topic {
            self.on_delta_topic(payload, now);
        } else if topic == self.tail_topic {
            if self.resync.is_some() {
                self.on_tail(payload, now);
            } else {
                debug!("tail after the resync ended: ignored");
            }
        } else if topic.starts_with(&self.part_prefix) {
            self.on_part(topic, payload, now);
        } else {
            debug!("ignoring message on {topic}");
        }
        std::mem::take(&mut self.dirty)
    }

    fn tick(&mut self, now: Instant) -> bool {
        if let Some(v) = &self.view {
            // Ticks come about once a second, and only while connected (and once more when
            // the connection drops): a status for `reach` at most once a second.
            if self.link_up {
                v.broker_seen();
            }
            if v.take_reach_dirty() {
                self.dirty = true;
            }
        }
        if self.persist_due
            && self
                .persisted_at
                .is_none_or(|t| now.saturating_duration_since(t) >= PERSIST_EVERY)
        {
            self.persist(now);
        }
        if let Some(r) = self.resync {
            if !self.want && now.saturating_duration_since(r.since) >= WANT_AFTER {
                warn!(
                    "no whole snapshot within {} s of resync (holding {}): the status asks for one",
                    WANT_AFTER.as_secs(),
                    show(self.held())
                );
                self.want = true;
                self.dirty = true;
            }
        }
        std::mem::take(&mut self.dirty)
    }

    fn status(&self) -> Status {
        let mut s = Status::online(None, self.last_error.clone(), VERSION);
        if let Some(h) = self.held() {
            s.held = Some(h.version.0);
            s.digest = Some(h.digest.to_string());
        }
        if self.want {
            s.want = Some("snapshot".into());
        }
        s.reach = self.view.as_ref().and_then(|v| v.reach());
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mqtt::Sink;
    use sdwan_contract::v2::encode::{encode_notice, Delta, Service, Snapshot};
    use sdwan_contract::v2::{Family, Node, Str, Tier, ZoneHeader};

    fn snap(version: u64, addr: u8) -> Snapshot {
        Snapshot {
            gateway: "gw-a".into(),
            version: Version(version),
            zone: ZoneHeader {
                suffix: Str::new("k8s.internal").unwrap(),
                local: Str::new("local").unwrap(),
                ttl: 30,
                service_ttl: 10,
                family: Family::Dual,
                nodes: 1,
                probe: None,
            },
            nodes: vec![Some(Node {
                name: Str::new("worker-1").unwrap(),
                tier: Tier::Near,
                v4: Some([10, 0, 0, addr].into()),
                v6: None,
            })],
            services: vec![Service {
                ns: "default".into(),
                name: "svc".into(),
                short: true,
                ports: vec![],
                hosts: vec![0],
            }],
        }
    }

    struct T {
        gw: GatewayV2,
        t0: Instant,
        topics: Topics,
    }

    impl T {
        fn new() -> T {
            let topics = Topics::new("p").unwrap();
            let t0 = Instant::now();
            let gw = GatewayV2::new("gw-a", &topics, None, Arc::new(ZoneStore::new()), t0);
            T { gw, t0, topics }
        }
        fn send(&mut self, leaf: &str, msg: &[u8], secs: u64) -> bool {
            let topic = self.topics.gateway_v2("gw-a", leaf);
            self.gw
                .handle(&topic, msg, self.t0 + Duration::from_secs(secs))
        }
        fn snapshot(&mut self, s: &Snapshot) {
            for (k, p) in s.encode().unwrap().iter().enumerate() {
                self.send(&format!("part/{k}"), p, 0);
            }
        }
        fn subs(&self) -> usize {
            self.gw.subscriptions().len()
        }
        fn held(&self) -> Option<u64> {
            self.gw.held().map(|h| h.version.0)
        }
    }

    #[test]
    fn subscriptions_follow_the_need_for_a_snapshot() {
        let mut t = T::new();
        assert_eq!(t.subs(), 3, "at start: delta, tail, part/+");
        let s1 = snap(1, 1);
        t.snapshot(&s1);
        assert_eq!((t.held(), t.subs()), (Some(1), 1));
        let s2 = snap(2, 2);
        let notice = encode_notice("gw-a", s2.version, s2.digest()).unwrap();
        assert!(!t.send("delta", &notice, 0), "a notice changes no status");
        assert_eq!(t.subs(), 3, "a notice of a newer version: resync");
        t.snapshot(&s2);
        assert_eq!((t.held(), t.subs()), (Some(2), 1));
        // A reconnect reads the retained snapshot again; the held one seen whole ends it.
        t.gw.connected(t.t0);
        assert_eq!(t.subs(), 3);
        t.snapshot(&s2);
        assert_eq!((t.held(), t.subs()), (Some(2), 1));
    }

    #[test]
    fn the_status_wants_a_snapshot_after_10_s_of_resync() {
        let mut t = T::new();
        // (seconds after the start, status changed, want)
        for (secs, changed, want) in [
            (0, false, None),
            (9, false, None),
            (10, true, Some("snapshot")),
            (11, false, Some("snapshot")),
        ] {
            let now = t.t0 + Duration::from_secs(secs);
            assert_eq!(t.gw.tick(now), changed, "{secs} s");
            assert_eq!(t.gw.status().want.as_deref(), want, "{secs} s");
        }
        let s1 = snap(1, 1);
        t.snapshot(&s1);
        let st = t.gw.status();
        assert_eq!((st.want, st.held, st.serial), (None, Some(1), None));
        assert_eq!(st.digest, Some(s1.digest().to_string()));
    }

    #[test]
    fn a_snapshot_is_persisted_at_once_and_deltas_at_most_every_5_s() {
        let dir = sdwan_testsupport::TempDir::new("gateway-persist");
        let mut t = T::new();
        t.gw.state_dir = Some(dir.path().to_path_buf());
        let on_disk = || {
            persist::load_v2_zone(dir.path(), "gw-a")
                .and_then(|z| z.held())
                .map(|h| h.version.0)
        };
        let snaps: Vec<Snapshot> = (1..=4).map(|v| snap(v, v as u8)).collect();
        t.snapshot(&snaps[0]);
        assert_eq!(on_disk(), Some(1), "a snapshot at once");
        // (second of the step, delta to version or a tick, on disk after it)
        let steps: [(u64, Option<usize>, u64); 6] = [
            (1, Some(1), 1),
            (2, Some(2), 1),
            (4, None, 1),
            (5, None, 3),
            (6, Some(3), 3),
            (10, None, 4),
        ];
        for (secs, delta, want) in steps {
            match delta {
                Some(i) => {
                    let d = Delta::between(&snaps[i - 1], &snaps[i])
                        .unwrap()
                        .encode()
                        .unwrap();
                    t.send("delta", &d, secs);
                }
                None => {
                    t.gw.tick(t.t0 + Duration::from_secs(secs));
                }
            }
            assert_eq!(on_disk(), Some(want), "at {secs} s");
        }
    }

    #[test]
    fn an_older_retained_snapshot_with_its_tail_catches_up_a_newer_held_zone() {
        let mut t = T::new();
        let s: Vec<Snapshot> = (0..=5).map(|v| snap(v, v as u8 + 1)).collect();
        t.snapshot(&s[1]);
        for v in 2..=3 {
            let d = Delta::between(&s[v - 1], &s[v]).unwrap().encode().unwrap();
            t.send("delta", &d, 0);
        }
        assert_eq!(t.held(), Some(3));
        // Offline through 4 and 5; the retained snapshot is still 1, the tail 1 -> 5.
        t.gw.connected(t.t0);
        let tail = Delta::between(&s[1], &s[5]).unwrap().encode().unwrap();
        t.send("tail", &tail, 0);
        assert_eq!(
            (t.held(), t.subs()),
            (Some(3), 3),
            "the tail waits for its base"
        );
        t.snapshot(&s[1]);
        assert_eq!((t.held(), t.subs()), (Some(5), 1), "snapshot 1 + tail: 5");
        assert_eq!(t.gw.last_error(), None);
        assert_eq!(t.gw.held().unwrap().digest, s[5].digest());
    }

    #[test]
    fn deltas_apply_only_on_their_base() {
        let mut t = T::new();
        let (s1, s2, s3) = (snap(1, 1), snap(2, 2), snap(3, 3));
        t.snapshot(&s1);
        let d12 = Delta::between(&s1, &s2).unwrap().encode().unwrap();
        let d23 = Delta::between(&s2, &s3).unwrap().encode().unwrap();
        // (message, held after it, resyncing after it, error holds)
        let cases: [(&[u8], u64, bool, Option<&str>); 4] = [
            (&d23, 1, true, None),
            (&d12, 2, true, None),
            (&d12, 2, true, None),
            (&d23, 3, false, None),
        ];
        for (k, (msg, held, resync, err)) in cases.into_iter().enumerate() {
            t.send("delta", msg, 0);
            assert_eq!(t.held(), Some(held), "step {k}");
            assert_eq!(t.gw.resyncing(), resync, "step {k}");
            assert_eq!(t.gw.last_error(), err, "step {k}");
        }
    }
}
