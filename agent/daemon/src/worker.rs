//! Worker MQTT mode on proxy payload v2 (`docs/payload-v2.md`, "Proxy payload v2 (workers)"):
//! the driver around the contract's pure [`Follower`], the renderer (`sdwan-render`) and the
//! proxy directory's file apply ([`ProxyApplier::put_live`]).
//!
//! [`WorkerV2`] is an [`mqtt::Sink`](crate::mqtt::Sink): it is subscribed to
//! `P/nodes/NODE/v2/delta` always, and to `v2/tail` and `v2/part/+` while the follower
//! resyncs ([`Follower::resyncing`]: at start, after a reconnect, a gap, a notice). On
//! [`Step::Serve`] it checks that the content was made for `--proxy-dir`, renders
//! `sdwan.conf` and `help.html`, and puts them live (write, `--check-cmd`, `--reload-cmd`,
//! rollback to the known-good files on failure); only when that went through is the content
//! confirmed to the follower ([`Follower::served`]) and persisted ([`PERSIST_FILE`], its
//! snapshot parts one per line, read back at start through the same follower door). After
//! [`WANT_AFTER`] of resync without a served snapshot, the status says `"want":"snapshot"`.
//! The status carries `held`, `digest`, `want` and `error` (the last refusal or failed
//! apply), `serial` null.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use sdwan_contract::v2::accept::Held;
use sdwan_contract::v2::proxy::follow::{Follower, Source, Step};
use sdwan_contract::v2::proxy::{decode, ProxyMessage, ProxySnapshot};
use sdwan_contract::v2::{Version, MAX_MESSAGE_BYTES, MAX_PARTS};
use sdwan_link::{Status, Topics};

use crate::persist;
use crate::proxy::ProxyApplier;
use crate::VERSION;

/// The persisted proxy content in the proxy directory: its snapshot parts, one per line.
/// nginx's `include DIR/*.conf` does not read it.
pub const PERSIST_FILE: &str = ".sdwan-proxy-v2.jsonl";

/// Largest persisted file: every part at its largest, one newline each.
pub const PERSIST_MAX: usize = MAX_PARTS * (MAX_MESSAGE_BYTES + 1);

/// How long a resync may wait for a whole snapshot before the status asks for one.
pub const WANT_AFTER: Duration = Duration::from_secs(10);

/// Shows a held version and digest (or "nothing").
fn show(h: Option<Held>) -> String {
    h.map_or_else(
        || "nothing".into(),
        |h| format!("version {} digest {}", h.version.0, h.digest),
    )
}

fn trim_dir(d: &str) -> &str {
    match d.trim_end_matches('/') {
        "" => "/",
        d => d,
    }
}

/// Writes `content` as its snapshot parts, one per line, atomically into `dir`.
pub fn save(dir: &Path, content: &ProxySnapshot) -> io::Result<()> {
    let parts = content
        .encode()
        .map_err(|e| io::Error::other(format!("cannot encode the proxy content: {e}")))?;
    let mut text = Vec::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for p in parts {
        text.extend_from_slice(&p);
        text.push(b'\n');
    }
    persist::write_atomic(dir, PERSIST_FILE, &text)
}

/// Loads the persisted content of `node` from `dir`: every line a snapshot part, taken
/// through a [`Follower`] like the broker's messages. `None` (after logging why) when the
/// file is missing, too large, unreadable, or not one whole snapshot of this node.
pub fn load(dir: &Path, node: &str) -> Option<ProxySnapshot> {
    let path = dir.join(PERSIST_FILE);
    let bytes = match fs::File::open(&path).and_then(|f| persist::read_at_most(f, PERSIST_MAX)) {
        Ok(Some(b)) => b,
        Ok(None) => {
            warn!(
                "persisted proxy content {} is larger than {PERSIST_MAX} bytes, ignored",
                path.display()
            );
            return None;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            info!("no persisted proxy content in {}", dir.display());
            return None;
        }
        Err(e) => {
            warn!(
                "persisted proxy content {} unreadable, ignored: {e}",
                path.display()
            );
            return None;
        }
    };
    let (mut f, _) = Follower::new(node, None);
    let bad = |why: String| {
        warn!(
            "persisted proxy content {} is corrupt or truncated, ignored: {why}",
            path.display()
        );
        None
    };
    for (n, line) in bytes.split(|&b| b == b'\n').enumerate() {
        for step in f.handle(Source::Part, line) {
            match step {
                Step::Serve(s) => return Some(s),
                Step::Refused(why) => return bad(format!("line {}: {why}", n + 1)),
                Step::Resync | Step::Synced => {}
            }
        }
    }
    bad("not a whole snapshot".into())
}

