//! Payload v2 (`docs/payload-v2.md`, issue 11): the zone of a gateway as the wire carries it,
//! each node once, each service once with its ports and its hosts ranked for this gateway,
//! in messages of at most [`MAX_MESSAGE_BYTES`].
//!
//! Layout:
//! - this module: the limits, the id rules ([`is_label`], [`is_node_name`], ...) and the
//!   small value types shared by the decoder and the encoder ([`Str`], [`Port`], [`Node`],
//!   [`ZoneHeader`], [`ServiceRef`]);
//! - [`version`]: RFC 1982 serial arithmetic on `u64` versions, how the master picks them;
//! - [`digest`]: the order-independent digest of a zone's content;
//! - [`decode`]: the agent's decoder: no heap, no recursion, behind [`crate::json::check`],
//!   items handed to a [`decode::Visitor`];
//! - [`accept`]: the agent's acceptance rules as pure decisions, and [`accept::PartSet`], which
//!   follows the parts of a snapshot being assembled;
//! - `encode` (feature `alloc`): the master's owned types and encoder, splitting a snapshot
//!   into parts.
//! - `proxy` (feature `alloc`): the worker's proxy payload v2 on the same framing, versions,
//!   digest and acceptance rules: types, encoder, decoder, reference semantics.

use core::fmt;
use core::net::{Ipv4Addr, Ipv6Addr};

pub mod accept;
pub mod decode;
pub mod digest;
mod read;
pub mod version;

#[cfg(feature = "alloc")]
pub mod encode;
#[cfg(feature = "alloc")]
pub mod proxy;

pub use digest::Digest;
pub use version::Version;

/// The `schema` number of every v2 message.
pub const SCHEMA: u64 = 2;
/// Largest message, in bytes: 255 KiB, so that topic and packet header fit in 256 KiB.
pub const MAX_MESSAGE_BYTES: usize = 255 * 1024;
/// Deepest nesting of a message (document, array of items, item, array in an item).
pub const MAX_DEPTH: u16 = 4;
/// Most parts in one snapshot.
pub const MAX_PARTS: usize = 64;
/// Most node slots in a zone (and so most hosts of one service).
pub const MAX_NODES: usize = 4096;
/// Most ports of one service.
pub const MAX_PORTS: usize = 32;
/// Most services in a zone.
pub const MAX_SERVICES: usize = 16_384;
/// Longest node name (a Kubernetes node name is a DNS subdomain).
pub const MAX_NODE_NAME: usize = 253;
/// Longest gateway id.
pub const MAX_GATEWAY: usize = 64;
/// Longest zone suffix, in characters.
pub const MAX_SUFFIX: usize = 253;
/// Longest DNS label.
pub const MAX_LABEL: usize = 63;
/// Longest port name (IANA service name, as Kubernetes requires).
pub const MAX_PORT_NAME: usize = 15;
/// Largest TTL (RFC 2181 section 8).
pub const MAX_TTL: u32 = 2_147_483_647;
/// Size of the retained tail past which the master republishes the snapshot.
pub const TAIL_REFRESH_BYTES: usize = 64 * 1024;

/// The JSON door's limits for a v2 message.
pub const JSON_LIMITS: crate::json::Limits = crate::json::Limits {
    max_bytes: MAX_MESSAGE_BYTES,
    max_depth: MAX_DEPTH,
};

// ---------------------------------------------------------------------------------------
// Id rules

/// A DNS label as v2 names use them: 1..=63 of `[a-z0-9-]`, no `-` at either end.
pub fn is_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_LABEL
        && b.iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// A Kubernetes node name: 1..=253 of `[a-z0-9.-]`.
pub fn is_node_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NODE_NAME
        && s.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.')
}

/// A gateway id (or worker node id in topics): 1..=64 of `[A-Za-z0-9._-]`.
pub fn is_gateway_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_GATEWAY
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

/// A zone suffix: lower-case labels of `[a-z0-9_-]`, 1..=63 each, at most 253 characters in
/// all, no trailing dot.
pub fn is_suffix(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_SUFFIX
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= MAX_LABEL
                && l.bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'_')
        })
}

/// A port's SRV label: an IANA service name (1..=15 of `[a-z0-9-]`, a letter among them, no
/// `-` at either end, no `--`) or a port number `1..=65535` without a leading zero.
pub fn is_port_label(s: &str) -> bool {
    let b = s.as_bytes();
    if b.is_empty() || b.len() > MAX_PORT_NAME {
        return false;
    }
    if b.iter().all(u8::is_ascii_digit) {
        return b[0] != b'0' && b.len() <= 5 && s.parse::<u32>().is_ok_and(|n| n <= 65535);
    }
    is_label(s) && b.iter().any(u8::is_ascii_lowercase) && !s.contains("--")
}

