//! The master's side (feature `alloc`): owned zone content ([`Snapshot`]), the deltas between
//! two of them ([`Delta::between`]), their encoding into messages ([`Snapshot::encode`] splits
//! into parts of at most [`MAX_MESSAGE_BYTES`]), and the reference semantics of the agent's
//! side on owned data: [`Snapshot::apply`] (a delta), [`Snapshot::assemble`] (parts) and
//! [`decode_owned`]. The agent does the same without a heap; these are what its behaviour is
//! tested against.

use alloc::boxed::Box;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt::{self, Write as _};

use super::decode::{self, Envelope, Scratch, Visitor};
use super::digest::{header_hash, node_hash, service_hash};
use super::{
    is_gateway_id, Digest, Kind, Node, Port, ServiceRef, Version, ZoneHeader, MAX_MESSAGE_BYTES,
    MAX_NODES, MAX_PARTS, MAX_SERVICES, SCHEMA,
};

/// A service, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// Namespace.
    pub ns: String,
    /// Name.
    pub name: String,
    /// `<name>.<suffix>` answers too.
    pub short: bool,
    /// SRV sets, ascending by owner.
    pub ports: Vec<Port>,
    /// Node slots, ascending.
    pub hosts: Vec<u16>,
}

impl Service {
    /// The borrowed view (what the digest and the checks read).
    pub fn as_ref(&self) -> ServiceRef<'_> {
        ServiceRef {
            ns: &self.ns,
            name: &self.name,
            short: self.short,
            ports: &self.ports,
            hosts: &self.hosts,
        }
    }
    fn from_ref(s: &ServiceRef<'_>) -> Service {
        Service {
            ns: s.ns.to_string(),
            name: s.name.to_string(),
            short: s.short,
            ports: s.ports.to_vec(),
            hosts: s.hosts.to_vec(),
        }
    }
    fn key(&self) -> (&str, &str) {
        (&self.ns, &self.name)
    }
}

/// A gateway's whole zone content at one version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The gateway id.
    pub gateway: String,
    /// The version.
    pub version: Version,
    /// The settings.
    pub zone: ZoneHeader,
    /// One entry per node slot (`zone.nodes` of them); `None` is an empty slot.
    pub nodes: Vec<Option<Node>>,
    /// Services, strictly ascending by (`ns`, `name`).
    pub services: Vec<Service>,
}

/// `hosts` item of a delta.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPatch {
    /// Namespace.
    pub ns: String,
    /// Name.
    pub name: String,
    /// Hosts added, ascending.
    pub add: Vec<u16>,
    /// Hosts removed, ascending.
    pub del: Vec<u16>,
}

/// Changes from `base` to `version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delta {
    /// The gateway id.
    pub gateway: String,
    /// The version it applies to.
    pub base: Version,
    /// The version it makes.
    pub version: Version,
    /// The digest after applying.
    pub digest: Digest,
    /// Slots emptied, ascending.
    pub node_drop: Vec<u16>,
    /// Slots given a node, ascending by slot.
    pub node_set: Vec<(u16, Node)>,
    /// Services removed (`ns`, `name`), ascending.
    pub del: Vec<(String, String)>,
    /// Services added or replaced, ascending.
    pub set: Vec<Service>,
    /// Host changes, ascending by service.
    pub hosts: Vec<HostPatch>,
}

