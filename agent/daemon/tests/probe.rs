//! Issue 14, branch autonomy, the gateway agent's side, with real parts: a real agent
//! process fed by a real mosquitto (TLS, the design's ACL), workers on loopback addresses
//! (127.0.0.2..5) whose probe port is a listener the test opens and closes (a closed port on
//! loopback refuses at once; a blackholed path, which costs each probe its whole timeout,
//! is the namespace testbed's), answers read with dig and kdig, the status's `reach` read
//! from the broker.

mod mqtt_common;

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use mqtt_common::*;
use sdwan_contract::v2::encode::{Service, Snapshot};
use sdwan_contract::v2::{Family, Node, Port, Str, Tier, Version, ZoneHeader};
use sdwan_testsupport::dig::{dig, kdig, DigAnswer};
use sdwan_testsupport::mosquitto::Mosquitto;
use sdwan_testsupport::{free_port, wait_for, ChildGuard, TempDir};

/// The workers: (name, tier, address).
const WORKERS: [(&str, Tier, [u8; 4]); 4] = [
    ("w1", Tier::Near, [127, 0, 0, 2]),
    ("w2", Tier::Zone, [127, 0, 0, 3]),
    ("w3", Tier::Zone, [127, 0, 0, 4]),
    ("w4", Tier::Other, [127, 0, 0, 5]),
];

const WEB: &str = "web.shop.k8s.internal";
const SRV: &str = "_http._tcp.web.shop.k8s.internal";

/// A zone of the four workers whose `probe` port is `port`, with `web.shop` on all of them;
/// TTLs 300 s so that the stale cap shows.
fn zone(port: u16) -> Snapshot {
    Snapshot {
        gateway: "gw-a".into(),
        version: Version(1),
        zone: ZoneHeader {
            suffix: Str::new("k8s.internal").unwrap(),
            local: Str::new("local").unwrap(),
            ttl: 300,
            service_ttl: 300,
            family: Family::Ipv4,
            nodes: WORKERS.len() as u16,
            probe: Some(port),
        },
        nodes: WORKERS
            .iter()
            .map(|&(name, tier, a)| {
                Some(Node {
                    name: Str::new(name).unwrap(),
                    tier,
                    v4: Some(Ipv4Addr::from(a)),
                    v6: None,
                })
            })
            .collect(),
        services: vec![Service {
            ns: "shop".into(),
            name: "web".into(),
            short: false,
            ports: vec![Port::parse("_http._tcp:30080").unwrap()],
            hosts: (0..WORKERS.len() as u16).collect(),
        }],
    }
}

/// The workers' probe listeners, opened and closed by the test.
struct Workers {
    port: u16,
    open: Vec<Option<TcpListener>>,
}

impl Workers {
    fn new() -> Workers {
        // A port free on the first address; the others are distinct addresses.
        let first = TcpListener::bind((Ipv4Addr::from(WORKERS[0].2), 0)).unwrap();
        let port = first.local_addr().unwrap().port();
        let mut open = vec![Some(first)];
        for w in &WORKERS[1..] {
            open.push(Some(
                TcpListener::bind((Ipv4Addr::from(w.2), port)).unwrap(),
            ));
        }
        Workers { port, open }
    }

    fn close(&mut self, i: usize) {
        self.open[i] = None;
    }

    fn reopen(&mut self, i: usize) {
        let addr = SocketAddr::from((WORKERS[i].2, self.port));
        self.open[i] = Some(TcpListener::bind(addr).unwrap());
    }
}

/// The rig: broker, test master, the workers' listeners, an agent with `flags`.
struct Rig {
    agent: ChildGuard,
    dns: SocketAddr,
    master: Master,
    broker: Mosquitto,
    workers: Workers,
    _pki: Pki,
    _tmp: TempDir,
}

fn start(name: &str, flags: &[&str]) -> Rig {
    let tmp = TempDir::new(name);
    let pki = Pki::new(tmp.path());
    let broker = pki.broker(tmp.path(), false);
    let master = Master::connect(Master::tls_options(&pki, &broker));
    let workers = Workers::new();
    let state = tmp.join("state");
    std::fs::create_dir_all(&state).unwrap();
    let (agent, dns) = spawn_agent(&pki, &broker, &state, flags);
    master.publish_snapshot(&zone(workers.port));
    wait_answer(dns, WEB, "127.0.0.2", SOON);
    Rig {
        agent,
        dns,
        master,
        broker,
        workers,
        _pki: pki,
        _tmp: tmp,
    }
}

