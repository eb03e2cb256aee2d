//! A worker following its proxy stream (`docs/payload-v2.md`, "The agent: acceptance rules",
//! applied to `P/nodes/NODE/v2/{part/K,tail,delta}`), as a pure state machine: messages in,
//! [`Step`]s out, no I/O and no clock. The driver subscribes, renders, writes, checks and
//! reloads; it tells the follower what it now serves with [`Follower::served`]. It carries
//! out the steps of one message (and calls `served`) before it hands over the next: a
//! [`Step::Serve`] not yet confirmed is not what is held, so the same content can be offered
//! again by a later message (the fuzz check `proxy_follow` found this with a retained tail
//! delivered right after the snapshot it completes).
//!
//! State: `held` (the content served), the parts of one snapshot being staged, the retained
//! tail (kept until a snapshot it applies to is whole), and whether a resync is running
//! (`part/+` and `tail` subscribed) and up to which version. The decisions are the zone's
//! ([`crate::v2::accept`]); content is assembled and deltas applied with the reference
//! semantics ([`ProxySnapshot::assemble`], [`ProxySnapshot::apply`]), so a torn or mixed
//! content is never offered.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use super::{decode, ProxyDelta, ProxyMessage, ProxyPart, ProxySnapshot};
use crate::v2::accept::{self, DeltaAction, Held, NoticeAction, PartAction};
use crate::v2::Version;

/// Which topic a message came on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `v2/part/K`
    Part,
    /// `v2/tail`
    Tail,
    /// `v2/delta`
    Delta,
}

/// What the driver is to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Serve this content: render, write, check, reload; on success call
    /// [`Follower::served`], on failure keep the files and report.
    Serve(ProxySnapshot),
    /// Subscribe to `part/+` and `tail` (a snapshot is needed).
    Resync,
    /// The current content is held: unsubscribe from `part/+` and `tail`.
    Synced,
    /// A message refused (report it in the status; the content in use stays).
    Refused(String),
}

/// The state of one worker's stream.
#[derive(Debug, Clone)]
pub struct Follower {
    node: String,
    held: Option<ProxySnapshot>,
    staging: Option<Held>,
    parts: BTreeMap<u8, ProxyMessage>,
    tail: Option<ProxyDelta>,
    /// A resync is running, until a version at least this new is held (`None`: any).
    resync: Option<Option<Version>>,
}

impl Follower {
    /// A follower for `node`, serving `held` (persisted content, or `None`). It starts with
    /// a resync: the retained snapshot and tail may be newer than what it held.
    pub fn new(node: &str, held: Option<ProxySnapshot>) -> (Follower, Step) {
        let f = Follower {
            node: node.to_string(),
            held,
            staging: None,
            parts: BTreeMap::new(),
            tail: None,
            resync: Some(None),
        };
        (f, Step::Resync)
    }

    /// The version and digest served (for the status document).
    pub fn held(&self) -> Option<Held> {
        self.held.as_ref().map(|h| Held {
            version: h.version,
            digest: h.digest(),
        })
    }

    /// The content served.
    pub fn content(&self) -> Option<&ProxySnapshot> {
        self.held.as_ref()
    }

    /// Whether a resync is running (the status says `"want":"snapshot"` when it lasts).
    pub fn resyncing(&self) -> bool {
        self.resync.is_some()
    }

    /// The driver now serves `content` (after a [`Step::Serve`] that went through). Returns
    /// [`Step::Synced`] when that ends a resync.
    pub fn served(&mut self, content: ProxySnapshot) -> Option<Step> {
        let v = content.version;
        self.held = Some(content);
        if self.staging.is_some_and(|s| !s.version.is_newer_than(v)) {
            self.staging = None;
            self.parts.clear();
        }
        match self.resync {
            Some(target) if target.is_none_or(|t| !t.is_newer_than(v)) => {
                self.resync = None;
                Some(Step::Synced)
            }
            _ => None,
        }
    }

    fn resync(&mut self, to: Option<Version>) -> Vec<Step> {
        let start = self.resync.is_none();
        let target = match (self.resync.flatten(), to) {
            (Some(a), Some(b)) if a.is_newer_than(b) => Some(a),
            (_, Some(b)) => Some(b),
            (a, None) => a,
        };
        self.resync = Some(target);
        if start {
            alloc::vec![Step::Resync]
        } else {
            Vec::new()
        }
    }