// ---------------------------------------------------------------------------------------
// Value types

/// A short string held inline (no heap): at most `N` bytes, always valid UTF-8.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Str<const N: usize> {
    len: u8,
    buf: [u8; N],
}

impl<const N: usize> Str<N> {
    /// The empty string.
    pub const EMPTY: Self = Str {
        len: 0,
        buf: [0; N],
    };

    /// Copies `s`; `None` when it is longer than `N` (or 255) bytes.
    pub fn new(s: &str) -> Option<Self> {
        if s.len() > N || s.len() > 255 {
            return None;
        }
        let mut t = Self::EMPTY;
        t.buf[..s.len()].copy_from_slice(s.as_bytes());
        t.len = s.len() as u8;
        Some(t)
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(self.buf.get(..self.len as usize).unwrap_or(&[])).unwrap_or("")
    }
}

impl<const N: usize> Default for Str<N> {
    fn default() -> Self {
        Self::EMPTY
    }
}

impl<const N: usize> fmt::Debug for Str<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl<const N: usize> fmt::Display for Str<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The message kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// One part of a snapshot.
    Part,
    /// Changes from `base` to `version`.
    Delta,
    /// A snapshot of `version` is retained: re-read it unless held.
    Notice,
}

impl Kind {
    /// The JSON text.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Part => "part",
            Kind::Delta => "delta",
            Kind::Notice => "notice",
        }
    }
}

/// The gateway's address policy (issue 13, `docs/planning.md`): which addresses its zone
/// gives out, so that a dual-stack branch host is never sent to one node over IPv4 and to
/// another over IPv6. The topology file (`family = ...`) and payload v2 spell it the same.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// A and AAAA from the same node, the nearest usable.
    #[default]
    Dual,
    /// The nearest usable node with IPv4; AAAA is NODATA.
    Ipv4,
    /// The nearest usable node with IPv6; A is NODATA.
    Ipv6,
}

impl Family {
    /// The JSON text.
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Dual => "dual",
            Family::Ipv4 => "ipv4",
            Family::Ipv6 => "ipv6",
        }
    }
    /// Whether the zone gives out IPv4 addresses (A records).
    pub fn v4(self) -> bool {
        self != Family::Ipv6
    }
    /// Whether the zone gives out IPv6 addresses (AAAA records).
    pub fn v6(self) -> bool {
        self != Family::Ipv4
    }
    fn code(self) -> u8 {
        self as u8
    }
    /// The policy spelled `s` (`dual`, `ipv4` or `ipv6`).
    pub fn parse(s: &str) -> Option<Self> {
        [Family::Dual, Family::Ipv4, Family::Ipv6]
            .into_iter()
            .find(|f| f.as_str() == s)
    }
}

/// How near a node is to the gateway; slots go `Near`, then `Zone`, then `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tier {
    /// In the gateway's `near` list.
    Near,
    /// In the gateway's zone.
    Zone,
    /// Any other Ready worker.
    Other,
}

impl Tier {
    /// The JSON text.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Near => "near",
            Tier::Zone => "zone",
            Tier::Other => "other",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        [Tier::Near, Tier::Zone, Tier::Other]
            .into_iter()
            .find(|f| f.as_str() == s)
    }
}

/// The transport of an SRV set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Proto {
    /// `_tcp`
    Tcp,
    /// `_udp`
    Udp,
}

impl Proto {
    /// The label without the underscore.
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// One SRV set of a service: `_<label>._<proto>` answering `node_port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Port {
    /// The port's name, or its number for an unnamed port ([`is_port_label`]).
    pub label: Str<MAX_PORT_NAME>,
    /// The transport.
    pub proto: Proto,
    /// The NodePort, `1..=65535`.
    pub node_port: u16,
}

impl Port {
    /// Parses `_<label>._<proto>:<node_port>`.
    pub fn parse(s: &str) -> Option<Port> {
        let (owner, port) = s.split_once(':')?;
        let rest = owner.strip_prefix('_')?;
        let (label, proto) = rest.split_once("._")?;
        let proto = match proto {
            "tcp" => Proto::Tcp,
            "udp" => Proto::Udp,
            _ => return None,
        };
        if !is_port_label(label)
            || port.is_empty()
            || port.len() > 5
            || port.starts_with('0')
            || !port.bytes().all(|c| c.is_ascii_digit())
        {
            return None;
        }
        let node_port: u32 = port.parse().ok()?;
        Some(Port {
            label: Str::new(label)?,
            proto,
            node_port: u16::try_from(node_port).ok().filter(|&p| p > 0)?,
        })
    }

