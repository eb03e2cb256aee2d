//! The load generator: one MQTT connection per gateway and per worker, each with that agent's
//! certificate (so the broker's ACL applies as to the agent) and subscribed as that agent
//! would be. Each session counts the messages and bytes the broker delivers to it and tracks
//! which version it holds, decoding payload v2 messages with `sdwan_contract::v2::decode`
//! (and v1 payloads' `serial`), without storing their content.
//!
//! Gateways, payload v2 (`docs/payload-v2.md`): `P/gateways/ID/v2/delta` for as long as the
//! session runs; `tail` and `part/+` while it needs a snapshot (at start, after a gap or a
//! notice naming a version it does not hold), dropped once a whole snapshot is in. A session
//! holds a version when all parts of a snapshot of it are in (then the retained tail moves it
//! on when its base matches), or when a delta whose base it holds arrives.
//! Workers, proxy payload v2: the same on `P/nodes/NODE/v2/...`, each message decoded with
//! `sdwan_contract::v2::proxy::decode`. With `--payload v1` (an older master): gateways on
//! `P/gateways/ID/zone`, workers on `P/nodes/NODE/proxy`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sdwan_contract::v2::decode::{decode, Scratch, Visitor};
use sdwan_contract::v2::{Digest, Kind, Version};
use sdwan_link::rumqttc::{self, AsyncClient, Event, Packet, QoS};
use sdwan_link::{BrokerUrl, LinkOptions};

/// Which zone payload gateways subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload {
    /// `P/gateways/ID/zone`, whole zones with a serial.
    V1,
    /// `P/gateways/ID/v2/{delta,tail,part/+}`.
    V2,
}

/// What one session holds: version and digest (0 for v1).
pub type Held = Option<(u64, u64)>;

/// One session's counters and state.
#[derive(Debug, Default)]
pub struct State {
    pub bytes: u64,
    pub messages: u64,
    pub held: Held,
    /// When `held` last changed.
    pub changed_at: Option<Instant>,
    pub decode_errors: u64,
    pub connection_errors: u64,
    pub subscribed: bool,
    /// Payload v2: subscribed to `tail` and `part/+`.
    pub snapshot_wanted: bool,
    /// Snapshot being assembled: version, digest, parts, parts seen (bit mask).
    staging: Option<(u64, u64, u8, u64)>,
    /// Retained tail seen: base, version, digest.
    tail: Option<(u64, u64, u64)>,
    pub last_error: Option<String>,
}

/// One gateway or worker session.
#[derive(Debug)]
pub struct Session {
    pub name: String,
    pub worker: bool,
    pub state: Mutex<State>,
}

/// All sessions and the totals.
#[derive(Debug)]
pub struct Load {
    pub sessions: Vec<Arc<Session>>,
    pub bytes: AtomicU64,
    pub messages: AtomicU64,
    /// Microseconds since `epoch` of the last message delivered to any session.
    pub last_message_us: AtomicU64,
    pub epoch: Instant,
    /// Bytes and messages per [`KINDS`] entry.
    pub by_kind: [(AtomicU64, AtomicU64); KINDS.len()],
}

/// What the delivered messages were, by topic: the last segment (`part/K` is `part`).
/// `empty`: an empty retained message (a delete) on any of them.
pub const KINDS: [&str; 7] = ["part", "tail", "delta", "zone", "proxy", "empty", "other"];

fn kind_of(topic: &str) -> usize {
    let mut seg = topic.rsplit('/');
    let last = seg.next().unwrap_or_default();
    let leaf = if seg.next() == Some("part") {
        "part"
    } else {
        last
    };
    KINDS
        .iter()
        .position(|k| *k == leaf)
        .unwrap_or(KINDS.len() - 1)
}

impl Load {
    /// Bytes and messages of each kind so far.
    pub fn kinds(&self) -> [(u64, u64); KINDS.len()] {
        core::array::from_fn(|i| {
            (
                self.by_kind[i].0.load(Ordering::Relaxed),
                self.by_kind[i].1.load(Ordering::Relaxed),
            )
        })
    }

