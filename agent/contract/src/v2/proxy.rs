//! Proxy payload v2 (`docs/payload-v2.md`, "Proxy payload v2 (workers)", issue 11 item 6):
//! what a worker's reverse proxy needs, as data, on `P/nodes/NODE/v2/{part/K,tail,delta}`.
//! The worker renders `sdwan.conf` and the help page itself, so a service change is a small
//! delta instead of two multi-megabyte files.
//!
//! The framing is the zone's: `schema` 2, kinds `part`, `delta` and `notice`, the same
//! [`Version`]s, the same order-independent [`Digest`] (item tags `P`, `N`, `S`), the same
//! index lists and the same acceptance rules ([`super::accept::part`], [`super::accept::delta`],
//! [`super::accept::notice`] take the [`Held`](super::accept::Held) version and digest).
//! The differences: `"node"` instead of `"gateway"`, the header `proxy`, node slots that
//! carry only a name, services with `unique`, `here`, proxy ports and up to
//! [`MAX_PROXY_LINKS`] node slots for the help page's links, and no `hosts` patches (a
//! service is always set whole: it is small).
//!
//! Owned types and the decoder both need `alloc`: the worker agent is std. The decoder still
//! takes its bytes through [`crate::json::check`] with [`super::JSON_LIMITS`], reads them
//! with the crate's pull reader (no recursion), and copies each string into a fixed buffer of
//! its field's maximum size before it owns it.
//!
//! Layout: limits and id rules, the types ([`ProxyHeader`], [`ProxyPort`], [`ProxyService`],
//! [`ProxySnapshot`], [`ProxyDelta`], [`ProxyMessage`]), the digest, the encoder
//! ([`ProxySnapshot::encode`], [`ProxyDelta::encode`], [`encode_notice`]), the reference
//! semantics of the worker ([`ProxySnapshot::assemble`], [`ProxySnapshot::apply`]), the
//! decoder ([`decode`]), and [`follow`]: a worker following its stream as a pure state
//! machine (messages in, what to serve and when to resync out).

use alloc::boxed::Box;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt::{self, Write as _};

use super::decode::{
    e, fields, indices, invalid as invalid_at, label_field, require, Error, ErrorKind, Key,
};
use super::digest::Hasher;
use super::encode::EncodeError;
use super::read::{Reader, Token};
use super::{
    is_gateway_id, is_label, is_node_name, is_port_label, is_suffix, Digest, Kind, Str, Version,
    JSON_LIMITS, MAX_GATEWAY, MAX_MESSAGE_BYTES, MAX_NODES, MAX_NODE_NAME, MAX_PARTS, MAX_PORTS,
    MAX_PORT_NAME, MAX_SERVICES, MAX_SUFFIX, SCHEMA,
};
use crate::json;

/// Most node slots a service names for the help page's links.
pub const MAX_PROXY_LINKS: usize = 8;
/// Longest `upstream_host`.
pub const MAX_UPSTREAM_HOST: usize = 253;
/// Longest `dir`.
pub const MAX_DIR: usize = 200;

// ---------------------------------------------------------------------------------------
// Id rules of the header

/// An `upstream_host`: an IPv4 or IPv6 literal, or a DNS name of labels of
/// `[A-Za-z0-9-]` (1..=63, no `-` at either end), at most 253 characters.
pub fn is_upstream_host(h: &str) -> bool {
    h.parse::<core::net::IpAddr>().is_ok()
        || (!h.is_empty()
            && h.len() <= MAX_UPSTREAM_HOST
            && h.split('.').all(|l| {
                (1..=63).contains(&l.len())
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            }))
}

/// A `dir`: an absolute path of `[A-Za-z0-9._/-]`, no `..` component, no trailing `/`
/// (except `/` itself), at most 200 characters.
pub fn is_proxy_dir(d: &str) -> bool {
    d.starts_with('/')
        && d.len() <= MAX_DIR
        && (d == "/" || !d.ends_with('/'))
        && d.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/'))
        && !d.split('/').any(|c| c == "..")
}

// ---------------------------------------------------------------------------------------
// Types

/// The worker's proxy settings, the same in every part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyHeader {
    /// The zone suffix ([`is_suffix`]).
    pub suffix: String,
    /// The nearest-worker label ([`is_label`]).
    pub local: String,
    /// The port nginx listens on, `1..=65535`.
    pub listen_port: u16,
    /// Where nginx reaches the NodePorts ([`is_upstream_host`]).
    pub upstream_host: String,
    /// The directory of the proxy files on the worker ([`is_proxy_dir`]).
    pub dir: String,
    /// nginx listens on `[::]` too (the worker has an IPv6 address, issue 13).
    pub ipv6: bool,
    /// Number of node slots, `0..=4096`.
    pub nodes: u16,
}

impl ProxyHeader {
    /// Checks every field against its rule; the error names the field.
    pub fn check(&self) -> Result<(), &'static str> {
        if !is_suffix(&self.suffix) {
            return Err("suffix");
        }
        if !is_label(&self.local) {
            return Err("local");
        }
        if self.listen_port == 0 {
            return Err("listen_port");
        }
        if !is_upstream_host(&self.upstream_host) {
            return Err("upstream_host");
        }
        if !is_proxy_dir(&self.dir) {
            return Err("dir");
        }
        if usize::from(self.nodes) > MAX_NODES {
            return Err("nodes");
        }
        Ok(())
    }
}