fn spawn_agent(
    pki: &Pki,
    broker: &Mosquitto,
    state: &Path,
    flags: &[&str],
) -> (ChildGuard, SocketAddr) {
    let dns = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let client = pki.ca.client("gw-a");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sdwan-agent"));
    cmd.env("RUST_LOG", "info")
        .arg("--listen")
        .arg(dns.to_string())
        .args([
            "--broker",
            &broker.url(),
            "--gateway-id",
            "gw-a",
            "--topic-prefix",
            PREFIX,
        ])
        .arg("--state-dir")
        .arg(state)
        .arg("--ca")
        .arg(pki.ca.cert())
        .arg("--cert")
        .arg(&client.cert)
        .arg("--key")
        .arg(&client.key)
        .args(flags);
    (ChildGuard::spawn("sdwan-agent gw-a", &mut cmd), dns)
}

/// The A records `name` answers (sorted), or the rcode when it is not NOERROR.
fn a_of(dns: SocketAddr, name: &str) -> Vec<String> {
    let d = dig(dns, &[name, "A", "+norecurse"]);
    match d.status.as_deref() {
        Some("NOERROR") => d.answer_data("A"),
        other => vec![format!("{other:?}")],
    }
}

/// Waits until `name` answers `want` (an address or an rcode); returns how long it took.
#[track_caller]
fn wait_answer(dns: SocketAddr, name: &str, want: &str, within: Duration) -> Duration {
    let t = Instant::now();
    wait_for(within, &format!("{name} answering {want}"), || {
        let got = a_of(dns, name);
        got.iter()
            .any(|g| g == want || g.contains(want))
            .then_some(())
    });
    t.elapsed()
}

/// The SRV targets of `_http._tcp.web.shop` in answer order (priority order).
fn srv_order(dns: SocketAddr) -> Vec<String> {
    srv_order_of(dns, SRV)
}

/// The SRV targets of `name` in priority order.
fn srv_order_of(dns: SocketAddr, name: &str) -> Vec<String> {
    let d = dig(dns, &[name, "SRV", "+norecurse"]);
    let mut rr: Vec<(u32, String)> = d
        .answer
        .iter()
        .filter(|r| r.rtype == "SRV")
        .map(|r| {
            let f: Vec<&str> = r.data.split(' ').collect();
            (
                f[0].parse().unwrap(),
                f[3].trim_end_matches(".k8s.internal.").to_string(),
            )
        })
        .collect();
    rr.sort();
    rr.into_iter().map(|(_, t)| t).collect()
}