    /// Checks the rules [`Port::parse`] checks (for ports built by hand).
    pub fn is_valid(&self) -> bool {
        is_port_label(self.label.as_str()) && self.node_port > 0
    }

    /// Writes `_<label>._<proto>` (the sort key, the SRV owner's first two labels) into `out`;
    /// returns its length.
    pub fn owner(&self, out: &mut [u8; 24]) -> usize {
        let l = self.label.as_str().as_bytes();
        let p = self.proto.as_str().as_bytes();
        out[0] = b'_';
        out[1..1 + l.len()].copy_from_slice(l);
        out[1 + l.len()..3 + l.len()].copy_from_slice(b"._");
        out[3 + l.len()..3 + l.len() + p.len()].copy_from_slice(p);
        3 + l.len() + p.len()
    }
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "_{}._{}:{}",
            self.label,
            self.proto.as_str(),
            self.node_port
        )
    }
}

/// The zone's settings, repeated in every part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZoneHeader {
    /// The zone's origin ([`is_suffix`]).
    pub suffix: Str<MAX_SUFFIX>,
    /// The nearest-worker label ([`is_label`]).
    pub local: Str<MAX_LABEL>,
    /// TTL of node and `local` records, SOA, NS and negative answers.
    pub ttl: u32,
    /// TTL of service records.
    pub service_ttl: u32,
    /// The address policy.
    pub family: Family,
    /// Number of node slots.
    pub nodes: u16,
    /// The TCP port the gateway probes on each worker to see whether its branch reaches it
    /// (the workers' nginx port, issue 14); `None`: no default probe port.
    pub probe: Option<u16>,
}

impl ZoneHeader {
    /// Checks every field against its rule; the error names the field.
    pub fn check(&self) -> Result<(), &'static str> {
        if !is_suffix(self.suffix.as_str()) {
            return Err("suffix");
        }
        if !is_label(self.local.as_str()) {
            return Err("local");
        }
        if self.ttl > MAX_TTL {
            return Err("ttl");
        }
        if self.service_ttl > MAX_TTL {
            return Err("service_ttl");
        }
        if self.nodes as usize > MAX_NODES {
            return Err("nodes");
        }
        if self.probe == Some(0) {
            return Err("probe");
        }
        Ok(())
    }
}

/// A node in a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Node {
    /// The Kubernetes node name ([`is_node_name`]).
    pub name: Str<MAX_NODE_NAME>,
    /// Its nearness tier for this gateway.
    pub tier: Tier,
    /// IPv4 address.
    pub v4: Option<Ipv4Addr>,
    /// IPv6 address.
    pub v6: Option<Ipv6Addr>,
}

impl Node {
    /// Checks the node's rules; the error names the field.
    pub fn check(&self) -> Result<(), &'static str> {
        if !is_node_name(self.name.as_str()) {
            return Err("name");
        }
        if self.v4.is_none() && self.v6.is_none() {
            return Err("v4");
        }
        Ok(())
    }

    /// Whether the node gets a `<name>.<suffix>` record and may be an SRV target under
    /// `header`: its name is a DNS label other than the local label, and `<name>.<suffix>`
    /// fits in a DNS name (255 octets on the wire).
    pub fn is_named(&self, header: &ZoneHeader) -> bool {
        let name = self.name.as_str();
        is_label(name)
            && name != header.local.as_str()
            && name.len() + header.suffix.as_str().len() + 3 <= 255
    }
}

/// A service as the decoder hands it out and the digest reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceRef<'a> {
    /// Namespace ([`is_label`]).
    pub ns: &'a str,
    /// Name ([`is_label`]).
    pub name: &'a str,
    /// `<name>.<suffix>` answers too.
    pub short: bool,
    /// SRV sets, strictly ascending by [`Port::owner`].
    pub ports: &'a [Port],
    /// Node slots holding a ready endpoint, strictly ascending (= nearest first).
    pub hosts: &'a [u16],
}

