//! The digest of a zone's content (`docs/payload-v2.md`, "Digest"): the wrapping sum of one
//! 64-bit hash per item (the header, each present node slot, each service), each hash
//! `fmix64(fnv1a64(canonical bytes))`. A sum does not depend on the order items come in or
//! how they were split into parts, and it is updated per delta item by subtracting the old
//! item's hash and adding the new one: the agent keeps it without a heap.

use core::fmt;

use super::{Node, ServiceRef, ZoneHeader};

/// The digest of a zone's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Digest(pub u64);

impl Digest {
    /// The digest of nothing.
    pub const ZERO: Digest = Digest(0);

    /// Adds an item's hash.
    #[must_use]
    pub fn with(self, item: u64) -> Digest {
        Digest(self.0.wrapping_add(item))
    }

    /// Removes an item's hash (added before).
    #[must_use]
    pub fn without(self, item: u64) -> Digest {
        Digest(self.0.wrapping_sub(item))
    }

    /// The 16 lower-case hex digits of the JSON form.
    pub fn to_hex(self) -> [u8; 16] {
        let mut out = [0u8; 16];
        for (i, o) in out.iter_mut().enumerate() {
            let nib = (self.0 >> (60 - 4 * i)) & 0xf;
            *o = b"0123456789abcdef"[nib as usize];
        }
        out
    }