/// A worker whose listener closes is skipped within 3 s (the next candidate by the plan's
/// order; SRV lists it last; the status names it), and comes back within 10 s of reopening.
/// With every candidate down the agent fails open: the nearest, as planned.
#[test]
fn a_worker_whose_listener_closes_is_skipped_within_3_s_and_returns() {
    let mut rig = start("probe-failover", &[]);
    let dns = rig.dns;
    rig.master
        .wait_status("gw-a", "reach of 4 workers, none down", |s| {
            s.reach
                .as_ref()
                .is_some_and(|r| r.workers == 4 && r.down.is_empty() && r.rtt_ms.is_some())
        });
    assert_eq!(srv_order(dns), ["w1", "w2", "w3", "w4"]);

    // (workers closed, what web.shop answers, SRV order, reach.down): each step as data.
    type Step = (
        &'static [usize],
        &'static str,
        [&'static str; 4],
        &'static [&'static str],
    );
    let steps: &[Step] = &[
        (&[0], "127.0.0.3", ["w2", "w3", "w4", "w1"], &["w1"]),
        (
            &[0, 1],
            "127.0.0.4",
            ["w3", "w4", "w1", "w2"],
            &["w1", "w2"],
        ),
        (
            &[0, 1, 2],
            "127.0.0.5",
            ["w4", "w1", "w2", "w3"],
            &["w1", "w2", "w3"],
        ),
        // Every candidate down: fail open, the nearest as planned, SRV in plan order.
        (
            &[0, 1, 2, 3],
            "127.0.0.2",
            ["w1", "w2", "w3", "w4"],
            &["w1", "w2", "w3", "w4"],
        ),
    ];
    for (closed, want, srv, down) in steps {
        let last = *closed.last().unwrap();
        rig.workers.close(last);
        let took = wait_answer(dns, WEB, want, Duration::from_secs(5));
        if *want != "127.0.0.2" {
            assert!(
                took <= Duration::from_secs(3),
                "{want}: failover took {took:?}"
            );
        }
        // The status follows the down set.
        let names: Vec<String> = down.iter().map(|s| s.to_string()).collect();
        rig.master
            .wait_status("gw-a", &format!("reach.down = {down:?}"), |s| {
                s.reach.as_ref().is_some_and(|r| r.down == names)
            });
        assert_eq!(srv_order(dns), srv, "closed {closed:?}");
    }
    // kdig sees the same fail-open answer.
    let k = kdig(dns, &[WEB, "A"]);
    assert_eq!(k.answer_data("A"), ["127.0.0.2"]);

    // Reopened: the nearest returns within 10 s.
    for i in [3, 2, 1] {
        rig.workers.reopen(i);
    }
    wait_answer(dns, WEB, "127.0.0.3", Duration::from_secs(10));
    rig.workers.reopen(0);
    let took = wait_answer(dns, WEB, "127.0.0.2", Duration::from_secs(10));
    assert!(took <= Duration::from_secs(10));
    rig.master.wait_status("gw-a", "nothing down", |s| {
        s.reach.as_ref().is_some_and(|r| r.down.is_empty())
    });
    assert_eq!(srv_order(dns), ["w1", "w2", "w3", "w4"]);
    assert!(rig
        .agent
        .stderr()
        .contains("worker w1 unreachable from this branch"));
}

/// `--probe-port service`: `web.shop` and `api.shop` on the four workers, each NodePort a
/// listener per worker address. Closing `web`'s listener on w1 moves `web` to w2 within
/// 3 s (SRV: w1 last) while `api` stays on w1, as does `local` (w1 still answers a port);
/// with `api`'s port closed too, w1 is down as a whole; `web` returns within 10 s of its
/// listener reopening.
#[test]
fn per_service_probing_moves_only_the_service_whose_port_closes() {
    let tmp = TempDir::new("probe-services");
    let pki = Pki::new(tmp.path());
    let broker = pki.broker(tmp.path(), false);
    let master = Master::connect(Master::tls_options(&pki, &broker));
    let (mut web, mut api) = (Workers::new(), Workers::new());
    let state = tmp.join("state");
    std::fs::create_dir_all(&state).unwrap();
    let (agent, dns) = spawn_agent(&pki, &broker, &state, &["--probe-port", "service"]);
    let mut snap = zone(1);
    snap.zone.probe = None;
    snap.services[0].ports = vec![Port::parse(&format!("_http._tcp:{}", web.port)).unwrap()];
    let mut api_svc = snap.services[0].clone();
    api_svc.name = "api".into();
    api_svc.ports = vec![Port::parse(&format!("_http._tcp:{}", api.port)).unwrap()];
    snap.services.insert(0, api_svc);
    master.publish_snapshot(&snap);
    const API: &str = "api.shop.k8s.internal";
    const API_SRV: &str = "_http._tcp.api.shop.k8s.internal";
    const LOCAL: &str = "local.k8s.internal";
    wait_answer(dns, WEB, "127.0.0.2", SOON);
    master.wait_status("gw-a", "reach of 4 workers, none down", |s| {
        s.reach
            .as_ref()
            .is_some_and(|r| r.workers == 4 && r.down.is_empty() && r.rtt_ms.is_some())
    });

    web.close(0);
    let took = wait_answer(dns, WEB, "127.0.0.3", Duration::from_secs(5));
    println!("web failover after its listener closed on w1: {took:?}");
    assert!(took <= Duration::from_secs(3), "failover took {took:?}");
    master.wait_status("gw-a", "reach.down = [w1]", |s| {
        s.reach.as_ref().is_some_and(|r| r.down == ["w1"])
    });
    assert_eq!(a_of(dns, API), ["127.0.0.2"]);
    assert_eq!(a_of(dns, LOCAL), ["127.0.0.2"]);
    assert_eq!(srv_order(dns), ["w2", "w3", "w4", "w1"]);
    assert_eq!(srv_order_of(dns, API_SRV), ["w1", "w2", "w3", "w4"]);

    // Both ports of w1 closed: w1 is down as a whole, `local` moves too.
    api.close(0);
    wait_answer(dns, API, "127.0.0.3", Duration::from_secs(5));
    wait_answer(dns, LOCAL, "127.0.0.3", Duration::from_secs(5));
    assert_eq!(a_of(dns, WEB), ["127.0.0.3"]);

    web.reopen(0);
    let took = wait_answer(dns, WEB, "127.0.0.2", Duration::from_secs(10));
    assert!(took <= Duration::from_secs(10));
    assert_eq!(a_of(dns, API), ["127.0.0.3"]);
    let log = agent.stderr();
    let line = format!("worker w1 port {} (shop/web) unreachable", web.port);
    assert!(log.contains(&line), "{log}");
}