/// Why content cannot be encoded, or a delta not applied or built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EncodeError {
    /// A value breaks its rule (the field, and the item's index where there is one).
    Invalid {
        /// The field.
        what: &'static str,
        /// Index of the node slot or service.
        item: Option<usize>,
    },
    /// More items than the limit (the field).
    TooMany(&'static str),
    /// The snapshot needs more than [`MAX_PARTS`] parts (how many).
    TooManyParts(usize),
    /// One message would exceed [`MAX_MESSAGE_BYTES`] (its size): send a snapshot instead.
    TooLarge(usize),
    /// A delta's `base` is not the snapshot's version.
    WrongBase,
    /// Applying a delta gave another digest than it declares.
    DigestMismatch,
    /// Parts that do not make one whole snapshot (why).
    Parts(&'static str),
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::Invalid {
                what,
                item: Some(i),
            } => write!(f, "item {i}: invalid `{what}`"),
            EncodeError::Invalid { what, item: None } => write!(f, "invalid `{what}`"),
            EncodeError::TooMany(w) => write!(f, "too many `{w}`"),
            EncodeError::TooManyParts(n) => {
                write!(f, "{n} parts needed, the limit is {MAX_PARTS}")
            }
            EncodeError::TooLarge(n) => {
                write!(f, "message of {n} bytes, the limit is {MAX_MESSAGE_BYTES}")
            }
            EncodeError::WrongBase => f.write_str("the delta's base is not this version"),
            EncodeError::DigestMismatch => f.write_str("digest after applying differs"),
            EncodeError::Parts(w) => write!(f, "parts: {w}"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for EncodeError {}

fn invalid(what: &'static str, item: Option<usize>) -> EncodeError {
    EncodeError::Invalid { what, item }
}

fn check_node(i: usize, n: &Node) -> Result<(), EncodeError> {
    n.check().map_err(|w| invalid(w, Some(i)))
}

fn check_service(i: usize, s: &Service, slots: usize) -> Result<(), EncodeError> {
    s.as_ref().check().map_err(|w| invalid(w, Some(i)))?;
    if s.hosts.iter().any(|&h| usize::from(h) >= slots) {
        return Err(invalid("hosts", Some(i)));
    }
    Ok(())
}

impl Snapshot {
    /// Checks every rule of the schema; the error names the field and item.
    pub fn check(&self) -> Result<(), EncodeError> {
        if !is_gateway_id(&self.gateway) {
            return Err(invalid("gateway", None));
        }
        self.zone.check().map_err(|w| invalid(w, None))?;
        if self.nodes.len() != usize::from(self.zone.nodes) {
            return Err(invalid("nodes", None));
        }
        let mut tier = super::Tier::Near;
        let mut names: Vec<&str> = Vec::new();
        for (i, n) in self.nodes.iter().enumerate() {
            if let Some(n) = n {
                check_node(i, n)?;
                if n.tier < tier {
                    return Err(invalid("tier", Some(i)));
                }
                tier = n.tier;
                names.push(n.name.as_str());
            }
        }
        names.sort_unstable();
        if names.windows(2).any(|w| w[0] == w[1]) {
            return Err(invalid("name", None));
        }
        if self.services.len() > MAX_SERVICES {
            return Err(EncodeError::TooMany("services"));
        }
        for (i, s) in self.services.iter().enumerate() {
            check_service(i, s, self.nodes.len())?;
            if i > 0 && self.services[i - 1].key() >= s.key() {
                return Err(invalid("services", Some(i)));
            }
        }
        Ok(())
    }

    /// The digest of the content (not of the version).
    pub fn digest(&self) -> Digest {
        let mut d = Digest::ZERO.with(header_hash(&self.gateway, &self.zone));
        for (i, n) in self.nodes.iter().enumerate() {
            if let Some(n) = n {
                d = d.with(node_hash(i as u16, n));
            }
        }
        for s in &self.services {
            d = d.with(service_hash(&s.as_ref()));
        }
        d
    }

    /// Checks, then encodes the snapshot as parts, each at most [`MAX_MESSAGE_BYTES`]: node
    /// slots first, then services, as many per part as fit.
    pub fn encode(&self) -> Result<Vec<Vec<u8>>, EncodeError> {
        self.check()?;
        let digest = self.digest();
        // Items, rendered once.
        let nodes: Vec<String> = self
            .nodes
            .iter()
            .map(|n| {
                let mut s = String::new();
                match n {
                    Some(n) => write_node(&mut s, None, n),
                    None => s.push_str("null"),
                }
                s
            })
            .collect();
        let services: Vec<String> = self
            .services
            .iter()
            .map(|s| {
                let mut out = String::new();
                write_service(&mut out, s);
                out
            })
            .collect();
        // The part's fixed text at its longest (part numbers and first_node of 4 digits).
        let fixed = self.part_head(digest, 9999, 9999, 9999).len() + "],\"services\":[]}".len();
        let room = MAX_MESSAGE_BYTES - fixed;
        // (first node, node count, first service, service count) per part.
        let mut plan: Vec<(usize, usize, usize, usize)> = Vec::new();
        let mut cur = (0, 0, 0, 0);
        let mut used = 0;
        let items = nodes
            .iter()
            .map(|s| (true, s.len()))
            .chain(services.iter().map(|s| (false, s.len())));
        for (is_node, len) in items {
            if len + 1 > room {
                return Err(EncodeError::TooLarge(fixed + len));
            }
            if used + len + 1 > room {
                plan.push(cur);
                cur = (cur.0 + cur.1, 0, cur.2 + cur.3, 0);
                used = 0;
            }
            used += len + 1;
            if is_node {
                cur.1 += 1;
            } else {
                cur.3 += 1;
            }
        }
        plan.push(cur);
        if plan.len() > MAX_PARTS {
            return Err(EncodeError::TooManyParts(plan.len()));
        }
        let n = plan.len();
        Ok(plan
            .iter()
            .enumerate()
            .map(|(k, &(fnode, nn, fsvc, ns))| {
                let mut s = self.part_head(digest, k, n, fnode);
                join(&mut s, &nodes[fnode..fnode + nn]);
                s.push_str("],\"services\":[");
                join(&mut s, &services[fsvc..fsvc + ns]);
                s.push_str("]}");
                s.into_bytes()
            })
            .collect())
    }

    fn part_head(&self, digest: Digest, part: usize, parts: usize, first: usize) -> String {
        let z = &self.zone;
        let mut s = String::new();
        let _ = write!(
            s,
            "{{\"schema\":{SCHEMA},\"kind\":\"part\",\"gateway\":\"{}\",\"version\":{},\
             \"digest\":\"{digest}\",\"part\":{part},\"parts\":{parts},\
             \"zone\":{{\"suffix\":\"{}\",\"local\":\"{}\",\"ttl\":{},\"service_ttl\":{},\
             \"family\":\"{}\",\"nodes\":{}",
            self.gateway,
            self.version,
            z.suffix,
            z.local,
            z.ttl,
            z.service_ttl,
            z.family.as_str(),
            z.nodes
        );
        if let Some(p) = z.probe {
            let _ = write!(s, ",\"probe\":{p}");
        }
        let _ = write!(s, "}},\"first_node\":{first},\"nodes\":[");
        s
    }

    /// Applies `d` as an agent must: only on exactly its base version, in the order
    /// `node_drop`, `node_set`, `del`, `set`, `hosts`, and only if the result has the digest
    /// `d` declares. On error `self` is unchanged.
    pub fn apply(&mut self, d: &Delta) -> Result<(), EncodeError> {
        if d.base != self.version || d.gateway != self.gateway {
            return Err(EncodeError::WrongBase);
        }
        let mut next = self.clone();
        let slots = next.nodes.len();
        for &i in &d.node_drop {
            *next
                .nodes
                .get_mut(usize::from(i))
                .ok_or(invalid("node_drop", Some(usize::from(i))))? = None;
        }
        for (i, n) in &d.node_set {
            *next
                .nodes
                .get_mut(usize::from(*i))
                .ok_or(invalid("node_set", Some(usize::from(*i))))? = Some(*n);
        }
        for (ns, name) in &d.del {
            let at = next.find(ns, name).map_err(|_| invalid("del", None))?;
            next.services.remove(at);
        }
        for s in &d.set {
            match next.find(&s.ns, &s.name) {
                Ok(at) => next.services[at] = s.clone(),
                Err(at) => next.services.insert(at, s.clone()),
            }
        }
        for p in &d.hosts {
            let at = next
                .find(&p.ns, &p.name)
                .map_err(|_| invalid("hosts", None))?;
            let hosts = &mut next.services[at].hosts;
            for &h in &p.del {
                let k = hosts.binary_search(&h).map_err(|_| invalid("del", None))?;
                hosts.remove(k);
            }
            for &h in &p.add {
                match hosts.binary_search(&h) {
                    Ok(_) => return Err(invalid("add", None)),
                    Err(k) => hosts.insert(k, h),
                }
            }
            if hosts.is_empty() || hosts.iter().any(|&h| usize::from(h) >= slots) {
                return Err(invalid("hosts", None));
            }
        }
        next.version = d.version;
        next.check()?;
        if next.digest() != d.digest {
            return Err(EncodeError::DigestMismatch);
        }
        *self = next;
        Ok(())
    }

    fn find(&self, ns: &str, name: &str) -> Result<usize, usize> {
        self.services.binary_search_by(|s| s.key().cmp(&(ns, name)))
    }

    /// Assembles decoded parts (any order) into the snapshot they make, as an agent must: one
    /// version and digest, every part once, the same settings, consecutive node slots,
    /// services ascending across parts, and the declared digest.
    pub fn assemble(parts: &[Message]) -> Result<Snapshot, EncodeError> {
        let mut by_index: Vec<Option<&PartData>> = Vec::new();
        let mut first: Option<&PartData> = None;
        for m in parts {
            let Message::Part(p) = m else {
                return Err(EncodeError::Parts("not a part"));
            };
            let f = *first.get_or_insert(p);
            if (p.gateway.as_str(), p.version, p.digest, p.parts, p.zone)
                != (f.gateway.as_str(), f.version, f.digest, f.parts, f.zone)
            {
                return Err(EncodeError::Parts("parts of different snapshots"));
            }
            by_index.resize(usize::from(p.parts), None);
            let slot = &mut by_index[usize::from(p.part)];
            if slot.is_some() {
                return Err(EncodeError::Parts("a part twice"));
            }
            *slot = Some(p);
        }
        let Some(f) = first else {
            return Err(EncodeError::Parts("no parts"));
        };
        let mut snap = Snapshot {
            gateway: f.gateway.clone(),
            version: f.version,
            zone: f.zone,
            nodes: Vec::new(),
            services: Vec::new(),
        };
        for p in by_index {
            let p = p.ok_or(EncodeError::Parts("a part is missing"))?;
            if usize::from(p.first_node) != snap.nodes.len() {
                return Err(EncodeError::Parts("node slots not consecutive"));
            }
            snap.nodes.extend(p.nodes.iter().copied());
            snap.services.extend(p.services.iter().cloned());
        }
        snap.check()
            .map_err(|_| EncodeError::Parts("the whole breaks a rule"))?;
        if snap.digest() != f.digest {
            return Err(EncodeError::DigestMismatch);
        }
        Ok(snap)
    }
}

impl Delta {
    /// The delta from `old` to `new` (`new.version` must be newer), or `None` when no delta
    /// can express it (other settings, gateway or number of node slots: send a snapshot).
    /// Services whose only change is their hosts become `hosts` patches when that is shorter.
    pub fn between(old: &Snapshot, new: &Snapshot) -> Option<Delta> {
        if old.gateway != new.gateway
            || old.zone != new.zone
            || old.nodes.len() != new.nodes.len()
            || !new.version.is_newer_than(old.version)
        {
            return None;
        }
        let mut d = Delta {
            gateway: new.gateway.clone(),
            base: old.version,
            version: new.version,
            digest: new.digest(),
            node_drop: Vec::new(),
            node_set: Vec::new(),
            del: Vec::new(),
            set: Vec::new(),
            hosts: Vec::new(),
        };
        for (i, (a, b)) in old.nodes.iter().zip(&new.nodes).enumerate() {
            match (a, b) {
                (Some(_), None) => d.node_drop.push(i as u16),
                (a, Some(b)) if a.as_ref() != Some(b) => d.node_set.push((i as u16, *b)),
                _ => {}
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < old.services.len() || j < new.services.len() {
            let a = old.services.get(i);
            let b = new.services.get(j);
            let ord = match (a, b) {
                (Some(a), Some(b)) => a.key().cmp(&b.key()),
                (Some(_), None) => core::cmp::Ordering::Less,
                _ => core::cmp::Ordering::Greater,
            };
            match (ord, a, b) {
                (core::cmp::Ordering::Less, Some(a), _) => {
                    d.del.push((a.ns.clone(), a.name.clone()));
                    i += 1;
                }
                (core::cmp::Ordering::Greater, _, Some(b)) => {
                    d.set.push(b.clone());
                    j += 1;
                }
                (_, Some(a), Some(b)) => {
                    if a != b {
                        let same_but_hosts = a.short == b.short && a.ports == b.ports;
                        let add: Vec<u16> = b
                            .hosts
                            .iter()
                            .copied()
                            .filter(|h| a.hosts.binary_search(h).is_err())
                            .collect();
                        let del: Vec<u16> = a
                            .hosts
                            .iter()
                            .copied()
                            .filter(|h| b.hosts.binary_search(h).is_err())
                            .collect();
                        if same_but_hosts && add.len() + del.len() < b.hosts.len() {
                            d.hosts.push(HostPatch {
                                ns: b.ns.clone(),
                                name: b.name.clone(),
                                add,
                                del,
                            });
                        } else {
                            d.set.push(b.clone());
                        }
                    }
                    i += 1;
                    j += 1;
                }
                _ => break,
            }
        }
        Some(d)
    }

    /// Encodes the delta; [`EncodeError::TooLarge`] when it exceeds [`MAX_MESSAGE_BYTES`]
    /// (then publish a snapshot and a notice instead).
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        if !is_gateway_id(&self.gateway) {
            return Err(invalid("gateway", None));
        }
        if !self.version.is_newer_than(self.base) {
            return Err(invalid("version", None));
        }
        let mut s = String::new();
        let _ = write!(
            s,
            "{{\"schema\":{SCHEMA},\"kind\":\"delta\",\"gateway\":\"{}\",\"base\":{},\
             \"version\":{},\"digest\":\"{}\"",
            self.gateway, self.base, self.version, self.digest
        );
        if !self.node_drop.is_empty() {
            s.push_str(",\"node_drop\":");
            write_indices(&mut s, &self.node_drop);
        }
        if !self.node_set.is_empty() {
            s.push_str(",\"node_set\":[");
            for (k, (i, n)) in self.node_set.iter().enumerate() {
                check_node(usize::from(*i), n)?;
                if k > 0 {
                    s.push(',');
                }
                write_node(&mut s, Some(*i), n);
            }
            s.push(']');
        }
        if !self.del.is_empty() {
            s.push_str(",\"del\":[");
            for (k, (ns, name)) in self.del.iter().enumerate() {
                if !super::is_label(ns) || !super::is_label(name) {
                    return Err(invalid("del", Some(k)));
                }
                if k > 0 {
                    s.push(',');
                }
                let _ = write!(s, "{{\"ns\":\"{ns}\",\"name\":\"{name}\"}}");
            }
            s.push(']');
        }
        if !self.set.is_empty() {
            s.push_str(",\"set\":[");
            for (k, svc) in self.set.iter().enumerate() {
                check_service(k, svc, MAX_NODES)?;
                if k > 0 {
                    s.push(',');
                }
                write_service(&mut s, svc);
            }
            s.push(']');
        }
        if !self.hosts.is_empty() {
            s.push_str(",\"hosts\":[");
            for (k, p) in self.hosts.iter().enumerate() {
                if !super::is_label(&p.ns) || !super::is_label(&p.name) {
                    return Err(invalid("hosts", Some(k)));
                }
                if k > 0 {
                    s.push(',');
                }
                let _ = write!(s, "{{\"ns\":\"{}\",\"name\":\"{}\"", p.ns, p.name);
                if !p.add.is_empty() {
                    s.push_str(",\"add\":");
                    write_indices(&mut s, &p.add);
                }
                if !p.del.is_empty() {
                    s.push_str(",\"del\":");
                    write_indices(&mut s, &p.del);
                }
                s.push('}');
            }
            s.push(']');
        }
        s.push('}');
        if s.len() > MAX_MESSAGE_BYTES {
            return Err(EncodeError::TooLarge(s.len()));
        }
        Ok(s.into_bytes())
    }
}

/// Encodes a notice: a snapshot of `version` with `digest` is retained for `gateway`.
pub fn encode_notice(
    gateway: &str,
    version: Version,
    digest: Digest,
) -> Result<Vec<u8>, EncodeError> {
    if !is_gateway_id(gateway) {
        return Err(invalid("gateway", None));
    }
    let mut s = String::new();
    let _ = write!(
        s,
        "{{\"schema\":{SCHEMA},\"kind\":\"notice\",\"gateway\":\"{gateway}\",\"version\":{version},\"digest\":\"{digest}\"}}"
    );
    Ok(s.into_bytes())
}

fn join(s: &mut String, items: &[String]) {
    for (k, it) in items.iter().enumerate() {
        if k > 0 {
            s.push(',');
        }
        s.push_str(it);
    }
}

/// Writes ascending indices as the string form: each maximal run of consecutive indices as
/// `A-B`, single ones as `N`, separated by commas (`"0-3,7,9-12"`).
fn write_indices(s: &mut String, v: &[u16]) {
    s.push('"');
    let mut i = 0;
    while i < v.len() {
        let mut j = i;
        while j + 1 < v.len() && v[j + 1] == v[j] + 1 {
            j += 1;
        }
        if i > 0 {
            s.push(',');
        }
        if j > i {
            let _ = write!(s, "{}-{}", v[i], v[j]);
        } else {
            let _ = write!(s, "{}", v[i]);
        }
        i = j + 1;
    }
    s.push('"');
}

fn write_node(s: &mut String, index: Option<u16>, n: &Node) {
    s.push('{');
    if let Some(i) = index {
        let _ = write!(s, "\"index\":{i},");
    }
    let _ = write!(
        s,
        "\"name\":\"{}\",\"tier\":\"{}\"",
        n.name,
        n.tier.as_str()
    );
    if let Some(a) = n.v4 {
        let _ = write!(s, ",\"v4\":\"{a}\"");
    }
    if let Some(a) = n.v6 {
        let _ = write!(s, ",\"v6\":\"{a}\"");
    }
    s.push('}');
}

fn write_service(s: &mut String, svc: &Service) {
    let _ = write!(s, "{{\"ns\":\"{}\",\"name\":\"{}\"", svc.ns, svc.name);
    if svc.short {
        s.push_str(",\"short\":true");
    }
    if !svc.ports.is_empty() {
        s.push_str(",\"ports\":[");
        for (k, p) in svc.ports.iter().enumerate() {
            if k > 0 {
                s.push(',');
            }
            let _ = write!(s, "\"{p}\"");
        }
        s.push(']');
    }
    s.push_str(",\"hosts\":");
    write_indices(s, &svc.hosts);
    s.push('}');
}

// ---------------------------------------------------------------------------------------
// Decoding into owned values (tests, tools, the master reading its own tails)

/// A decoded part, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartData {
    /// The gateway id.
    pub gateway: String,
    /// The snapshot's version.
    pub version: Version,
    /// The snapshot's digest.
    pub digest: Digest,
    /// This part's index.
    pub part: u8,
    /// The number of parts.
    pub parts: u8,
    /// The settings.
    pub zone: ZoneHeader,
    /// The first node slot in `nodes`.
    pub first_node: u16,
    /// Node slots from `first_node`.
    pub nodes: Vec<Option<Node>>,
    /// Services.
    pub services: Vec<Service>,
}

/// A decoded message, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A snapshot part.
    Part(Box<PartData>),
    /// A delta.
    Delta(Delta),
    /// A notice.
    Notice {
        /// The gateway id.
        gateway: String,
        /// The announced version.
        version: Version,
        /// Its digest.
        digest: Digest,
    },
}

impl Message {
    /// Encodes the message again (a part on its own, with its own numbers).
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        match self {
            Message::Part(p) => {
                let snap = Snapshot {
                    gateway: p.gateway.clone(),
                    version: p.version,
                    zone: p.zone,
                    nodes: Vec::new(),
                    services: Vec::new(),
                };
                let mut s = snap.part_head(
                    p.digest,
                    usize::from(p.part),
                    usize::from(p.parts),
                    usize::from(p.first_node),
                );
                for (k, n) in p.nodes.iter().enumerate() {
                    if k > 0 {
                        s.push(',');
                    }
                    match n {
                        Some(n) => write_node(&mut s, None, n),
                        None => s.push_str("null"),
                    }
                }
                s.push_str("],\"services\":[");
                for (k, svc) in p.services.iter().enumerate() {
                    if k > 0 {
                        s.push(',');
                    }
                    write_service(&mut s, svc);
                }
                s.push_str("]}");
                Ok(s.into_bytes())
            }
            Message::Delta(d) => d.encode(),
            Message::Notice {
                gateway,
                version,
                digest,
            } => encode_notice(gateway, *version, *digest),
        }
    }
}

#[derive(Default)]
struct Collect {
    env: Option<Envelope>,
    nodes: Vec<Option<Node>>,
    node_drop: Vec<u16>,
    node_set: Vec<(u16, Node)>,
    del: Vec<(String, String)>,
    services: Vec<Service>,
    hosts: Vec<HostPatch>,
}

impl Visitor for Collect {
    fn envelope(&mut self, env: &Envelope) -> Result<(), &'static str> {
        self.env = Some(*env);
        Ok(())
    }
    fn node(&mut self, _index: u16, node: Option<&Node>) -> Result<(), &'static str> {
        self.nodes.push(node.copied());
        Ok(())
    }
    fn node_drop(&mut self, index: u16) -> Result<(), &'static str> {
        self.node_drop.push(index);
        Ok(())
    }
    fn node_set(&mut self, index: u16, node: &Node) -> Result<(), &'static str> {
        self.node_set.push((index, *node));
        Ok(())
    }
    fn service_del(&mut self, ns: &str, name: &str) -> Result<(), &'static str> {
        self.del.push((ns.to_string(), name.to_string()));
        Ok(())
    }
    fn service(&mut self, s: &ServiceRef<'_>) -> Result<(), &'static str> {
        self.services.push(Service::from_ref(s));
        Ok(())
    }
    fn hosts(
        &mut self,
        ns: &str,
        name: &str,
        add: &[u16],
        del: &[u16],
    ) -> Result<(), &'static str> {
        self.hosts.push(HostPatch {
            ns: ns.to_string(),
            name: name.to_string(),
            add: add.to_vec(),
            del: del.to_vec(),
        });
        Ok(())
    }
}