    /// Parses exactly 16 lower-case hex digits.
    pub fn parse_hex(s: &str) -> Option<Digest> {
        if s.len() != 16 {
            return None;
        }
        let mut v = 0u64;
        for c in s.bytes() {
            let d = match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                _ => return None,
            };
            v = v << 4 | u64::from(d);
        }
        Some(Digest(v))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// FNV-1a 64 over the canonical bytes, written field by field.
pub(super) struct Hasher(u64);

impl Hasher {
    pub(super) fn new(tag: u8) -> Hasher {
        let mut h = Hasher(0xcbf2_9ce4_8422_2325);
        h.bytes(&[tag]);
        h
    }
    pub(super) fn bytes(&mut self, b: &[u8]) {
        for &c in b {
            self.0 ^= u64::from(c);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
    /// One length byte, then the bytes (every string of the schema is below 256 bytes).
    pub(super) fn str(&mut self, s: &str) {
        self.bytes(&[s.len().min(255) as u8]);
        self.bytes(s.as_bytes());
    }
    pub(super) fn finish(self) -> u64 {
        fmix64(self.0)
    }
}

/// MurmurHash3's 64-bit finalizer.
fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

/// The hash of the header item.
pub fn header_hash(gateway: &str, h: &ZoneHeader) -> u64 {
    let mut x = Hasher::new(b'Z');
    x.str(gateway);
    x.str(h.suffix.as_str());
    x.str(h.local.as_str());
    x.bytes(&h.ttl.to_be_bytes());
    x.bytes(&h.service_ttl.to_be_bytes());
    x.bytes(&[h.family.code()]);
    x.bytes(&h.nodes.to_be_bytes());
    // Only when present, so that digests of zones without it are those of before.
    if let Some(p) = h.probe {
        x.bytes(&p.to_be_bytes());
    }
    x.finish()
}

/// The hash of the node in slot `index`.
pub fn node_hash(index: u16, n: &Node) -> u64 {
    let mut x = Hasher::new(b'N');
    x.bytes(&index.to_be_bytes());
    x.str(n.name.as_str());
    x.bytes(&[n.tier as u8]);
    x.bytes(&[u8::from(n.v4.is_some()) | u8::from(n.v6.is_some()) << 1]);
    if let Some(a) = n.v4 {
        x.bytes(&a.octets());
    }
    if let Some(a) = n.v6 {
        x.bytes(&a.octets());
    }
    x.finish()
}

/// The hash of a service.
pub fn service_hash(s: &ServiceRef<'_>) -> u64 {
    let mut x = Hasher::new(b'S');
    x.str(s.ns);
    x.str(s.name);
    x.bytes(&[u8::from(s.short), s.ports.len().min(255) as u8]);
    for p in s.ports {
        x.str(p.label.as_str());
        x.bytes(&[p.proto as u8]);
        x.bytes(&p.node_port.to_be_bytes());
    }
    x.bytes(&(s.hosts.len().min(u16::MAX as usize) as u16).to_be_bytes());
    for h in s.hosts {
        x.bytes(&h.to_be_bytes());
    }
    x.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v2::{Family, Port, Str, Tier};
    use core::net::{Ipv4Addr, Ipv6Addr};

    fn header() -> ZoneHeader {
        ZoneHeader {
            suffix: Str::new("k8s.internal").unwrap(),
            local: Str::new("local").unwrap(),
            ttl: 30,
            service_ttl: 10,
            family: Family::Dual,
            nodes: 3,
            probe: None,
        }
    }

    fn node() -> Node {
        Node {
            name: Str::new("worker-2").unwrap(),
            tier: Tier::Near,
            v4: Some(Ipv4Addr::new(192, 168, 200, 2)),
            v6: Some("fd00::2".parse::<Ipv6Addr>().unwrap()),
        }
    }

    fn port() -> [Port; 1] {
        [Port::parse("_http._tcp:30080").unwrap()]
    }

    fn service(ports: &[Port]) -> ServiceRef<'_> {
        ServiceRef {
            ns: "default",
            name: "hello-world",
            short: true,
            ports,
            hosts: &[0, 2],
        }
    }

    /// Test vectors, computed from the written rules by an independent implementation
    /// (Python, in the commit that added them): if one of these changes, master and agents
    /// of different builds disagree on every zone.
    #[test]
    fn vectors() {
        assert_eq!(Hasher::new(b'a').0, 0xaf63_dc4c_8601_ec8c); // FNV-1a 64 of "a"
        assert_eq!(fmix64(0), 0);
        assert_eq!(header_hash("gw-espoo", &header()), 0x7dae_7221_7399_6a10);
        assert_eq!(node_hash(0, &node()), 0x9103_8a17_3d2f_c63c);
        assert_eq!(service_hash(&service(&port())), 0xe1e3_8192_064d_51c8);
    }

    #[test]
    fn sum_is_order_independent_and_removable() {
        let (a, b, c) = (
            header_hash("g", &header()),
            node_hash(0, &node()),
            service_hash(&service(&port())),
        );
        let d1 = Digest::ZERO.with(a).with(b).with(c);
        let d2 = Digest::ZERO.with(c).with(a).with(b);
        assert_eq!(d1, d2);
        assert_eq!(d1.without(b).without(c), Digest::ZERO.with(a));
        // The same node in another slot is another item.
        assert_ne!(node_hash(0, &node()), node_hash(1, &node()));
    }

    #[test]
    fn every_field_counts() {
        let p = port();
        let base = service_hash(&service(&p));
        let p = port();
        let mut s = service(&p);
        s.short = false;
        assert_ne!(service_hash(&s), base);
        let p = port();
        let mut s = service(&p);
        s.hosts = &[0, 1];
        assert_ne!(service_hash(&s), base);
        let p = port();
        let mut s = service(&p);
        s.name = "hello-worl";
        s.ns = "ddefault";
        assert_ne!(service_hash(&s), base, "length prefixes keep fields apart");
        let mut h = header();
        h.family = Family::Ipv4;
        assert_ne!(header_hash("g", &h), header_hash("g", &header()));
        let mut h = header();
        h.probe = Some(80);
        assert_ne!(header_hash("g", &h), header_hash("g", &header()));
        let mut n = node();
        n.v6 = None;
        assert_ne!(node_hash(0, &n), node_hash(0, &node()));
    }

    #[test]
    fn hex_round_trips() {
        for v in [0, 1, 0x0123_4567_89ab_cdef, u64::MAX] {
            let h = Digest(v).to_hex();
            let s = core::str::from_utf8(&h).unwrap();
            assert_eq!(s, std::format!("{}", Digest(v)));
            assert_eq!(Digest::parse_hex(s), Some(Digest(v)));
        }
        for bad in [
            "",
            "0123456789ABCDEF",
            "0123456789abcde",
            "0123456789abcdefa",
            "g123456789abcdef",
        ] {
            assert_eq!(Digest::parse_hex(bad), None, "{bad:?}");
        }
    }
}
