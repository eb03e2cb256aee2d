//! The prober on virtual time: a simulated network of workers whose paths can be cut or
//! lose packets, with seeded randomness (deterministic).

use super::*;
use sdwan_agent_core::NO_BASE;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

const RTT: Duration = Duration::from_millis(20);

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, (i / 250) as u8, (i % 250) as u8 + 1], 80))
}

/// The network: per worker, the path is cut from `cut` on (until `restore`); every connect
/// fails with probability `loss`.
struct Net {
    workers: usize,
    cut: Option<(usize, Duration, Duration)>,
    loss: f64,
    rng: u64,
}

impl Net {
    fn unit(&mut self) -> f64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng >> 11) as f64 / (1u64 << 53) as f64
    }

    /// When the result of a connect to worker `w` started at `t` arrives, and whether it
    /// connected.
    fn connect(&mut self, w: usize, t: Duration, timeout: Duration) -> (Duration, bool) {
        let cut = self
            .cut
            .is_some_and(|(c, from, to)| c == w && t + RTT > from && t < to);
        if cut || self.unit() < self.loss {
            (t + timeout, false)
        } else {
            (t + RTT, true)
        }
    }
}

/// Runs the prober against `net` until `end`; returns each Down/Up with its time and the
/// most connects seen in flight.
fn simulate(net: &mut Net, seed: u64, end: Duration) -> (Vec<(Duration, Output)>, usize) {
    let targets = (0..net.workers).map(addr).collect();
    let (events, peak, _) = simulate_on(net, seed, end, targets);
    (events, peak)
}

/// [`simulate`] on given targets (`net`'s workers are their indexes); also returns the
/// prober as it is at `end`.
fn simulate_on(
    net: &mut Net,
    seed: u64,
    end: Duration,
    targets: Vec<SocketAddr>,
) -> (Vec<(Duration, Output)>, usize, Prober) {
    let mut p = Prober::new(Params::default(), seed);
    let timeout = p.params().timeout;
    let mut out = Vec::new();
    let mut events = Vec::new();
    let mut pending: BinaryHeap<Reverse<(Duration, usize, bool)>> = BinaryHeap::new();
    let mut peak = 0;
    let addrs = targets.clone();
    p.handle(
        Duration::ZERO,
        Input::Zone(targets.into_iter().map(Some).collect()),
        &mut out,
    );
    let mut now = Duration::ZERO;
    loop {
        for o in out.drain(..) {
            match o {
                Output::Start { slot, .. } => {
                    let (at, ok) = net.connect(usize::from(slot), now, timeout);
                    pending.push(Reverse((at, usize::from(slot), ok)));
                }
                other => events.push((now, other)),
            }
        }
        peak = peak.max(p.in_flight());
        let next_result = pending.peek().map(|r| r.0 .0);
        let next = match (next_result, p.next_due()) {
            (Some(a), Some(b)) if p.in_flight() < p.params().max_in_flight => a.min(b),
            (Some(a), _) => a,
            (None, b) => b.expect("something to probe"),
        };
        if next > end {
            break;
        }
        now = next.max(now);
        if next_result == Some(now) {
            let Reverse((_, w, ok)) = pending.pop().unwrap();
            let rtt = ok.then_some(RTT);
            p.handle(
                now,
                Input::Result {
                    target: addrs[w],
                    rtt,
                },
                &mut out,
            );
        } else {
            p.handle(now, Input::Tick, &mut out);
        }
    }
    (events, peak, p)
}

/// A cut at any phase of the probe schedule is seen within 3 s (worst case over 100
/// phases spread over two probe intervals), and the worker is back within 2 s of the path
/// coming back.
#[test]
fn a_cut_path_is_marked_down_within_3_s_at_any_phase() {
    let mut worst = Duration::ZERO;
    let mut worst_up = Duration::ZERO;
    for phase in 0..100u32 {
        let from = Duration::from_secs(20) + Duration::from_millis(20) * phase;
        let to = from + Duration::from_secs(10);
        let mut net = Net {
            workers: 20,
            cut: Some((7, from, to)),
            loss: 0.0,
            rng: 9,
        };
        let (events, _) = simulate(&mut net, u64::from(phase) + 1, to + Duration::from_secs(5));
        let down: Vec<_> = events.iter().filter(|e| e.1 == Output::Down(7)).collect();
        assert_eq!(down.len(), 1, "phase {phase}: {events:?}");
        assert!(events
            .iter()
            .all(|e| matches!(e.1, Output::Down(7) | Output::Up(7))));
        worst = worst.max(down[0].0 - from);
        let up = events
            .iter()
            .find(|e| e.1 == Output::Up(7))
            .expect("back up");
        worst_up = worst_up.max(up.0 - to);
    }
    println!("worst failover {worst:?}, worst return {worst_up:?}");
    assert!(worst <= Duration::from_secs(3), "failover took {worst:?}");
    assert!(
        worst_up <= Duration::from_secs(2),
        "return took {worst_up:?}"
    );
}