/// A port's protocol, as Kubernetes spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// `TCP`: the only one nginx proxies over HTTP.
    Tcp,
    /// `UDP`
    Udp,
    /// `SCTP`
    Sctp,
}

impl Protocol {
    /// The Kubernetes text.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        }
    }
    /// The protocol spelled `s`.
    pub fn parse(s: &str) -> Option<Protocol> {
        [Protocol::Tcp, Protocol::Udp, Protocol::Sctp]
            .into_iter()
            .find(|p| p.as_str() == s)
    }
}

/// A service port with its NodePort: `<name or number>/<TCP|UDP|SCTP>/<port>:<node_port>`.
/// An unnamed port writes its number where the name goes (`80/TCP/80:30080`); a name always
/// has a letter ([`is_port_label`]), so the two cannot be confused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProxyPort {
    /// The port's name; `None` for an unnamed port.
    pub name: Option<Str<MAX_PORT_NAME>>,
    /// The protocol.
    pub protocol: Protocol,
    /// The service port, `1..=65535`.
    pub port: u16,
    /// The NodePort, `1..=65535`.
    pub node_port: u16,
}

impl ProxyPort {
    /// Parses the text form; `None` when any rule is broken.
    pub fn parse(s: &str) -> Option<ProxyPort> {
        let (owner, node_port) = s.split_once(':')?;
        let mut it = owner.split('/');
        let (label, proto, port) = (it.next()?, it.next()?, it.next()?);
        if it.next().is_some() {
            return None;
        }
        let port = number(port)?;
        let name = if label.bytes().all(|c| c.is_ascii_digit()) {
            if number(label)? != port {
                return None;
            }
            None
        } else if is_port_label(label) {
            Some(Str::new(label)?)
        } else {
            return None;
        };
        Some(ProxyPort {
            name,
            protocol: Protocol::parse(proto)?,
            port,
            node_port: number(node_port)?,
        })
    }

    /// Checks what [`ProxyPort::parse`] checks (for ports built by hand).
    pub fn is_valid(&self) -> bool {
        self.port > 0
            && self.node_port > 0
            && self.name.is_none_or(|n| {
                is_port_label(n.as_str()) && !n.as_str().bytes().all(|c| c.is_ascii_digit())
            })
    }

    /// Whether two ports are the same port of a service (the text before `:`).
    fn same_owner(&self, o: &ProxyPort) -> bool {
        (self.name, self.protocol, self.port) == (o.name, o.protocol, o.port)
    }
}

/// `1..=65535` in decimal without a leading zero.
fn number(s: &str) -> Option<u16> {
    if s.is_empty() || s.len() > 5 || s.starts_with('0') || !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse::<u16>().ok().filter(|&p| p > 0)
}

impl fmt::Display for ProxyPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(n) => write!(f, "{n}")?,
            None => write!(f, "{}", self.port)?,
        }
        write!(
            f,
            "/{}/{}:{}",
            self.protocol.as_str(),
            self.port,
            self.node_port
        )
    }
}

/// A service as the worker's proxy and help page need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyService {
    /// Namespace ([`is_label`]).
    pub ns: String,
    /// Name ([`is_label`]).
    pub name: String,
    /// No other exposed service has this name: `/<name>/` works besides `/<ns>/<name>/`.
    pub unique: bool,
    /// Ports with a NodePort, 0..=32, in the service's order (the first TCP port named
    /// `http`, else the first TCP port, is the one proxied), no port twice.
    pub ports: Vec<ProxyPort>,
    /// A ready endpoint is on this worker: nginx proxies it.
    pub here: bool,
    /// Up to [`MAX_PROXY_LINKS`] node slots of other workers holding it, ascending, for the
    /// help page's links.
    pub nodes: Vec<u16>,
}

impl ProxyService {
    /// Checks the service's own rules (not that `nodes` are below the slot count); the error
    /// names the field.
    pub fn check(&self) -> Result<(), &'static str> {
        if !is_label(&self.ns) {
            return Err("ns");
        }
        if !is_label(&self.name) {
            return Err("name");
        }
        if self.ports.len() > MAX_PORTS || !self.ports.iter().all(ProxyPort::is_valid) {
            return Err("ports");
        }
        for (i, p) in self.ports.iter().enumerate() {
            if self.ports[..i].iter().any(|q| q.same_owner(p)) {
                return Err("ports");
            }
        }
        if self.nodes.len() > MAX_PROXY_LINKS
            || !self.nodes.windows(2).all(|w| w[0] < w[1])
            || self
                .nodes
                .last()
                .is_some_and(|&h| usize::from(h) >= MAX_NODES)
        {
            return Err("nodes");
        }
        Ok(())
    }

    /// The sort key: (`ns`, `name`) bytewise.
    pub fn key(&self) -> (&str, &str) {
        (&self.ns, &self.name)
    }
}

/// A worker's whole proxy content at one version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxySnapshot {
    /// The worker's node name (as in its topics: [`is_gateway_id`]).
    pub node: String,
    /// The version.
    pub version: Version,
    /// The settings.
    pub proxy: ProxyHeader,
    /// One entry per node slot (`proxy.nodes` of them): a node name, or `None` (empty).
    pub nodes: Vec<Option<String>>,
    /// Services, strictly ascending by (`ns`, `name`).
    pub services: Vec<ProxyService>,
}

