//! A synthetic gateway zone at issue 11's scale, seeded: 500 workers in 25 zones, 5,000
//! NodePort services in 60 namespaces, as one gateway sees them.

#![allow(dead_code)]

use std::net::{Ipv4Addr, Ipv6Addr};

use sdwan_contract::v2::encode::{Service, Snapshot};
use sdwan_contract::v2::{Family, Node, Port, Str, Tier, Version, ZoneHeader};
use sdwan_testsupport::Rng;

pub const WORKERS: usize = 500;
pub const ZONES: usize = 25;
pub const SERVICES: usize = 5000;
pub const NAMESPACES: usize = 60;

const WORDS: &[&str] = &[
    "api",
    "web",
    "cart",
    "payments",
    "auth",
    "search",
    "catalog",
    "orders",
    "billing",
    "gateway",
    "metrics",
    "worker",
    "cache",
    "db",
    "queue",
    "frontend",
    "backend",
    "inventory",
    "shipping",
    "notify",
    "reports",
    "ledger",
    "profile",
    "media",
];
const PORT_NAMES: &[&str] = &["http", "https", "grpc", "metrics", "admin", "ws"];

pub fn node(i: usize, tier: Tier, rng: &mut Rng) -> Node {
    let v6 = rng.chance(50);
    Node {
        name: Str::new(&format!("worker-{i:03}")).unwrap(),
        tier,
        v4: Some(Ipv4Addr::new(10, 20 + (i / 250) as u8, (i % 250) as u8, 10)),
        v6: v6.then(|| Ipv6Addr::new(0xfd00, 0x10, 0, 0, 0, 0, (i / 250) as u16, (i % 250) as u16)),
    }
}

/// Node slots in the nearness order of a gateway in zone 3 with two `near` workers.
pub fn nodes(rng: &mut Rng) -> Vec<Option<Node>> {
    let near = [17usize, 402];
    let zone_of = |i: usize| i % ZONES;
    let mut order: Vec<(Tier, usize)> = (0..WORKERS)
        .map(|i| {
            let t = if near.contains(&i) {
                Tier::Near
            } else if zone_of(i) == 3 {
                Tier::Zone
            } else {
                Tier::Other
            };
            (t, i)
        })
        .collect();
    order.sort();
    order
        .into_iter()
        .map(|(t, i)| Some(node(i, t, rng)))
        .collect()
}

pub fn hosts(rng: &mut Rng, slots: usize) -> Vec<u16> {
    let n = match rng.below(100) {
        0..=1 => slots,               // a DaemonSet on every worker
        2..=6 => 50 + rng.below(151), // large deployments
        7..=24 => 4 + rng.below(17),
        _ => 1 + rng.below(3),
    };
    let mut h: Vec<u16> = if n >= slots {
        (0..slots as u16).collect()
    } else {
        let mut set = std::collections::BTreeSet::new();
        while set.len() < n {
            set.insert(rng.below(slots) as u16);
        }
        set.into_iter().collect()
    };
    h.sort_unstable();
    h
}

pub fn ports(rng: &mut Rng) -> Vec<Port> {
    let n = 1 + usize::from(rng.chance(35));
    let mut v: Vec<Port> = Vec::new();
    while v.len() < n {
        let label = if rng.chance(15) {
            format!("{}", 1000 + rng.below(9000))
        } else {
            rng.pick(PORT_NAMES).to_string()
        };
        let p = Port::parse(&format!("_{label}._tcp:{}", 30000 + rng.below(2768))).unwrap();
        if !v.iter().any(|q| q.label == p.label) {
            v.push(p);
        }
    }
    let owner = |p: &Port| {
        let mut b = [0u8; 24];
        let n = p.owner(&mut b);
        b[..n].to_vec()
    };
    v.sort_by_key(owner);
    v
}

pub fn service(rng: &mut Rng, ns: String, name: String, slots: usize) -> Service {
    Service {
        short: rng.chance(70),
        ports: ports(rng),
        hosts: hosts(rng, slots),
        ns,
        name,
    }
}

/// The synthetic snapshot for `seed`.
pub fn snapshot(seed: u64) -> Snapshot {
    let mut rng = Rng::new(seed);
    let nodes = nodes(&mut rng);
    let slots = nodes.len();
    let mut keys = std::collections::BTreeSet::new();
    while keys.len() < SERVICES {
        let ns = format!("team-{:02}", rng.below(NAMESPACES));
        let name = format!("{}-{}-{}", rng.pick(WORDS), rng.pick(WORDS), rng.below(100));
        keys.insert((ns, name));
    }
    let services = keys
        .into_iter()
        .map(|(ns, name)| service(&mut rng, ns, name, slots))
        .collect();
    Snapshot {
        gateway: "gw-espoo-0042".into(),
        version: Version(1_764_694_800_123),
        zone: ZoneHeader {
            suffix: Str::new("k8s.internal").unwrap(),
            local: Str::new("local").unwrap(),
            ttl: 30,
            service_ttl: 10,
            family: Family::Dual,
            nodes: slots as u16,
            probe: None,
        },
        nodes,
        services,
    }
}