/// 500 workers, one of them blackholed: at most 32 connects in flight, and the cut is still
/// seen within 3 s.
#[test]
fn five_hundred_workers_stay_within_the_socket_bound() {
    let from = Duration::from_millis(10_333);
    let mut net = Net {
        workers: 500,
        cut: Some((321, from, Duration::from_secs(3600))),
        loss: 0.0,
        rng: 5,
    };
    let (events, peak) = simulate(&mut net, 77, Duration::from_secs(16));
    assert!(peak <= 32, "{peak} connects in flight");
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].1, Output::Down(321));
    assert!(
        events[0].0 - from <= Duration::from_secs(3),
        "{:?}",
        events[0].0 - from
    );
}

/// At 10 % packet loss a connect fails with p = 0.19 (SYN or SYN-ACK lost): 1,000 simulated
/// minutes of 10 workers give no down transition.
#[test]
fn ten_percent_packet_loss_for_1000_minutes_does_not_flap() {
    let mut net = Net {
        workers: 10,
        cut: None,
        loss: 1.0 - 0.9 * 0.9,
        rng: 0x5eed,
    };
    let (events, _) = simulate(&mut net, 3, Duration::from_secs(1000 * 60));
    assert!(
        events.is_empty(),
        "{} flaps: {:?}",
        events.len(),
        &events[..events.len().min(5)]
    );
}

/// Probes of many workers are spread evenly over the interval, not sent in a burst.
#[test]
fn first_probes_are_spread_over_the_interval() {
    let mut p = Prober::new(Params::default(), 1);
    let mut out = Vec::new();
    let targets = (0..500).map(|i| Some(addr(i))).collect();
    p.handle(Duration::ZERO, Input::Zone(targets), &mut out);
    assert_eq!(out.len(), 1, "only slot 0 is due at once");
    out.clear();
    // Slots 1..=30 are due by 60 ms (2 ms apart), fewer than the 32 connects allowed.
    p.handle(Duration::from_millis(60), Input::Tick, &mut out);
    assert!(
        (29..=31).contains(&out.len()),
        "{} started in the first 60 ms",
        out.len()
    );
}

/// A new zone that renumbers the slots keeps each worker's state with its address; a new
/// worker starts up.
#[test]
fn zone_change_keeps_state_by_address() {
    let mut p = Prober::new(Params::default(), 1);
    let mut out = Vec::new();
    p.handle(
        Duration::ZERO,
        Input::Zone(vec![Some(addr(0)), Some(addr(1))]),
        &mut out,
    );
    for k in 0..10 {
        p.handle(
            Duration::from_millis(k),
            Input::Result {
                target: addr(1),
                rtt: None,
            },
            &mut out,
        );
    }
    assert!(out.contains(&Output::Down(1)));
    assert_eq!(p.down_words()[0], 0b10);
    p.handle(
        Duration::from_secs(1),
        Input::Zone(vec![Some(addr(1)), None, Some(addr(2))]),
        &mut out,
    );
    assert!(p.is_down(0) && !p.is_down(1) && !p.is_down(2));
    assert_eq!(p.down_words()[0], 0b1);
    let names = ["w1".to_string(), String::new(), "w2".to_string()];
    let r = p.reach(&names);
    assert_eq!((r.workers, r.down, r.more), (2, vec!["w1".to_string()], 0));
}

/// The status summary: RTT percentiles over the up workers, names of the down ones capped
/// at 32 with the rest counted.
#[test]
fn reach_summary_caps_the_names() {
    let mut p = Prober::new(Params::default(), 1);
    let mut out = Vec::new();
    let n = 40;
    p.handle(
        Duration::ZERO,
        Input::Zone((0..n + 3).map(|i| Some(addr(i))).collect()),
        &mut out,
    );
    for w in 0..n {
        for _ in 0..10 {
            p.handle(
                Duration::ZERO,
                Input::Result {
                    target: addr(w),
                    rtt: None,
                },
                &mut out,
            );
        }
    }
    for (w, ms) in [(n, 3), (n + 1, 7), (n + 2, 12)] {
        let rtt = Some(Duration::from_millis(ms));
        p.handle(
            Duration::ZERO,
            Input::Result {
                target: addr(w),
                rtt,
            },
            &mut out,
        );
    }
    let names: Vec<String> = (0..n + 3).map(|i| format!("w{i:02}")).collect();
    let r = p.reach(&names);
    assert_eq!(r.workers, 43);
    assert_eq!(r.down.len(), 32);
    assert_eq!(r.more, 8);
    assert_eq!(r.down[0], "w00");
    assert_eq!(r.rtt_ms, Some([7, 7, 12]));
}