/// `--fail-closed`: with every candidate down, SERVFAIL with EDE 23 (Network Error);
/// `--rtt-order` reorders within a tier only: with the near worker up it answers, with it
/// down one of the two `zone` workers, never the `other` one.
#[test]
fn fail_closed_servfails_and_rtt_order_stays_within_the_tier() {
    let mut rig = start("probe-closed", &["--fail-closed", "--rtt-order"]);
    let dns = rig.dns;
    assert_eq!(a_of(dns, WEB), ["127.0.0.2"]);
    rig.workers.close(0);
    wait_for(Duration::from_secs(5), "w1 skipped", || {
        (a_of(dns, WEB) != ["127.0.0.2"]).then_some(())
    });
    for _ in 0..20 {
        let got = a_of(dns, WEB);
        assert!(got == ["127.0.0.3"] || got == ["127.0.0.4"], "{got:?}");
    }
    for i in 1..4 {
        rig.workers.close(i);
    }
    wait_answer(dns, WEB, "SERVFAIL", Duration::from_secs(5));
    let d: DigAnswer = dig(dns, &[WEB, "A", "+norecurse"]);
    assert!(d.stdout.contains("EDE: 23 (Network Error)"), "{}", d.stdout);
    let d = dig(dns, &[SRV, "SRV", "+norecurse"]);
    assert_eq!(d.status.as_deref(), Some("SERVFAIL"));
    // A node's own name still answers (no candidates to choose from).
    assert_eq!(a_of(dns, "w1.k8s.internal"), ["127.0.0.2"]);
    rig.workers.reopen(3);
    wait_answer(dns, WEB, "127.0.0.5", Duration::from_secs(10));
}

/// Without the broker the agent keeps serving the last zone and keeps probing; after
/// `--stale-after` the answers carry EDE 3 (Stale Answer) and TTLs of at most 30 s, never
/// SERVFAIL for that.
#[test]
fn stale_answers_after_the_broker_stops_and_probing_goes_on() {
    let mut rig = start("probe-stale", &["--stale-after", "2"]);
    let dns = rig.dns;
    let fresh = dig(dns, &[WEB, "A", "+norecurse"]);
    assert_eq!(fresh.answer[0].ttl, 300);
    assert!(!fresh.stdout.contains("EDE"), "{}", fresh.stdout);
    rig.broker.stop();
    let d = wait_for(Duration::from_secs(10), "EDE 3 in the answer", || {
        let d = dig(dns, &[WEB, "A", "+norecurse"]);
        d.stdout.contains("EDE: 3 (Stale Answer)").then_some(d)
    });
    assert_eq!(d.status.as_deref(), Some("NOERROR"));
    assert!(d.answer[0].ttl <= 30, "{}", d.stdout);
    let k = kdig(dns, &[WEB, "A", "+edns"]);
    assert!(k.stdout.contains("EDE: 3 (Stale Answer)"), "{}", k.stdout);
    assert!(k.answer[0].ttl <= 30);
    // Probing goes on without the broker.
    rig.workers.close(0);
    let took = wait_answer(dns, WEB, "127.0.0.3", Duration::from_secs(5));
    assert!(took <= Duration::from_secs(3), "failover took {took:?}");
    let d = dig(dns, &[SRV, "SRV", "+norecurse"]);
    assert_eq!(d.status.as_deref(), Some("NOERROR"));
    assert!(d.answer.iter().all(|r| r.ttl <= 30));
    // Without EDNS: no OPT, so no EDE; TTL still capped.
    let d = dig(dns, &[WEB, "A", "+norecurse", "+noedns"]);
    assert!(d.answer[0].ttl <= 30);
}