/// Changes from `base` to `version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyDelta {
    /// The worker's node name.
    pub node: String,
    /// The version it applies to.
    pub base: Version,
    /// The version it makes.
    pub version: Version,
    /// The digest after applying.
    pub digest: Digest,
    /// Slots emptied, ascending.
    pub node_drop: Vec<u16>,
    /// Slots given a node name, ascending by slot.
    pub node_set: Vec<(u16, String)>,
    /// Services removed (`ns`, `name`), ascending.
    pub del: Vec<(String, String)>,
    /// Services added or replaced whole, ascending.
    pub set: Vec<ProxyService>,
}

/// A decoded part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyPart {
    /// The worker's node name.
    pub node: String,
    /// The snapshot's version.
    pub version: Version,
    /// The snapshot's digest.
    pub digest: Digest,
    /// This part's index.
    pub part: u8,
    /// The number of parts.
    pub parts: u8,
    /// The settings.
    pub proxy: ProxyHeader,
    /// The first node slot in `nodes`.
    pub first_node: u16,
    /// Node slots from `first_node`.
    pub nodes: Vec<Option<String>>,
    /// Services.
    pub services: Vec<ProxyService>,
}

/// A proxy v2 message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyMessage {
    /// A snapshot part.
    Part(Box<ProxyPart>),
    /// A delta (on `delta`, or the retained `tail`).
    Delta(ProxyDelta),
    /// A snapshot of `version` is retained.
    Notice {
        /// The worker's node name.
        node: String,
        /// The announced version.
        version: Version,
        /// Its digest.
        digest: Digest,
    },
}

impl ProxyMessage {
    /// The node the message is for.
    pub fn node(&self) -> &str {
        match self {
            ProxyMessage::Part(p) => &p.node,
            ProxyMessage::Delta(d) => &d.node,
            ProxyMessage::Notice { node, .. } => node,
        }
    }

    /// Encodes the message again (a part on its own, with its own numbers).
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        match self {
            ProxyMessage::Part(p) => {
                if !is_gateway_id(&p.node) {
                    return Err(invalid("node", None));
                }
                p.proxy.check().map_err(|w| invalid(w, None))?;
                let mut s = part_head(
                    &p.node,
                    p.version,
                    &p.proxy,
                    p.digest,
                    usize::from(p.part),
                    usize::from(p.parts),
                    usize::from(p.first_node),
                );
                let nodes: Vec<String> = p.nodes.iter().map(|n| node_item(n.as_deref())).collect();
                join(&mut s, &nodes);
                s.push_str("],\"services\":[");
                let services: Vec<String> = p.services.iter().map(service_item).collect();
                join(&mut s, &services);
                s.push_str("]}");
                Ok(s.into_bytes())
            }
            ProxyMessage::Delta(d) => d.encode(),
            ProxyMessage::Notice {
                node,
                version,
                digest,
            } => encode_notice(node, *version, *digest),
        }
    }
}

fn invalid(what: &'static str, item: Option<usize>) -> EncodeError {
    EncodeError::Invalid { what, item }
}

// ---------------------------------------------------------------------------------------
// Digest: `h(P header) + Σ h(N slot) + Σ h(S service)`, wrapping.

/// The hash of the header item: `P`, str node, str suffix, str local, u16 listen_port,
/// str upstream_host, str dir, u8 ipv6, u16 node slots.
pub fn header_hash(node: &str, h: &ProxyHeader) -> u64 {
    let mut x = Hasher::new(b'P');
    x.str(node);
    x.str(&h.suffix);
    x.str(&h.local);
    x.bytes(&h.listen_port.to_be_bytes());
    x.str(&h.upstream_host);
    x.str(&h.dir);
    x.bytes(&[u8::from(h.ipv6)]);
    x.bytes(&h.nodes.to_be_bytes());
    x.finish()
}

/// The hash of the node named `name` in slot `index`: `N`, u16 index, str name.
pub fn node_hash(index: u16, name: &str) -> u64 {
    let mut x = Hasher::new(b'N');
    x.bytes(&index.to_be_bytes());
    x.str(name);
    x.finish()
}

/// The hash of a service: `S`, str ns, str name, u8 unique, u8 here, u8 port count, per
/// port: str name (empty when unnamed), u8 protocol (0 TCP, 1 UDP, 2 SCTP), u16 port, u16
/// node_port; u8 node count, u16 per node.
pub fn service_hash(s: &ProxyService) -> u64 {
    let mut x = Hasher::new(b'S');
    x.str(&s.ns);
    x.str(&s.name);
    x.bytes(&[
        u8::from(s.unique),
        u8::from(s.here),
        s.ports.len().min(255) as u8,
    ]);
    for p in &s.ports {
        x.str(p.name.as_ref().map_or("", |n| n.as_str()));
        x.bytes(&[p.protocol as u8]);
        x.bytes(&p.port.to_be_bytes());
        x.bytes(&p.node_port.to_be_bytes());
    }
    x.bytes(&[s.nodes.len().min(255) as u8]);
    for n in &s.nodes {
        x.bytes(&n.to_be_bytes());
    }
    x.finish()
}

// ---------------------------------------------------------------------------------------
// The snapshot: checks, digest, encoding, the worker's reference semantics