/// The worker's proxy payload v2 driver (see the module documentation).
#[derive(Debug)]
pub struct WorkerV2 {
    node: String,
    dir: PathBuf,
    delta_topic: String,
    tail_topic: String,
    part_filter: String,
    part_prefix: String,
    follower: Follower,
    applier: ProxyApplier,
    /// When the running resync started.
    resync_since: Option<Instant>,
    /// Parts of the held snapshot seen again while resyncing (version, parts, mask).
    seen: Option<(Version, u8, u64)>,
    want: bool,
    /// The status document changed.
    dirty: bool,
}

impl WorkerV2 {
    /// The driver of worker `node` on `topics`, putting files live through `applier` in
    /// `dir`. The persisted content, if any, is what it holds at start (its files are live:
    /// they were put live before it was persisted); it starts with a resync.
    pub fn new(
        node: &str,
        topics: &Topics,
        dir: &Path,
        applier: ProxyApplier,
        now: Instant,
    ) -> WorkerV2 {
        let held = load(dir, node);
        if let Some(h) = &held {
            info!(
                "proxy content loaded from {}: node {node}, version {} digest {}, {} services \
                 ({} here)",
                dir.join(PERSIST_FILE).display(),
                h.version.0,
                h.digest(),
                h.services.len(),
                h.here().count()
            );
        }
        let (follower, _) = Follower::new(node, held);
        let part_filter = format!("{}/nodes/{node}/v2/part/+", topics.prefix());
        WorkerV2 {
            node: node.to_string(),
            dir: dir.to_path_buf(),
            delta_topic: format!("{}/nodes/{node}/v2/delta", topics.prefix()),
            tail_topic: format!("{}/nodes/{node}/v2/tail", topics.prefix()),
            part_prefix: part_filter.trim_end_matches('+').to_string(),
            part_filter,
            follower,
            applier,
            resync_since: Some(now),
            seen: None,
            want: false,
            dirty: false,
        }
    }

    /// The version and digest served.
    pub fn held(&self) -> Option<Held> {
        self.follower.held()
    }

    /// The last error, `None` after a successful apply.
    pub fn last_error(&self) -> Option<&str> {
        self.applier.last_error()
    }

    fn refuse(&mut self, why: String) {
        warn!("refused: {why}; keeping {}", show(self.held()));
        self.applier.set_error(Some(why));
        self.dirty = true;
    }

    fn step(&mut self, step: Step, now: Instant) {
        match step {
            Step::Serve(content) => self.serve(content, now),
            Step::Refused(why) => self.refuse(why),
            Step::Resync => {
                info!(
                    "resync (holding {}): reading the retained snapshot and tail",
                    show(self.held())
                );
                self.resync_since = Some(now);
            }
            Step::Synced => self.synced(),
        }
    }

    fn synced(&mut self) {
        info!(
            "current at {}: leaving the snapshot topics",
            show(self.held())
        );
        self.resync_since = None;
        self.seen = None;
        if self.want {
            self.want = false;
            self.dirty = true;
        }
    }

    /// A retained message that changed nothing while resyncing: when it shows that the
    /// retained content is what is held (every part of the held snapshot seen again, or a
    /// retained tail that ends at the held version), the resync ends, unless it waits for a
    /// newer version (a notice or delta announced one: [`Follower::served`] decides).
    fn see(&mut self, source: Source, payload: &[u8], now: Instant) {
        let Some(h) = self.held() else { return };
        let current = match decode(payload) {
            Ok(ProxyMessage::Part(p)) if p.version == h.version && p.digest == h.digest => {
                let parts = p.parts.min(MAX_PARTS as u8);
                let s = match &mut self.seen {
                    Some(s) if s.0 == p.version && s.1 == parts => s,
                    other => other.insert((p.version, parts, 0)),
                };
                s.2 |= 1u64 << (p.part % 64);
                s.2.count_ones() == u32::from(s.1)
            }
            Ok(ProxyMessage::Delta(d)) => {
                source == Source::Tail && d.version == h.version && d.digest == h.digest
            }
            _ => false,
        };
        if !current {
            return;
        }
        debug!("the retained content is the held {}", show(Some(h)));
        self.seen = None;
        if let Some(content) = self.follower.content().cloned() {
            if let Some(step) = self.follower.served(content) {
                self.step(step, now);
            }
        }
    }