    /// When the last message arrived (the epoch if none did).
    pub fn last_message(&self) -> Instant {
        self.epoch + Duration::from_micros(self.last_message_us.load(Ordering::Relaxed))
    }

    /// Sessions that hold some version, and sessions subscribed.
    pub fn holding(&self) -> (usize, usize) {
        let mut h = 0;
        let mut s = 0;
        for x in &self.sessions {
            let st = x.state.lock().unwrap();
            h += usize::from(st.held.is_some());
            s += usize::from(st.subscribed);
        }
        (h, s)
    }

    /// Every session's held version.
    pub fn held(&self) -> Vec<Held> {
        self.sessions
            .iter()
            .map(|s| s.state.lock().unwrap().held)
            .collect()
    }
}

/// Where and as whom sessions connect.
#[derive(Debug, Clone)]
pub struct Connect {
    pub broker: String,
    pub ca: std::path::PathBuf,
    /// Certificate and key files of `name`.
    pub cert_of: fn(&std::path::Path, &str) -> (std::path::PathBuf, std::path::PathBuf),
    pub pki_dir: std::path::PathBuf,
    pub prefix: String,
    pub payload: Payload,
}

/// The largest packet a session accepts: v1 proxy payloads reach megabytes.
const MAX_PACKET: usize = 32 << 20;