/// A zone of two workers (127.0.0.1, 127.0.0.2) both hosting `a` (NodePort 30001), `b`
/// (30002, after a UDP port) and `u` (UDP only).
fn two_service_zone() -> Box<crate::store::OwnedZoneV2> {
    use sdwan_contract::v2::encode::Service;
    use sdwan_contract::v2::{Node, Port, Str, Tier};
    let node = |name: &str, last: u8| {
        Some(Node {
            name: Str::new(name).unwrap(),
            tier: Tier::Near,
            v4: Some([127, 0, 0, last].into()),
            v6: None,
        })
    };
    let service = |name: &str, ports: &[&str]| Service {
        ns: "default".into(),
        name: name.into(),
        short: true,
        ports: ports.iter().map(|p| Port::parse(p).unwrap()).collect(),
        hosts: vec![0, 1],
    };
    load(
        Family::Dual,
        vec![node("w1", 1), node("w2", 2)],
        vec![
            service("a", &["_http._tcp:30001"]),
            service("b", &["_dns._udp:30053", "_http._tcp:30002"]),
            service("u", &["_dns._udp:30054"]),
        ],
    )
}

/// Gateway gw-a's zone (version 1, suffix k8s.internal) of these nodes and services,
/// through the agent's door.
fn load(
    family: Family,
    nodes: Vec<Option<sdwan_contract::v2::Node>>,
    services: Vec<sdwan_contract::v2::encode::Service>,
) -> Box<crate::store::OwnedZoneV2> {
    use sdwan_agent_core::v2zone::{PartStatus, Staging, Work};
    use sdwan_contract::v2::{Str, Version, ZoneHeader};
    let snap = sdwan_contract::v2::encode::Snapshot {
        gateway: "gw-a".into(),
        version: Version(1),
        zone: ZoneHeader {
            suffix: Str::new("k8s.internal").unwrap(),
            local: Str::new("local").unwrap(),
            ttl: 30,
            service_ttl: 10,
            family,
            nodes: nodes.len() as u16,
            probe: None,
        },
        nodes,
        services,
    };
    let mut staging = Box::new(Staging::new(crate::gateway::heap()));
    let mut work = Box::new(Work::new());
    let mut done = false;
    for p in snap.encode().unwrap() {
        done = staging.part("gw-a", None, &p, &mut work).unwrap() == PartStatus::Complete;
    }
    assert!(done);
    let mut zone = Box::new(crate::store::OwnedZoneV2::new(Box::default()));
    assert!(staging.swap_into(&mut zone));
    zone
}

/// Per-service targets: each service's first TCP port on each candidate, each (address,
/// port) once; a UDP-only service is not probed; the cap leaves whole services out.
#[test]
fn service_targets_take_the_first_tcp_port_of_each_service() {
    let z = two_service_zone();
    let st = service_targets(&z, MAX_PAIRS);
    let t = |last: u8, port: u16| Some(SocketAddr::from(([127, 0, 0, last], port)));
    assert_eq!(
        st.targets,
        [t(1, 30001), t(2, 30001), t(1, 30002), t(2, 30002)]
    );
    assert_eq!(st.bases, [0, 2, NO_BASE]);
    assert_eq!(st.pair_target, [0, 1, 2, 3]);
    assert_eq!((st.node.as_slice(), st.over_cap), (&[0, 1, 0, 1][..], 0));
    assert_eq!(st.labels[2], "w1 port 30002 (default/b)");
    let capped = service_targets(&z, 3);
    assert_eq!(
        (capped.bases.as_slice(), capped.over_cap),
        (&[0, NO_BASE, NO_BASE][..], 1)
    );
    assert_eq!(capped.targets.len(), 2);
}