/// The CPU the agent spends probing 500 workers (docs/benchmarks.md, "Probing cost"): 500
/// listeners on 127.0.1.1..127.0.2.244, one zone of 500 workers, the agent's utime+stime
/// from `/proc/PID/stat` over `PROBE_COST_SECS` (default 60) seconds, probing on and then
/// `--probe off` for the baseline. Run by hand with the release build (cargo test: the two
/// windows outlast nextest's slow-test limit):
/// `cargo build --release -p sdwan-agent && SDWAN_AGENT_BIN=$CARGO_TARGET_DIR/release/sdwan-agent
/// cargo test -p sdwan-agent --test probe -- --ignored --nocapture probing_cost`.
#[test]
#[ignore = "a 2-minute measurement, run by hand"]
fn probing_cost_of_500_workers() {
    let secs: u64 = std::env::var("PROBE_COST_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let addr = |i: usize| Ipv4Addr::new(127, 0, 1 + (i / 250) as u8, (i % 250) as u8 + 1);
    let first = TcpListener::bind((addr(0), 0)).unwrap();
    let port = first.local_addr().unwrap().port();
    let mut listeners = vec![first];
    for i in 1..500 {
        listeners.push(TcpListener::bind((addr(i), port)).unwrap());
    }
    let mut snap = zone(port);
    snap.zone.nodes = 500;
    snap.nodes = (0..500)
        .map(|i| {
            Some(Node {
                name: Str::new(&format!("w{i}")).unwrap(),
                tier: Tier::Other,
                v4: Some(addr(i)),
                v6: None,
            })
        })
        .collect();
    snap.services[0].hosts = (0..500).collect();
    let bin = std::env::var_os("SDWAN_AGENT_BIN").map_or_else(
        || env!("CARGO_BIN_EXE_sdwan-agent").into(),
        std::path::PathBuf::from,
    );
    let ticks = sysconf_ticks();
    for flags in [&[][..], &["--probe", "off"][..]] {
        let tmp = TempDir::new("probe-cost");
        let pki = Pki::new(tmp.path());
        let broker = pki.broker(tmp.path(), false);
        let master = Master::connect(Master::tls_options(&pki, &broker));
        let state = tmp.join("state");
        std::fs::create_dir_all(&state).unwrap();
        let client = pki.ca.client("gw-a");
        let dns = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut cmd = Command::new(&bin);
        cmd.arg("--listen")
            .arg(dns.to_string())
            .args(["--broker", &broker.url(), "--gateway-id", "gw-a"])
            .args(["--topic-prefix", PREFIX, "--state-dir"])
            .arg(&state)
            .arg("--ca")
            .arg(pki.ca.cert())
            .arg("--cert")
            .arg(&client.cert)
            .arg("--key")
            .arg(&client.key)
            .args(flags);
        let agent = ChildGuard::spawn("sdwan-agent gw-a", &mut cmd);
        master.publish_snapshot(&snap);
        wait_answer(dns, WEB, "127.0.1.1", SOON);
        if flags.is_empty() {
            master.wait_status("gw-a", "500 workers probed", |s| {
                s.reach
                    .as_ref()
                    .is_some_and(|r| r.workers == 500 && r.rtt_ms.is_some())
            });
        }
        let pid = agent.id();
        let cpu = || {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
            let f: Vec<&str> = stat
                .rsplit_once(')')
                .unwrap()
                .1
                .split_whitespace()
                .collect();
            f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
        };
        let (c0, t0) = (cpu(), Instant::now());
        // A measurement window, not a wait for a condition.
        std::thread::sleep(Duration::from_secs(secs));
        let (c1, t1) = (cpu(), t0.elapsed());
        let used = (c1 - c0) as f64 / ticks as f64;
        println!(
            "flags {flags:?}: {used:.2} s CPU in {:.1} s = {:.2} % of one core",
            t1.as_secs_f64(),
            100.0 * used / t1.as_secs_f64()
        );
        drop(agent);
    }
    drop(listeners);
}

fn sysconf_ticks() -> u64 {
    let out = Command::new("getconf").arg("CLK_TCK").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}