impl ServiceRef<'_> {
    /// Checks the service's own rules (not that hosts are below the slot count); the error
    /// names the field.
    pub fn check(&self) -> Result<(), &'static str> {
        if !is_label(self.ns) {
            return Err("ns");
        }
        if !is_label(self.name) {
            return Err("name");
        }
        if self.ports.len() > MAX_PORTS || !self.ports.iter().all(Port::is_valid) {
            return Err("ports");
        }
        let (mut a, mut b) = ([0u8; 24], [0u8; 24]);
        for w in self.ports.windows(2) {
            let (la, lb) = (w[0].owner(&mut a), w[1].owner(&mut b));
            if a[..la] >= b[..lb] {
                return Err("ports");
            }
        }
        if self.hosts.is_empty()
            || self.hosts.len() > MAX_NODES
            || !self.hosts.windows(2).all(|w| w[0] < w[1])
            || self.hosts.last().is_some_and(|&h| h as usize >= MAX_NODES)
        {
            return Err("hosts");
        }
        Ok(())
    }

    /// The sort key: (`ns`, `name`) bytewise.
    pub fn key(&self) -> (&str, &str) {
        (self.ns, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_rules() {
        // (text, label, node name, gateway id, suffix, port label)
        const CASES: &[(&str, [bool; 5])] = &[
            ("web", [true, true, true, true, true]),
            ("a-b", [true, true, true, true, true]),
            ("-a", [false, true, true, true, false]),
            ("a-", [false, true, true, true, false]),
            ("a--b", [true, true, true, true, false]),
            ("A", [false, false, true, false, false]),
            ("a.b", [false, true, true, true, false]),
            ("a_b", [false, false, true, true, false]),
            ("", [false, false, false, false, false]),
            ("80", [true, true, true, true, true]),
            ("080", [true, true, true, true, false]),
            ("65536", [true, true, true, true, false]),
            ("65535", [true, true, true, true, true]),
            ("0", [true, true, true, true, false]),
            ("abcdefghijklmnop", [true, true, true, true, false]),
            ("a b", [false, false, false, false, false]),
            ("a..b", [false, true, true, false, false]),
            ("k8s.internal.", [false, true, true, false, false]),
        ];
        for (s, want) in CASES {
            let got = [
                is_label(s),
                is_node_name(s),
                is_gateway_id(s),
                is_suffix(s),
                is_port_label(s),
            ];
            assert_eq!(got, *want, "{s:?}");
        }
        assert!(is_label(&"a".repeat(63)) && !is_label(&"a".repeat(64)));
        assert!(is_node_name(&"a".repeat(253)) && !is_node_name(&"a".repeat(254)));
        assert!(is_gateway_id(&"a".repeat(64)) && !is_gateway_id(&"a".repeat(65)));
    }

    #[test]
    fn a_node_name_too_long_with_the_suffix_is_not_named() {
        let header = |suffix: &str| ZoneHeader {
            suffix: Str::new(suffix).unwrap(),
            local: Str::new("local").unwrap(),
            ttl: 30,
            service_ttl: 10,
            family: Family::Dual,
            nodes: 1,
            probe: None,
        };
        let node = |name: &str| Node {
            name: Str::new(name).unwrap(),
            tier: Tier::Other,
            v4: Some(Ipv4Addr::new(10, 0, 0, 1)),
            v6: None,
        };
        // 63 + 1 + suffix + 2 octets: a suffix of 189 characters is the longest that fits.
        let long = "a".repeat(63);
        let fits = ["b".repeat(63), "c".repeat(63), "d".repeat(61)].join(".");
        let over = ["b".repeat(63), "c".repeat(63), "d".repeat(62)].join(".");
        assert_eq!(fits.len(), 189);
        assert!(node(&long).is_named(&header(&fits)));
        assert!(!node(&long).is_named(&header(&over)));
        assert!(node("worker1").is_named(&header(&over)));
        assert!(!node("local").is_named(&header("k8s.internal")));
        assert!(!node("a.b").is_named(&header("k8s.internal")));
    }

    #[test]
    fn ports_parse_and_print() {
        const CASES: &[(&str, bool)] = &[
            ("_http._tcp:30080", true),
            ("_7._udp:30007", true),
            ("_dns-tcp._tcp:1", true),
            ("_http._sctp:30080", false),
            ("_http._tcp:0", false),
            ("_http._tcp:65536", false),
            ("_http._tcp:030080", false),
            ("_http._tcp:", false),
            ("_http._tcp", false),
            ("http._tcp:80", false),
            ("_HTTP._tcp:80", false),
            ("_0._tcp:80", false),
            ("_._tcp:80", false),
            ("_http._tcp:+80", false),
            ("_http._tcp:80:1", false),
        ];
        for (s, ok) in CASES {
            let p = Port::parse(s);
            assert_eq!(p.is_some(), *ok, "{s:?}");
            if let Some(p) = p {
                assert_eq!(std::format!("{p}"), *s);
            }
        }
    }
}