    /// One message from `source`. An empty message ("nothing retained here") is no step.
    pub fn handle(&mut self, source: Source, msg: &[u8]) -> Vec<Step> {
        if msg.is_empty() {
            return Vec::new();
        }
        let m = match decode(msg) {
            Ok(m) => m,
            Err(e) => return alloc::vec![Step::Refused(format!("proxy v2 message: {e}"))],
        };
        if m.node() != self.node {
            return alloc::vec![Step::Refused(format!(
                "proxy v2 message for node {:?}, this is {:?}",
                m.node(),
                self.node
            ))];
        }
        let held = self.held();
        match (source, m) {
            (Source::Part, ProxyMessage::Part(p)) => self.part(held, p),
            (Source::Tail | Source::Delta, ProxyMessage::Delta(d)) => {
                if source == Source::Tail {
                    self.tail = Some(d.clone());
                    // A tail for the snapshot being staged waits for it.
                    if self.staging.is_some_and(|s| s.version == d.base) {
                        return Vec::new();
                    }
                }
                self.delta(held, d, source == Source::Tail)
            }
            (
                Source::Delta,
                ProxyMessage::Notice {
                    version, digest, ..
                },
            ) => match accept::notice(held, version, digest) {
                NoticeAction::Resync => self.resync(Some(version)),
                NoticeAction::Ignore => Vec::new(),
                NoticeAction::Conflict => alloc::vec![Step::Refused(format!(
                    "notice: version {version} announced with other content than held"
                ))],
            },
            (s, m) => alloc::vec![Step::Refused(format!(
                "proxy v2: a {} on the {} topic",
                match m {
                    ProxyMessage::Part(_) => "part",
                    ProxyMessage::Delta(_) => "delta",
                    ProxyMessage::Notice { .. } => "notice",
                },
                match s {
                    Source::Part => "part",
                    Source::Tail => "tail",
                    Source::Delta => "delta",
                }
            ))],
        }
    }

    fn part(&mut self, held: Option<Held>, p: alloc::boxed::Box<ProxyPart>) -> Vec<Step> {
        let (v, d) = (p.version, p.digest);
        match accept::part(held, self.staging, v, d) {
            PartAction::Ignore | PartAction::Replay => return Vec::new(),
            PartAction::Conflict => {
                return alloc::vec![Step::Refused(format!(
                    "part: version {v} reused with other content"
                ))]
            }
            PartAction::Restart => {
                self.staging = Some(Held {
                    version: v,
                    digest: d,
                });
                self.parts.clear();
            }
            PartAction::Stage => {}
        }
        let (k, n) = (p.part, p.parts);
        self.parts.entry(k).or_insert(ProxyMessage::Part(p));
        if self.parts.len() < usize::from(n) {
            return Vec::new();
        }
        let msgs: Vec<ProxyMessage> = core::mem::take(&mut self.parts).into_values().collect();
        self.staging = None;
        let mut snap = match ProxySnapshot::assemble(&msgs) {
            Ok(s) => s,
            Err(e) => {
                return alloc::vec![Step::Refused(format!(
                    "snapshot {v}: {e}; all its parts dropped"
                ))]
            }
        };
        // The retained tail brings it to the current version.
        if let Some(t) = self.tail.as_ref().filter(|t| t.base == snap.version) {
            let mut next = snap.clone();
            if next.apply(t).is_ok() {
                snap = next;
            }
        }
        alloc::vec![Step::Serve(snap)]
    }

    fn delta(&mut self, held: Option<Held>, d: ProxyDelta, tail: bool) -> Vec<Step> {
        match accept::delta(held, d.base, d.version, d.digest) {
            DeltaAction::Apply => {
                let Some(mut next) = self.held.clone() else {
                    return Vec::new();
                };
                match next.apply(&d) {
                    Ok(()) => alloc::vec![Step::Serve(next)],
                    Err(e) => {
                        let mut out = alloc::vec![Step::Refused(format!(
                            "delta {} -> {}: {e}",
                            d.base, d.version
                        ))];
                        out.extend(self.resync(Some(d.version)));
                        out
                    }
                }
            }
            DeltaAction::Replay | DeltaAction::Ignore => Vec::new(),
            DeltaAction::Conflict => alloc::vec![Step::Refused(format!(
                "delta: version {} reused with other content",
                d.version
            ))],
            DeltaAction::Gap => self.resync(Some(d.version)),
            DeltaAction::Wait if tail => Vec::new(),
            DeltaAction::Wait => self.resync(None),
        }
    }
}