/// A zone of 5,000 services on 3 of 20 workers each (15,000 pairs) stays within the bound:
/// at most 512 pairs and targets, whole services in order, the rest counted.
#[test]
fn five_thousand_services_stay_within_the_pair_bound() {
    use sdwan_contract::v2::encode::Service;
    use sdwan_contract::v2::{Node, Port, Str, Tier};
    let nodes = (0..20u8)
        .map(|i| {
            Some(Node {
                name: Str::new(&format!("w{i}")).unwrap(),
                tier: Tier::Other,
                v4: Some([127, 0, 1, i + 1].into()),
                v6: None,
            })
        })
        .collect();
    let services = (0..5000u16)
        .map(|i| Service {
            ns: "default".into(),
            name: format!("s{i:04}"),
            short: false,
            ports: vec![Port::parse(&format!("_http._tcp:{}", 20000 + i)).unwrap()],
            hosts: {
                // Hosts in slot order (the plan's order).
                let mut h: Vec<u16> = (0..3).map(|k| (i + k) % 20).collect();
                h.sort_unstable();
                h
            },
        })
        .collect();
    let z = load(Family::Ipv4, nodes, services);
    let st = service_targets(&z, MAX_PAIRS);
    assert_eq!(st.pair_target.len(), 510);
    assert_eq!(st.targets.len(), 510);
    assert_eq!(st.bases.len(), 5000);
    assert_eq!(st.bases[169], 507);
    assert!(st.bases[170..].iter().all(|&b| b == NO_BASE));
    assert_eq!(st.over_cap, 5000 - 170);
}

/// Issue 14, per-service probing: service `a`'s port stops answering on w1 while w1's
/// port of `b` answers: `a`'s pair on w1 is down within 3 s (hysteresis as for workers),
/// `b` keeps w1, w1 as a whole is not down; `a` returns within 2 s of the port answering.
#[test]
fn a_closed_service_port_moves_only_that_service() {
    let z = two_service_zone();
    let st = service_targets(&z, MAX_PAIRS);
    let targets: Vec<SocketAddr> = st.targets.iter().flatten().copied().collect();
    let from = Duration::from_secs(20);
    let to = Duration::from_secs(30);
    let mut net = Net {
        workers: targets.len(),
        cut: Some((0, from, to)),
        loss: 0.0,
        rng: 5,
    };
    let (events, _, p) = simulate_on(&mut net, 3, from + Duration::from_secs(5), targets.clone());
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].1, Output::Down(0));
    assert!(events[0].0 - from <= Duration::from_secs(3), "{events:?}");
    let view = BranchView::new(false, false, true);
    let (l, sl) = (layout(&z), service_layout(&z));
    view.publish_services(l, sl, &p, &st, true);
    let h = view.health(l, sl);
    let (a, b) = (h.for_service(0), h.for_service(1));
    assert!(a.is_down_at(0, 0) && !a.is_down_at(1, 1));
    assert!(!b.is_down_at(0, 0) && !h.is_down(0));
    // A zone whose services changed: no per-service bits until the prober publishes.
    assert!(!view.health(l, sl ^ 1).for_service(0).is_down_at(0, 0));
    let r = p.reach(&st.names);
    assert_eq!((r.workers, r.down), (2, vec!["w1".to_string()]));
    // The same run on: the port answers again at `to`.
    let mut net = Net {
        workers: targets.len(),
        cut: Some((0, from, to)),
        loss: 0.0,
        rng: 5,
    };
    let (events, _, _) = simulate_on(&mut net, 3, to + Duration::from_secs(5), targets);
    let up = events
        .iter()
        .find(|e| e.1 == Output::Up(0))
        .expect("back up");
    assert!(up.0 - to <= Duration::from_secs(2), "{events:?}");
}

/// A worker none of whose probed ports answers is down as a whole (its `local` and
/// `<node>` names skip it too).
#[test]
fn a_worker_with_every_port_down_is_down() {
    let z = two_service_zone();
    let st = service_targets(&z, MAX_PAIRS);
    let mut p = Prober::new(Params::default(), 1);
    let mut out = Vec::new();
    p.handle(Duration::ZERO, Input::Zone(st.targets.clone()), &mut out);
    let fail = |p: &mut Prober, out: &mut Vec<Output>, target: SocketAddr| {
        for _ in 0..Params::default().down_after {
            p.handle(Duration::ZERO, Input::Result { target, rtt: None }, out);
        }
    };
    let view = BranchView::new(false, false, true);
    let (l, sl) = (layout(&z), service_layout(&z));
    fail(&mut p, &mut out, st.targets[0].unwrap());
    view.publish_services(l, sl, &p, &st, false);
    assert!(!view.health(l, sl).is_down(0));
    fail(&mut p, &mut out, st.targets[2].unwrap());
    view.publish_services(l, sl, &p, &st, false);
    let h = view.health(l, sl);
    assert!(h.is_down(0) && !h.is_down(1));
    assert!(h.for_service(1).is_down_at(0, 0));
}