/// Starts one session per name (`workers` are worker sessions), `batch` connections at a
/// time with a short pause between batches so the broker's TLS handshakes do not pile up.
pub async fn start(connect: &Connect, gateways: &[String], workers: &[String]) -> Arc<Load> {
    let sessions: Vec<Arc<Session>> = gateways
        .iter()
        .map(|g| (g, false))
        .chain(workers.iter().map(|w| (w, true)))
        .map(|(n, worker)| {
            Arc::new(Session {
                name: n.clone(),
                worker,
                state: Mutex::new(State::default()),
            })
        })
        .collect();
    let load = Arc::new(Load {
        sessions,
        bytes: AtomicU64::new(0),
        messages: AtomicU64::new(0),
        last_message_us: AtomicU64::new(0),
        epoch: Instant::now(),
        by_kind: Default::default(),
    });
    for (i, s) in load.sessions.iter().enumerate() {
        let (cert, key) = (connect.cert_of)(&connect.pki_dir, &s.name);
        let mut link = LinkOptions::new(
            BrokerUrl::parse_quiet(&connect.broker).expect("broker url"),
            &s.name,
        );
        link.ca = Some(connect.ca.clone());
        link.cert = Some(cert);
        link.key = Some(key);
        link.keep_alive = Duration::from_secs(120);
        link.clean_session = true;
        link.max_packet = MAX_PACKET;
        let opts = link.mqtt_options().expect("session options");
        let (client, mut el) = AsyncClient::new(opts, 16);
        let mut net = sdwan_link::options::network_options();
        net.set_connection_timeout(60);
        el.set_network_options(net);
        let session = s.clone();
        let load2 = load.clone();
        let topics = Topics::new(&connect.prefix, &s.name, s.worker, connect.payload);
        // SCALE_TRACE=NAME: log what that session receives (debugging the bench).
        let trace = std::env::var("SCALE_TRACE").is_ok_and(|t| t == s.name);
        tokio::spawn(async move {
            let mut scratch = Box::new(Scratch::new());
            loop {
                match el.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let mut st = session.state.lock().unwrap();
                        st.subscribed = false;
                        // Clean session: (re)subscribe as the agent would at start.
                        st.snapshot_wanted = topics.v2;
                        st.staging = None;
                        st.tail = None;
                        drop(st);
                        let _ = client.try_subscribe(topics.main.clone(), QoS::AtLeastOnce);
                        if topics.v2 {
                            want_snapshot(&client, &topics);
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        session.state.lock().unwrap().subscribed = true;
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let n = (p.topic.len() + p.payload.len()) as u64;
                        load2.bytes.fetch_add(n, Ordering::Relaxed);
                        load2.messages.fetch_add(1, Ordering::Relaxed);
                        let k = if p.payload.is_empty() {
                            &load2.by_kind[KINDS.len() - 2]
                        } else {
                            &load2.by_kind[kind_of(&p.topic)]
                        };
                        k.0.fetch_add(n, Ordering::Relaxed);
                        k.1.fetch_add(1, Ordering::Relaxed);
                        load2
                            .last_message_us
                            .fetch_max(load2.epoch.elapsed().as_micros() as u64, Ordering::Relaxed);
                        let mut st = session.state.lock().unwrap();
                        st.bytes += n;
                        st.messages += 1;
                        if p.payload.is_empty() {
                            continue;
                        }
                        let before = st.held;
                        let mut next = Next::Stay;
                        if topics.v2 {
                            let leaf = p.topic.rsplit('/').next().unwrap_or_default();
                            let is_tail = leaf == "tail";
                            let step = head(&p.payload, session.worker, &mut scratch)
                                .map(|h| on_v2(&mut st, h, is_tail));
                            match step {
                                Ok(Next::Resync) if !st.snapshot_wanted => {
                                    st.snapshot_wanted = true;
                                    next = Next::Resync;
                                }
                                Ok(Next::Done) if st.snapshot_wanted => {
                                    st.snapshot_wanted = false;
                                    next = Next::Done;
                                }
                                Ok(_) => {}
                                Err(e) => {
                                    st.decode_errors += 1;
                                    st.last_error = Some(e);
                                }
                            }
                        } else {
                            match v1_serial(&p.payload) {
                                Some(serial) => set_held(&mut st, Some((serial, 0))),
                                None => {
                                    st.decode_errors += 1;
                                    st.last_error = Some("no serial in a v1 payload".into());
                                }
                            }
                        }
                        let after = st.held;
                        if trace {
                            eprintln!(
                                "{}: {} ({} bytes, retain {}): held {:?} -> {:?}",
                                session.name,
                                p.topic,
                                p.payload.len(),
                                p.retain,
                                before,
                                after
                            );
                        }
                        drop(st);
                        match next {
                            Next::Stay => {}
                            Next::Resync => want_snapshot(&client, &topics),
                            Next::Done => {
                                let _ = client.try_unsubscribe(topics.tail.clone());
                                let _ = client.try_unsubscribe(topics.parts.clone());
                            }
                        }
                        if after != before {
                            // Acknowledge what it holds, as the agent's status does.
                            let _ = client.try_publish(
                                topics.status.clone(),
                                QoS::AtLeastOnce,
                                true,
                                status(after, topics.v2),
                            );
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        {
                            let mut st = session.state.lock().unwrap();
                            st.connection_errors += 1;
                            st.subscribed = false;
                            st.last_error = Some(e.to_string());
                        }
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
        });
        if i % 100 == 99 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    load
}

struct Topics {
    main: String,
    tail: String,
    parts: String,
    status: String,
    v2: bool,
}

impl Topics {
    fn new(prefix: &str, name: &str, worker: bool, payload: Payload) -> Topics {
        let v2 = payload == Payload::V2;
        let group = if worker { "nodes" } else { "gateways" };
        let main = match (v2, worker) {
            (true, _) => format!("{prefix}/{group}/{name}/v2/delta"),
            (false, true) => format!("{prefix}/nodes/{name}/proxy"),
            (false, false) => format!("{prefix}/gateways/{name}/zone"),
        };
        Topics {
            main,
            tail: format!("{prefix}/{group}/{name}/v2/tail"),
            parts: format!("{prefix}/{group}/{name}/v2/part/+"),
            status: if worker {
                format!("{prefix}/nodes/{name}/status")
            } else {
                format!("{prefix}/gateways/{name}/status")
            },
            v2,
        }
    }
}

/// Subscribes to the tail first, then the parts, in one SUBSCRIBE: the broker sends the
/// retained tail before the retained parts, so it is known when the snapshot completes.
fn want_snapshot(client: &AsyncClient, t: &Topics) {
    let _ = client.try_subscribe_many([
        rumqttc::SubscribeFilter::new(t.tail.clone(), QoS::AtLeastOnce),
        rumqttc::SubscribeFilter::new(t.parts.clone(), QoS::AtLeastOnce),
    ]);
}

/// The status document an agent holding `held` publishes (docs/mqtt.md, docs/payload-v2.md).
fn status(held: Held, v2: bool) -> Vec<u8> {
    let mut s = sdwan_link::Status::online(None, None, "bench-scale");
    match held {
        Some((v, d)) if v2 => {
            s.held = Some(v);
            s.digest = Some(String::from_utf8_lossy(&Digest(d).to_hex()).into_owned());
        }
        Some((v, _)) => s.serial = u32::try_from(v).ok(),
        None => {}
    }
    s.to_json().into_bytes()
}

fn set_held(st: &mut State, held: Held) {
    if st.held != held {
        st.held = held;
        st.changed_at = Some(Instant::now());
    }
}

/// `"serial":N` of a v1 zone or proxy payload.
fn v1_serial(payload: &[u8]) -> Option<u64> {
    let key = b"\"serial\":";
    let at = payload.windows(key.len()).position(|w| w == key)? + key.len();
    let digits: Vec<u8> = payload[at..]
        .iter()
        .copied()
        .take_while(u8::is_ascii_digit)
        .collect();
    std::str::from_utf8(&digits).ok()?.parse().ok()
}

enum Next {
    Stay,
    /// Needs a snapshot: subscribe to tail and parts.
    Resync,
    /// Holds a whole snapshot: unsubscribe from tail and parts.
    Done,
}

struct Nothing;
impl Visitor for Nothing {}

fn newer(a: u64, b: u64) -> bool {
    Version(a).is_newer_than(Version(b))
}

/// What the version rules read of a v2 message, zone or proxy.
#[derive(Debug, Clone, Copy)]
struct Head {
    kind: Kind,
    version: u64,
    digest: u64,
    base: Option<u64>,
    part: u8,
    parts: u8,
}

/// Decodes (and so checks) one v2 message of a gateway's zone stream or, for a worker, of
/// its proxy stream; the content is not stored.
fn head(msg: &[u8], worker: bool, scratch: &mut Scratch) -> Result<Head, String> {
    use sdwan_contract::v2::proxy::{self, ProxyMessage};
    if !worker {
        let env = decode(msg, scratch, &mut Nothing).map_err(|e| e.to_string())?;
        return Ok(Head {
            kind: env.kind,
            version: env.version.0,
            digest: env.digest.0,
            base: env.base.map(|b| b.0),
            part: env.part,
            parts: env.parts,
        });
    }
    Ok(match proxy::decode(msg).map_err(|e| e.to_string())? {
        ProxyMessage::Part(p) => Head {
            kind: Kind::Part,
            version: p.version.0,
            digest: p.digest.0,
            base: None,
            part: p.part,
            parts: p.parts,
        },
        ProxyMessage::Delta(d) => Head {
            kind: Kind::Delta,
            version: d.version.0,
            digest: d.digest.0,
            base: Some(d.base.0),
            part: 0,
            parts: 0,
        },
        ProxyMessage::Notice {
            version, digest, ..
        } => Head {
            kind: Kind::Notice,
            version: version.0,
            digest: digest.0,
            base: None,
            part: 0,
            parts: 0,
        },
    })
}

/// One v2 message: the acceptance rules of docs/payload-v2.md as far as versions go.
fn on_v2(st: &mut State, env: Head, is_tail: bool) -> Next {
    let (version, digest) = (env.version, env.digest);
    match env.kind {
        Kind::Part => {
            if st.held.is_some_and(|(v, _)| !newer(version, v)) {
                // Already held (or older): nothing to stage.
                return if st.snapshot_wanted {
                    Next::Done
                } else {
                    Next::Stay
                };
            }
            match st.staging {
                Some((v, _, _, _)) if v == version => {}
                Some((v, _, _, _)) if newer(v, version) => return Next::Stay,
                _ => st.staging = Some((version, digest, env.parts, 0)),
            }
            let s = st.staging.as_mut().unwrap();
            s.3 |= 1u64 << env.part;
            if s.3.count_ones() == u32::from(s.2) {
                st.staging = None;
                let mut held = (version, digest);
                if let Some((base, v, d)) = st.tail {
                    if base == version {
                        held = (v, d);
                    }
                }
                set_held(st, Some(held));
                return Next::Done;
            }
            Next::Stay
        }
        Kind::Delta => {
            let base = env.base.unwrap_or_default();
            if is_tail {
                st.tail = Some((base, version, digest));
            }
            match st.held {
                None => Next::Stay,
                Some((v, _)) if v == base => {
                    set_held(st, Some((version, digest)));
                    Next::Stay
                }
                Some((v, _)) if newer(version, v) && !is_tail => Next::Resync,
                Some(_) => Next::Stay,
            }
        }
        Kind::Notice => match st.held {
            Some((v, d)) if v == version && d == digest => Next::Stay,
            Some((v, _)) if newer(v, version) => Next::Stay,
            _ if st.snapshot_wanted => Next::Stay,
            _ => Next::Resync,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_serial_is_read_where_it_is() {
        assert_eq!(
            v1_serial(br#"{"version":1,"serial":42,"gateway":"g"}"#),
            Some(42)
        );
        assert_eq!(v1_serial(br#"{"version":1}"#), None);
    }

    use sdwan_contract::v2::encode::{encode_notice, Delta, Snapshot};

    fn next(s: &Snapshot) -> Snapshot {
        let mut n = s.clone();
        n.version = Version(s.version.0 + 1);
        let svc = n.services.iter_mut().find(|x| x.hosts.len() < 5).unwrap();
        let h = (0..n.zone.nodes).find(|h| !svc.hosts.contains(h)).unwrap();
        svc.hosts.push(h);
        svc.hosts.sort_unstable();
        n
    }

    fn feed(st: &mut State, msg: &[u8], tail: bool) -> Next {
        on_v2(st, head(msg, false, &mut Scratch::new()).unwrap(), tail)
    }

    /// A worker session follows its proxy stream by the same rules: the documented proxy
    /// part, delta and notice (docs/payload-v2.md, "Proxy payload v2 (workers)").
    #[test]
    fn worker_sessions_follow_the_proxy_stream() {
        let doc = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/payload-v2.md"
        ))
        .unwrap();
        let section = doc.split("## Proxy payload v2 (workers)").nth(1).unwrap();
        let msgs: Vec<&str> = section
            .split("```json")
            .skip(1)
            .map(|b| b.split("```").next().unwrap())
            .collect();
        let [part, delta, notice] = msgs[..] else {
            panic!("a part, a delta and a notice: {msgs:?}")
        };
        let mut scratch = Scratch::new();
        let mut feed = |st: &mut State, m: &str, tail: bool| {
            on_v2(st, head(m.as_bytes(), true, &mut scratch).unwrap(), tail)
        };
        let mut st = State::default();
        // A delta before any snapshot is ignored.
        assert!(matches!(feed(&mut st, delta, false), Next::Stay));
        assert_eq!(st.held, None);
        // The one part is the whole snapshot.
        assert!(matches!(feed(&mut st, part, false), Next::Done));
        assert_eq!(st.held.map(|h| h.0), Some(1_764_694_800_123));
        // The delta on its base moves it on.
        assert!(matches!(feed(&mut st, delta, false), Next::Stay));
        assert_eq!(st.held.map(|h| h.0), Some(1_764_694_800_124));
        // A notice of a newer version asks for the snapshot.
        assert!(matches!(feed(&mut st, notice, false), Next::Resync));
        // A zone message is not a proxy message.
        assert!(head(part.as_bytes(), false, &mut scratch).is_err());
    }

    /// A session holds a version only once every part of its snapshot is in, then follows
    /// deltas on exactly that base, and asks for a snapshot on a gap or a notice of other
    /// content: so the bench's "holds the change" is the agent's.
    #[test]
    fn sessions_hold_what_an_agent_would_hold() {
        let s1 = crate::v2_common::snapshot(1);
        let parts = s1.encode().unwrap();
        assert!(parts.len() > 1);
        let mut st = State::default();
        for p in &parts[..parts.len() - 1] {
            assert!(matches!(feed(&mut st, p, false), Next::Stay));
            assert_eq!(st.held, None, "a part alone is not a snapshot");
        }
        assert!(matches!(
            feed(&mut st, parts.last().unwrap(), false),
            Next::Done
        ));
        assert_eq!(st.held, Some((s1.version.0, s1.digest().0)));

        let s2 = next(&s1);
        let d12 = Delta::between(&s1, &s2).unwrap().encode().unwrap();
        assert!(matches!(feed(&mut st, &d12, false), Next::Stay));
        assert_eq!(st.held, Some((s2.version.0, s2.digest().0)));
        // A replay changes nothing.
        assert!(matches!(feed(&mut st, &d12, false), Next::Stay));
        assert_eq!(st.held, Some((s2.version.0, s2.digest().0)));

        // A delta on another base: a gap.
        let s3 = next(&s2);
        let s4 = next(&s3);
        let d34 = Delta::between(&s3, &s4).unwrap().encode().unwrap();
        assert!(matches!(feed(&mut st, &d34, false), Next::Resync));
        assert_eq!(st.held, Some((s2.version.0, s2.digest().0)));

        // A notice of the held content is nothing; of newer content, a resync.
        let same = encode_notice(&s2.gateway, s2.version, s2.digest()).unwrap();
        assert!(matches!(feed(&mut st, &same, false), Next::Stay));
        let newer = encode_notice(&s4.gateway, s4.version, s4.digest()).unwrap();
        assert!(matches!(feed(&mut st, &newer, false), Next::Resync));
    }

    /// The retained tail arrives before the parts (one SUBSCRIBE, tail first): once the
    /// snapshot is whole, the tail moves it to the current version.
    #[test]
    fn a_tail_on_the_snapshot_applies_when_the_snapshot_is_whole() {
        let s1 = crate::v2_common::snapshot(1);
        let s2 = next(&s1);
        let tail = Delta::between(&s1, &s2).unwrap().encode().unwrap();
        let mut st = State {
            snapshot_wanted: true,
            ..State::default()
        };
        assert!(matches!(feed(&mut st, &tail, true), Next::Stay));
        assert_eq!(st.held, None);
        let mut last = Next::Stay;
        for p in s1.encode().unwrap() {
            last = feed(&mut st, &p, false);
        }
        assert!(matches!(last, Next::Done));
        assert_eq!(st.held, Some((s2.version.0, s2.digest().0)));
    }

    #[test]
    fn topics_are_counted_by_their_kind() {
        let k = |t| KINDS[kind_of(t)];
        assert_eq!(k("P/gateways/g/v2/part/3"), "part");
        assert_eq!(k("P/gateways/g/v2/tail"), "tail");
        assert_eq!(k("P/gateways/g/v2/delta"), "delta");
        assert_eq!(k("P/gateways/g/zone"), "zone");
        assert_eq!(k("P/nodes/n/proxy"), "proxy");
        assert_eq!(k("P/nodes/n/status"), "other");
    }
}