/// Decodes a message (through the same door and decoder as the agent) into owned values.
pub fn decode_owned(msg: &[u8]) -> Result<Message, decode::Error> {
    let mut scratch = Box::new(Scratch::new());
    let mut c = Collect::default();
    let env = decode::decode(msg, &mut scratch, &mut c)?;
    let gateway = env.gateway.as_str().to_string();
    Ok(match env.kind {
        Kind::Part => Message::Part(Box::new(PartData {
            gateway,
            version: env.version,
            digest: env.digest,
            part: env.part,
            parts: env.parts,
            zone: env.zone.unwrap_or_else(unreachable_zone),
            first_node: env.first_node,
            nodes: c.nodes,
            services: c.services,
        })),
        Kind::Delta => Message::Delta(Delta {
            gateway,
            base: env.base.unwrap_or(Version(0)),
            version: env.version,
            digest: env.digest,
            node_drop: c.node_drop,
            node_set: c.node_set,
            del: c.del,
            set: c.services,
            hosts: c.hosts,
        }),
        Kind::Notice => Message::Notice {
            gateway,
            version: env.version,
            digest: env.digest,
        },
    })
}

/// A part always has a zone; this only keeps `decode_owned` free of panics.
fn unreachable_zone() -> ZoneHeader {
    ZoneHeader {
        suffix: super::Str::EMPTY,
        local: super::Str::EMPTY,
        ttl: 0,
        service_ttl: 0,
        family: super::Family::Dual,
        nodes: 0,
        probe: None,
    }
}