    /// Renders `content`, puts it live, confirms it to the follower and persists it.
    fn serve(&mut self, content: ProxySnapshot, now: Instant) {
        let label = format!("version {} digest {}", content.version.0, content.digest());
        let want_dir = self.dir.to_string_lossy();
        if trim_dir(&content.proxy.dir) != trim_dir(&want_dir) {
            let why = format!(
                "proxy content {label} was made for directory {:?}, but --proxy-dir is {:?} \
                 (set [proxy] dir in the master's topology)",
                content.proxy.dir, want_dir
            );
            return self.refuse(why);
        }
        let t = Instant::now();
        let files = vec![
            (sdwan_render::CONF_FILE, sdwan_render::render_conf(&content)),
            (sdwan_render::HELP_FILE, sdwan_render::render_help(&content)),
        ];
        let rendered_ms = crate::Tenths::millis(t.elapsed());
        self.dirty = true;
        if self.applier.put_live(&files, &label).is_err() {
            return;
        }
        debug!(
            "{label}: {} services, {} here, rendered in {rendered_ms} ms",
            content.services.len(),
            content.here().count()
        );
        if let Err(e) = save(&self.dir, &content) {
            let msg = format!(
                "{label} applied but not persisted to {}: {e}",
                self.dir.join(PERSIST_FILE).display()
            );
            warn!("{msg}");
            self.applier.set_error(Some(msg));
        }
        if let Some(step) = self.follower.served(content) {
            self.step(step, now);
        }
    }
}

impl crate::mqtt::Sink for WorkerV2 {
    fn subscriptions(&self) -> Vec<String> {
        let mut t = vec![self.delta_topic.clone()];
        if self.follower.resyncing() {
            // The tail first: brokers send retained messages in the order of the filters,
            // so the tail is known when the snapshot completes.
            t.push(self.tail_topic.clone());
            t.push(self.part_filter.clone());
        }
        t
    }

    fn connected(&mut self, now: Instant) {
        // Clean session: deltas published while the session was down are lost; read the
        // retained snapshot and tail again (a follower anew, holding what is served).
        let held = self.follower.content().cloned();
        let (f, _) = Follower::new(&self.node, held);
        self.follower = f;
        if self.resync_since.is_none() {
            info!(
                "resync because the broker connection was (re-)established (holding {})",
                show(self.held())
            );
        }
        self.resync_since = Some(now);
        self.seen = None;
    }

    fn handle(&mut self, topic: &str, payload: &[u8], now: Instant) -> bool {
        let source = if topic == self.delta_topic {
            Source::Delta
        } else if topic == self.tail_topic {
            Source::Tail
        } else if topic.starts_with(&self.part_prefix) {
            Source::Part
        } else {
            debug!("ignoring message on {topic}");
            return false;
        };
        if source != Source::Delta && !self.follower.resyncing() {
            debug!("{topic}: after the resync ended, ignored");
            return false;
        }
        let steps = self.follower.handle(source, payload);
        let quiet = steps.is_empty();
        for step in steps {
            self.step(step, now);
        }
        if quiet && source != Source::Delta && self.follower.resyncing() {
            self.see(source, payload, now);
        }
        std::mem::take(&mut self.dirty)
    }