impl ProxySnapshot {
    /// Checks every rule of the schema; the error names the field and item.
    pub fn check(&self) -> Result<(), EncodeError> {
        if !is_gateway_id(&self.node) {
            return Err(invalid("node", None));
        }
        self.proxy.check().map_err(|w| invalid(w, None))?;
        if self.nodes.len() != usize::from(self.proxy.nodes) {
            return Err(invalid("nodes", None));
        }
        let mut names: Vec<&str> = Vec::new();
        for (i, n) in self.nodes.iter().enumerate() {
            if let Some(n) = n {
                if !is_node_name(n) {
                    return Err(invalid("name", Some(i)));
                }
                names.push(n);
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
        let mut d = Digest::ZERO.with(header_hash(&self.node, &self.proxy));
        for (i, n) in self.nodes.iter().enumerate() {
            if let Some(n) = n {
                d = d.with(node_hash(i as u16, n));
            }
        }
        for s in &self.services {
            d = d.with(service_hash(s));
        }
        d
    }

    /// The services with a ready endpoint on this worker (what nginx proxies).
    pub fn here(&self) -> impl Iterator<Item = &ProxyService> {
        self.services.iter().filter(|s| s.here)
    }

    /// The name in slot `i`, if the slot holds a node.
    pub fn node_name(&self, i: u16) -> Option<&str> {
        self.nodes.get(usize::from(i))?.as_deref()
    }

    /// Checks, then encodes the snapshot as parts, each at most [`MAX_MESSAGE_BYTES`]: node
    /// slots first, then services, as many per part as fit.
    pub fn encode(&self) -> Result<Vec<Vec<u8>>, EncodeError> {
        self.check()?;
        let digest = self.digest();
        let nodes: Vec<String> = self.nodes.iter().map(|n| node_item(n.as_deref())).collect();
        let services: Vec<String> = self.services.iter().map(service_item).collect();
        let fixed = part_head(
            &self.node,
            self.version,
            &self.proxy,
            digest,
            9999,
            9999,
            9999,
        )
        .len()
            + "],\"services\":[]}".len();
        let room = MAX_MESSAGE_BYTES - fixed;
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
                let mut s = part_head(&self.node, self.version, &self.proxy, digest, k, n, fnode);
                join(&mut s, &nodes[fnode..fnode + nn]);
                s.push_str("],\"services\":[");
                join(&mut s, &services[fsvc..fsvc + ns]);
                s.push_str("]}");
                s.into_bytes()
            })
            .collect())
    }

    /// Applies `d` as a worker must: only on exactly its base version and node, in the order
    /// `node_drop`, `node_set`, `del`, `set`, and only if the result keeps every rule and has
    /// the digest `d` declares. On error `self` is unchanged.
    pub fn apply(&mut self, d: &ProxyDelta) -> Result<(), EncodeError> {
        if d.base != self.version || d.node != self.node {
            return Err(EncodeError::WrongBase);
        }
        let mut next = self.clone();
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
                .ok_or(invalid("node_set", Some(usize::from(*i))))? = Some(n.clone());
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

    /// Assembles decoded parts (any order) into the snapshot they make, as a worker must: one
    /// node, version and digest, every part once, the same settings, consecutive node slots,
    /// services ascending across parts, and the declared digest.
    pub fn assemble(parts: &[ProxyMessage]) -> Result<ProxySnapshot, EncodeError> {
        let mut by_index: Vec<Option<&ProxyPart>> = Vec::new();
        let mut first: Option<&ProxyPart> = None;
        for m in parts {
            let ProxyMessage::Part(p) = m else {
                return Err(EncodeError::Parts("not a part"));
            };
            let f = *first.get_or_insert(p);
            if (p.node.as_str(), p.version, p.digest, p.parts, &p.proxy)
                != (f.node.as_str(), f.version, f.digest, f.parts, &f.proxy)
            {
                return Err(EncodeError::Parts("parts of different snapshots"));
            }
            by_index.resize(usize::from(p.parts), None);
            let slot = by_index
                .get_mut(usize::from(p.part))
                .ok_or(EncodeError::Parts("part beyond parts"))?;
            if slot.is_some() {
                return Err(EncodeError::Parts("a part twice"));
            }
            *slot = Some(p);
        }
        let Some(f) = first else {
            return Err(EncodeError::Parts("no parts"));
        };
        let mut snap = ProxySnapshot {
            node: f.node.clone(),
            version: f.version,
            proxy: f.proxy.clone(),
            nodes: Vec::new(),
            services: Vec::new(),
        };
        for p in by_index {
            let p = p.ok_or(EncodeError::Parts("a part is missing"))?;
            if usize::from(p.first_node) != snap.nodes.len() {
                return Err(EncodeError::Parts("node slots not consecutive"));
            }
            snap.nodes.extend(p.nodes.iter().cloned());
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

fn check_service(i: usize, s: &ProxyService, slots: usize) -> Result<(), EncodeError> {
    s.check().map_err(|w| invalid(w, Some(i)))?;
    if s.nodes.iter().any(|&h| usize::from(h) >= slots) {
        return Err(invalid("nodes", Some(i)));
    }
    Ok(())
}

impl ProxyDelta {
    /// The delta from `old` to `new` (`new.version` must be newer), or `None` when no delta
    /// can express it (another node, other settings or number of node slots: send a
    /// snapshot and a notice).
    pub fn between(old: &ProxySnapshot, new: &ProxySnapshot) -> Option<ProxyDelta> {
        if old.node != new.node
            || old.proxy != new.proxy
            || old.nodes.len() != new.nodes.len()
            || !new.version.is_newer_than(old.version)
        {
            return None;
        }
        let mut d = ProxyDelta {
            node: new.node.clone(),
            base: old.version,
            version: new.version,
            digest: new.digest(),
            node_drop: Vec::new(),
            node_set: Vec::new(),
            del: Vec::new(),
            set: Vec::new(),
        };
        for (i, (a, b)) in old.nodes.iter().zip(&new.nodes).enumerate() {
            match (a, b) {
                (Some(_), None) => d.node_drop.push(i as u16),
                (a, Some(b)) if a.as_ref() != Some(b) => d.node_set.push((i as u16, b.clone())),
                _ => {}
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < old.services.len() || j < new.services.len() {
            use core::cmp::Ordering::*;
            let (a, b) = (old.services.get(i), new.services.get(j));
            let ord = match (a, b) {
                (Some(a), Some(b)) => a.key().cmp(&b.key()),
                (Some(_), None) => Less,
                _ => Greater,
            };
            match (ord, a, b) {
                (Less, Some(a), _) => {
                    d.del.push((a.ns.clone(), a.name.clone()));
                    i += 1;
                }
                (Greater, _, Some(b)) => {
                    d.set.push(b.clone());
                    j += 1;
                }
                (_, Some(a), Some(b)) => {
                    if a != b {
                        d.set.push(b.clone());
                    }
                    i += 1;
                    j += 1;
                }
                _ => break,
            }
        }
        Some(d)
    }

    /// Whether the delta changes nothing.
    pub fn is_empty(&self) -> bool {
        self.node_drop.is_empty()
            && self.node_set.is_empty()
            && self.del.is_empty()
            && self.set.is_empty()
    }

    /// Encodes the delta; [`EncodeError::TooLarge`] when it exceeds [`MAX_MESSAGE_BYTES`]
    /// (then publish a snapshot and a notice instead).
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        if !is_gateway_id(&self.node) {
            return Err(invalid("node", None));
        }
        if !self.version.is_newer_than(self.base) {
            return Err(invalid("version", None));
        }
        let mut s = String::new();
        let _ = write!(
            s,
            "{{\"schema\":{SCHEMA},\"kind\":\"delta\",\"node\":\"{}\",\"base\":{},\
             \"version\":{},\"digest\":\"{}\"",
            self.node, self.base, self.version, self.digest
        );
        if !self.node_drop.is_empty() {
            s.push_str(",\"node_drop\":");
            write_indices(&mut s, &self.node_drop);
        }
        if !self.node_set.is_empty() {
            s.push_str(",\"node_set\":[");
            for (k, (i, n)) in self.node_set.iter().enumerate() {
                if !is_node_name(n) || usize::from(*i) >= MAX_NODES {
                    return Err(invalid("node_set", Some(k)));
                }
                if k > 0 {
                    s.push(',');
                }
                let _ = write!(s, "{{\"index\":{i},\"name\":\"{n}\"}}");
            }
            s.push(']');
        }
        if !self.del.is_empty() {
            s.push_str(",\"del\":[");
            for (k, (ns, name)) in self.del.iter().enumerate() {
                if !is_label(ns) || !is_label(name) {
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
                s.push_str(&service_item(svc));
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

/// Encodes a notice: a snapshot of `version` with `digest` is retained for `node`.
pub fn encode_notice(node: &str, version: Version, digest: Digest) -> Result<Vec<u8>, EncodeError> {
    if !is_gateway_id(node) {
        return Err(invalid("node", None));
    }
    Ok(alloc::format!(
        "{{\"schema\":{SCHEMA},\"kind\":\"notice\",\"node\":\"{node}\",\"version\":{version},\"digest\":\"{digest}\"}}"
    )
    .into_bytes())
}

fn part_head(
    node: &str,
    version: Version,
    h: &ProxyHeader,
    digest: Digest,
    part: usize,
    parts: usize,
    first: usize,
) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "{{\"schema\":{SCHEMA},\"kind\":\"part\",\"node\":\"{node}\",\"version\":{version},\
         \"digest\":\"{digest}\",\"part\":{part},\"parts\":{parts},\
         \"proxy\":{{\"suffix\":\"{}\",\"local\":\"{}\",\"listen_port\":{},\
         \"upstream_host\":\"{}\",\"dir\":\"{}\",",
        h.suffix, h.local, h.listen_port, h.upstream_host, h.dir,
    );
    if h.ipv6 {
        s.push_str("\"ipv6\":true,");
    }
    let _ = write!(
        s,
        "\"nodes\":{}}},\"first_node\":{first},\"nodes\":[",
        h.nodes
    );
    s
}

fn node_item(n: Option<&str>) -> String {
    match n {
        Some(n) => alloc::format!("{{\"name\":\"{n}\"}}"),
        None => "null".to_string(),
    }
}

fn service_item(svc: &ProxyService) -> String {
    let mut s = String::new();
    let _ = write!(s, "{{\"ns\":\"{}\",\"name\":\"{}\"", svc.ns, svc.name);
    if svc.unique {
        s.push_str(",\"unique\":true");
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
    if svc.here {
        s.push_str(",\"here\":true");
    }
    if !svc.nodes.is_empty() {
        s.push_str(",\"nodes\":");
        write_indices(&mut s, &svc.nodes);
    }
    s.push('}');
    s
}

fn join(s: &mut String, items: &[String]) {
    for (k, it) in items.iter().enumerate() {
        if k > 0 {
            s.push(',');
        }
        s.push_str(it);
    }
}

/// Ascending indices as an index list (`"0-3,7,9-12"`), maximal ranges.
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

// ---------------------------------------------------------------------------------------
// Decoding

const FIELDS: [&str; 16] = [
    "schema",
    "kind",
    "node",
    "version",
    "digest",
    "base",
    "part",
    "parts",
    "proxy",
    "first_node",
    "nodes",
    "services",
    "node_drop",
    "node_set",
    "del",
    "set",
];
const F_SCHEMA: usize = 0;
const F_KIND: usize = 1;
const F_NODE: usize = 2;
const F_VERSION: usize = 3;
const F_DIGEST: usize = 4;
const F_BASE: usize = 5;
const F_PART: usize = 6;
const F_PARTS: usize = 7;
const F_PROXY: usize = 8;
const F_FIRST: usize = 9;
const F_NODES: usize = 10;
const F_SERVICES: usize = 11;
const F_NODE_DROP: usize = 12;
const F_NODE_SET: usize = 13;
const F_DEL: usize = 14;
const F_SET: usize = 15;

fn fields_of(kind: Kind) -> (u32, u32) {
    let common = 1 << F_SCHEMA | 1 << F_KIND | 1 << F_NODE | 1 << F_VERSION | 1 << F_DIGEST;
    match kind {
        Kind::Part => {
            let req = common
                | 1 << F_PART
                | 1 << F_PARTS
                | 1 << F_PROXY
                | 1 << F_FIRST
                | 1 << F_NODES
                | 1 << F_SERVICES;
            (req, req)
        }
        Kind::Delta => (
            common | 1 << F_BASE,
            common | 1 << F_BASE | 1 << F_NODE_DROP | 1 << F_NODE_SET | 1 << F_DEL | 1 << F_SET,
        ),
        Kind::Notice => (common, common),
    }
}

fn err(kind: ErrorKind, offset: usize) -> Error {
    Error { kind, offset }
}

/// Checks `msg` at the JSON door ([`super::JSON_LIMITS`]), then decodes it: every field
/// checked against its rule, anything the schema does not have refused whole. What needs the
/// whole snapshot (slot count, names unique, the digest) is [`ProxySnapshot::assemble`]'s and
/// [`ProxySnapshot::apply`]'s.
pub fn decode(msg: &[u8]) -> Result<ProxyMessage, Error> {
    json::check(msg, JSON_LIMITS).map_err(|j| err(ErrorKind::Json(j.kind), j.offset))?;
    decode_checked(msg)
}

/// Decodes bytes that passed [`json::check`] with [`super::JSON_LIMITS`]; other bytes are
/// refused (never a panic), but only the door makes the refusal complete.
pub fn decode_checked(msg: &[u8]) -> Result<ProxyMessage, Error> {
    let mut at = [usize::MAX; 16];
    let mut r = Reader::new(msg, 0);
    if r.peek().map_err(e)? != Token::Object {
        return Err(err(ErrorKind::NotObject, r.pos));
    }
    r.object("").map_err(e)?;
    let mut first = true;
    let mut keybuf = [0u8; 16];
    let mut problem: Option<Error> = None;
    loop {
        let key_at = r.pos;
        let Some(key) = r.key(&mut first, &mut keybuf).map_err(e)? else {
            break;
        };
        match FIELDS.iter().position(|f| *f == key) {
            Some(i) if at[i] == usize::MAX => {
                r.peek().map_err(e)?;
                at[i] = r.pos;
            }
            Some(i) => {
                problem.get_or_insert(err(ErrorKind::DuplicateField(FIELDS[i]), key_at));
            }
            None => {
                problem.get_or_insert(err(ErrorKind::UnknownField, key_at));
            }
        }
        r.skip().map_err(e)?;
    }
    let end = r.pos;
    if msg
        .get(end..)
        .is_some_and(|t| t.iter().any(|c| !matches!(c, b' ' | b'\t' | b'\n' | b'\r')))
    {
        return Err(err(ErrorKind::Syntax, end));
    }
    let field =
        |i: usize| -> Option<Reader<'_>> { (at[i] != usize::MAX).then(|| Reader::new(msg, at[i])) };
    let missing = |i: usize| err(ErrorKind::MissingField(FIELDS[i]), 0);

    let mut fr = field(F_SCHEMA).ok_or(missing(F_SCHEMA))?;
    let schema = fr.uint("schema", u64::MAX).map_err(e)?;
    if schema != SCHEMA {
        return Err(err(ErrorKind::UnsupportedSchema(schema), at[F_SCHEMA]));
    }
    if let Some(p) = problem {
        return Err(p);
    }
    let mut buf = [0u8; MAX_SUFFIX + 1];
    let mut fr = field(F_KIND).ok_or(missing(F_KIND))?;
    let kind = match fr.string(&mut buf, "kind").map_err(e)? {
        "part" => Kind::Part,
        "delta" => Kind::Delta,
        "notice" => Kind::Notice,
        _ => return Err(err(ErrorKind::UnknownKind, at[F_KIND])),
    };
    let (required, allowed) = fields_of(kind);
    for (i, &a) in at.iter().enumerate() {
        if a != usize::MAX && allowed & (1 << i) == 0 {
            return Err(err(ErrorKind::FieldNotForKind(FIELDS[i]), a));
        }
        if a == usize::MAX && required & (1 << i) != 0 {
            return Err(missing(i));
        }
    }
    let mut fr = field(F_NODE).ok_or(missing(F_NODE))?;
    let mut nbuf = [0u8; MAX_GATEWAY + 1];
    let node = fr.string(&mut nbuf, "node").map_err(e)?;
    if !is_gateway_id(node) {
        return Err(invalid_at("node", at[F_NODE]));
    }
    let node = node.to_string();
    let mut fr = field(F_VERSION).ok_or(missing(F_VERSION))?;
    let version = Version(fr.uint("version", u64::MAX).map_err(e)?);
    let mut fr = field(F_DIGEST).ok_or(missing(F_DIGEST))?;
    let d = fr.string(&mut buf, "digest").map_err(e)?;
    let digest = Digest::parse_hex(d).ok_or(invalid_at("digest", at[F_DIGEST]))?;

    match kind {
        Kind::Notice => Ok(ProxyMessage::Notice {
            node,
            version,
            digest,
        }),
        Kind::Part => {
            let mut fr = field(F_PARTS).ok_or(missing(F_PARTS))?;
            let parts = fr.uint("parts", MAX_PARTS as u64).map_err(e)?;
            if parts == 0 {
                return Err(err(ErrorKind::OutOfRange("parts"), at[F_PARTS]));
            }
            let mut fr = field(F_PART).ok_or(missing(F_PART))?;
            let part = fr.uint("part", parts - 1).map_err(e)?;
            let mut fr = field(F_PROXY).ok_or(missing(F_PROXY))?;
            let proxy = proxy_header(&mut fr)?;
            let mut fr = field(F_FIRST).ok_or(missing(F_FIRST))?;
            let first_node = fr.uint("first_node", u64::from(proxy.nodes)).map_err(e)? as u16;
            let mut r = field(F_NODES).ok_or(missing(F_NODES))?;
            r.array("nodes").map_err(e)?;
            let mut first = true;
            let mut index = usize::from(first_node);
            let mut nodes = Vec::new();
            while r.next(&mut first).map_err(e)? {
                let item_at = r.pos;
                if index >= usize::from(proxy.nodes) {
                    return Err(err(ErrorKind::IndexOutOfRange("nodes"), item_at));
                }
                if r.null() {
                    nodes.push(None);
                } else {
                    nodes.push(Some(node_object(&mut r, false)?.0));
                }
                index += 1;
            }
            let services = services(
                field(F_SERVICES).ok_or(missing(F_SERVICES))?,
                "services",
                usize::from(proxy.nodes),
            )?;
            Ok(ProxyMessage::Part(Box::new(ProxyPart {
                node,
                version,
                digest,
                part: part as u8,
                parts: parts as u8,
                proxy,
                first_node,
                nodes,
                services,
            })))
        }
        Kind::Delta => {
            let mut fr = field(F_BASE).ok_or(missing(F_BASE))?;
            let base = Version(fr.uint("base", u64::MAX).map_err(e)?);
            if !version.is_newer_than(base) {
                return Err(invalid_at("version", at[F_VERSION]));
            }
            let mut d = ProxyDelta {
                node,
                base,
                version,
                digest,
                node_drop: Vec::new(),
                node_set: Vec::new(),
                del: Vec::new(),
                set: Vec::new(),
            };
            if let Some(mut r) = field(F_NODE_DROP) {
                let mut out = Box::new([0u16; MAX_NODES]);
                let n = indices(&mut r, &mut out, "node_drop", MAX_NODES)?;
                d.node_drop = out[..n].to_vec();
            }
            if let Some(mut r) = field(F_NODE_SET) {
                r.array("node_set").map_err(e)?;
                let mut first = true;
                while r.next(&mut first).map_err(e)? {
                    let item_at = r.pos;
                    let (name, index) = node_object(&mut r, true)?;
                    if d.node_set.last().is_some_and(|&(p, _)| p >= index) {
                        return Err(err(ErrorKind::NotAscending("node_set"), item_at));
                    }
                    d.node_set.push((index, name));
                }
            }
            if let Some(mut r) = field(F_DEL) {
                r.array("del").map_err(e)?;
                let mut first = true;
                let mut prev = Key::default();
                while r.next(&mut first).map_err(e)? {
                    let item_at = r.pos;
                    const NAMES: [&str; 2] = ["ns", "name"];
                    let mut k = Key::default();
                    let seen = fields(&mut r, "del", &NAMES, |i, r| {
                        match i {
                            0 => k.ns = label_field(r, "ns")?,
                            _ => k.name = label_field(r, "name")?,
                        }
                        Ok(())
                    })?;
                    require(seen, &NAMES, 0b11, item_at)?;
                    k.set = true;
                    k.after(&mut prev, "del", item_at)?;
                    d.del
                        .push((k.ns.as_str().to_string(), k.name.as_str().to_string()));
                }
            }
            if let Some(r) = field(F_SET) {
                d.set = services(r, "set", MAX_NODES)?;
            }
            Ok(ProxyMessage::Delta(d))
        }
    }
}

fn proxy_header(r: &mut Reader<'_>) -> Result<ProxyHeader, Error> {
    const NAMES: [&str; 7] = [
        "suffix",
        "local",
        "listen_port",
        "upstream_host",
        "dir",
        "ipv6",
        "nodes",
    ];
    let start = r.pos;
    let mut h = ProxyHeader {
        suffix: String::new(),
        local: String::new(),
        listen_port: 0,
        upstream_host: String::new(),
        dir: String::new(),
        ipv6: false,
        nodes: 0,
    };
    let mut buf = [0u8; MAX_SUFFIX + 1];
    let seen = fields(r, "proxy", &NAMES, |i, r| {
        let at = r.pos;
        match i {
            0 => {
                let s = r.string(&mut buf, "suffix").map_err(e)?;
                if !is_suffix(s) {
                    return Err(invalid_at("suffix", at));
                }
                h.suffix = s.to_string();
            }
            1 => {
                let s = r.string(&mut buf, "local").map_err(e)?;
                if !is_label(s) {
                    return Err(invalid_at("local", at));
                }
                h.local = s.to_string();
            }
            2 => {
                let p = r.uint("listen_port", 65535).map_err(e)?;
                if p == 0 {
                    return Err(err(ErrorKind::OutOfRange("listen_port"), at));
                }
                h.listen_port = p as u16;
            }
            3 => {
                let s = r.string(&mut buf, "upstream_host").map_err(e)?;
                if !is_upstream_host(s) {
                    return Err(invalid_at("upstream_host", at));
                }
                h.upstream_host = s.to_string();
            }
            4 => {
                let s = r.string(&mut buf, "dir").map_err(e)?;
                if !is_proxy_dir(s) {
                    return Err(invalid_at("dir", at));
                }
                h.dir = s.to_string();
            }
            5 => h.ipv6 = r.boolean("ipv6").map_err(e)?,
            _ => h.nodes = r.uint("nodes", MAX_NODES as u64).map_err(e)? as u16,
        }
        Ok(())
    })?;
    require(seen, &NAMES, 0b101_1111, start)?;
    Ok(h)
}

/// A node object (`{"name"}`; with `indexed`, `{"index","name"}`).
fn node_object(r: &mut Reader<'_>, indexed: bool) -> Result<(String, u16), Error> {
    const NAMES: [&str; 2] = ["name", "index"];
    let start = r.pos;
    let mut name = String::new();
    let mut index = 0u16;
    let mut buf = [0u8; MAX_NODE_NAME + 1];
    let seen = fields(r, "node", &NAMES[..1 + usize::from(indexed)], |i, r| {
        let at = r.pos;
        match i {
            0 => {
                let s = r.string(&mut buf, "name").map_err(e)?;
                if !is_node_name(s) {
                    return Err(invalid_at("name", at));
                }
                name = s.to_string();
            }
            _ => index = r.uint("index", MAX_NODES as u64 - 1).map_err(e)? as u16,
        }
        Ok(())
    })?;
    require(seen, &NAMES, if indexed { 0b11 } else { 0b1 }, start)?;
    Ok((name, index))
}

/// An array of service objects (a part's `services`, a delta's `set`), node indices below
/// `limit`.
fn services(
    mut r: Reader<'_>,
    what: &'static str,
    limit: usize,
) -> Result<Vec<ProxyService>, Error> {
    const NAMES: [&str; 6] = ["ns", "name", "unique", "ports", "here", "nodes"];
    r.array(what).map_err(e)?;
    let mut out = Vec::new();
    let mut first = true;
    let mut prev = Key::default();
    let mut idx = Box::new([0u16; MAX_NODES]);
    while r.next(&mut first).map_err(e)? {
        let item_at = r.pos;
        let mut key = Key::default();
        let mut svc = ProxyService {
            ns: String::new(),
            name: String::new(),
            unique: false,
            ports: Vec::new(),
            here: false,
            nodes: Vec::new(),
        };
        let seen = fields(&mut r, what, &NAMES, |i, r| {
            let at = r.pos;
            match i {
                0 => key.ns = label_field(r, "ns")?,
                1 => key.name = label_field(r, "name")?,
                2 => svc.unique = r.boolean("unique").map_err(e)?,
                4 => svc.here = r.boolean("here").map_err(e)?,
                3 => {
                    r.array("ports").map_err(e)?;
                    let mut first = true;
                    while r.next(&mut first).map_err(e)? {
                        let at = r.pos;
                        let mut buf = [0u8; 40];
                        let s = r.string(&mut buf, "ports").map_err(e)?;
                        let p = ProxyPort::parse(s).ok_or(invalid_at("ports", at))?;
                        if svc.ports.len() >= MAX_PORTS {
                            return Err(err(ErrorKind::TooMany("ports"), at));
                        }
                        if svc.ports.iter().any(|q| q.same_owner(&p)) {
                            return Err(invalid_at("ports", at));
                        }
                        svc.ports.push(p);
                    }
                }
                _ => {
                    let n = indices(r, &mut idx, "nodes", limit)?;
                    if n > MAX_PROXY_LINKS {
                        return Err(err(ErrorKind::TooMany("nodes"), at));
                    }
                    svc.nodes = idx[..n].to_vec();
                }
            }
            Ok(())
        })?;
        require(seen, &NAMES, 0b11, item_at)?;
        key.set = true;
        key.after(&mut prev, what, item_at)?;
        svc.ns = key.ns.as_str().to_string();
        svc.name = key.name.as_str().to_string();
        out.push(svc);
    }
    Ok(out)
}

pub mod follow;

#[cfg(test)]
mod tests;