    fn tick(&mut self, now: Instant) -> bool {
        if let Some(since) = self.resync_since {
            if !self.want && now.saturating_duration_since(since) >= WANT_AFTER {
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
        let mut s = Status::online(None, self.last_error().map(str::to_string), VERSION);
        if let Some(h) = self.held() {
            s.held = Some(h.version.0);
            s.digest = Some(h.digest.to_string());
        }
        if self.want {
            s.want = Some("snapshot".into());
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mqtt::Sink;
    use sdwan_contract::v2::proxy::{
        encode_notice, Protocol, ProxyDelta, ProxyHeader, ProxyPort, ProxyService,
    };
    use sdwan_contract::v2::Str;

    fn content(dir: &Path, version: u64, services: usize) -> ProxySnapshot {
        ProxySnapshot {
            node: "w1".into(),
            version: Version(version),
            proxy: ProxyHeader {
                suffix: "k8s.internal".into(),
                local: "local".into(),
                listen_port: 8080,
                upstream_host: "127.0.0.1".into(),
                dir: dir.display().to_string(),
                ipv6: false,
                nodes: 0,
            },
            nodes: Vec::new(),
            services: (0..services)
                .map(|k| ProxyService {
                    ns: "default".into(),
                    name: format!("svc-{k:04}"),
                    unique: true,
                    ports: vec![ProxyPort {
                        name: Some(Str::new("http").unwrap()),
                        protocol: Protocol::Tcp,
                        port: 80,
                        node_port: 30000 + k as u16,
                    }],
                    here: true,
                    nodes: Vec::new(),
                })
                .collect(),
        }
    }

    fn worker(dir: &Path, now: Instant) -> WorkerV2 {
        let topics = Topics::new("P").unwrap();
        let applier = ProxyApplier::new(dir, None, None);
        WorkerV2::new("w1", &topics, dir, applier, now)
    }

    fn feed(w: &mut WorkerV2, c: &ProxySnapshot, now: Instant) {
        for (k, p) in c.encode().unwrap().iter().enumerate() {
            w.handle(&format!("P/nodes/w1/v2/part/{k}"), p, now);
        }
    }

    #[test]
    fn persisted_content_loads_through_the_follower_and_a_bad_file_is_ignored() {
        let tmp = sdwan_testsupport::TempDir::new("worker-persist");
        let c = content(tmp.path(), 7, 4000);
        save(tmp.path(), &c).unwrap();
        let text = fs::read_to_string(tmp.path().join(PERSIST_FILE)).unwrap();
        assert!(text.lines().count() > 1, "several parts, one per line");
        assert_eq!(load(tmp.path(), "w1"), Some(c.clone()));
        assert_eq!(load(tmp.path(), "w2"), None, "another node's content");
        let first = text.lines().next().unwrap();
        fs::write(tmp.path().join(PERSIST_FILE), format!("{first}\n")).unwrap();
        assert_eq!(load(tmp.path(), "w1"), None, "a part missing");
        fs::write(tmp.path().join(PERSIST_FILE), "{\"schema\":2}\n").unwrap();
        assert_eq!(load(tmp.path(), "w1"), None);
    }

    #[test]
    fn resync_ends_on_the_held_snapshot_seen_again_and_a_gap_starts_one() {
        let tmp = sdwan_testsupport::TempDir::new("worker-resync");
        let t0 = Instant::now();
        let mut w = worker(tmp.path(), t0);
        assert_eq!(w.subscriptions().len(), 3, "starts resyncing");
        let one = content(tmp.path(), 1, 3);
        feed(&mut w, &one, t0);
        assert_eq!(w.held().map(|h| h.version), Some(Version(1)));
        assert_eq!(w.subscriptions(), ["P/nodes/w1/v2/delta"]);
        assert!(fs::read_to_string(tmp.path().join("sdwan.conf"))
            .unwrap()
            .contains("/svc-0002/"));
        // Reconnected: the retained snapshot, the one held, ends the resync.
        w.connected(t0);
        assert_eq!(w.subscriptions().len(), 3);
        feed(&mut w, &one, t0);
        assert_eq!(w.subscriptions().len(), 1, "the held snapshot seen again");
        // A delta on its base applies; one for another base starts a resync.
        let two = content(tmp.path(), 2, 4);
        let d = ProxyDelta::between(&one, &two).unwrap().encode().unwrap();
        assert!(w.handle("P/nodes/w1/v2/delta", &d, t0));
        assert_eq!(w.held().map(|h| h.version), Some(Version(2)));
        let four = content(tmp.path(), 4, 1);
        let d = ProxyDelta::between(&content(tmp.path(), 3, 2), &four)
            .unwrap()
            .encode()
            .unwrap();
        w.handle("P/nodes/w1/v2/delta", &d, t0);
        assert_eq!(w.held().map(|h| h.version), Some(Version(2)));
        assert_eq!(w.subscriptions().len(), 3, "a gap resyncs");
        // The held snapshot does not end a resync that waits for version 4; the status
        // asks for a snapshot after WANT_AFTER.
        feed(&mut w, &two, t0);
        assert_eq!(w.subscriptions().len(), 3);
        assert!(w.tick(t0 + WANT_AFTER));
        assert_eq!(w.status().want.as_deref(), Some("snapshot"));
        feed(&mut w, &four, t0);
        assert_eq!(w.held().map(|h| h.version), Some(Version(4)));
        assert_eq!((w.subscriptions().len(), w.status().want), (1, None));
        // Reconnected after missing a change: the retained tail (4 -> 6) brings it up to date.
        w.connected(t0);
        let six = content(tmp.path(), 6, 6);
        let tail = ProxyDelta::between(&four, &six).unwrap().encode().unwrap();
        w.handle("P/nodes/w1/v2/tail", &tail, t0);
        assert_eq!(w.held().map(|h| h.version), Some(Version(6)));
        assert_eq!(w.subscriptions().len(), 1);
        assert!(
            load(tmp.path(), "w1").is_some_and(|c| c == six),
            "persisted"
        );
        // A notice of a newer version resyncs too.
        let n = encode_notice("w1", Version(7), six.digest()).unwrap();
        w.handle("P/nodes/w1/v2/delta", &n, t0);
        assert_eq!(w.subscriptions().len(), 3);
        assert_eq!(w.last_error(), None);
    }
}
