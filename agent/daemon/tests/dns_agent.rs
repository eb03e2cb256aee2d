//! The built `sdwan-agent` binary on loopback, asked by real clients: dig and kdig (the case
//! table in `dns_cases.toml`), a raw TCP client (pipelining, idle timeout; the connection
//! table under attack is in `tcp_hostile.rs`),
//! garbage, IPv6, a dnsmasq forwarder; and its command line and start-up errors.

mod dns_common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use dns_common::{ask_cases, CaseFile};
use sdwan_testsupport::{dig, kdig, Agent, ChildGuard, Dnsmasq, TempDir};

const BIN: &str = env!("CARGO_BIN_EXE_sdwan-agent");

/// The zone of the case table: the example zone's names, serial 7, plus a 40-record A set
/// (over 512 bytes, under 1232) and a 20-record TXT set (over 1232 bytes).
fn test_zone() -> String {
    let mut records = vec![
        r#"{"name": "@", "type": "TXT", "data": "sdwan-discovery test zone"}"#.to_string(),
        r#"{"name": "local", "type": "A", "data": "192.168.200.2"}"#.into(),
        r#"{"name": "local", "type": "AAAA", "data": "fd00:200::2"}"#.into(),
        r#"{"name": "worker1", "type": "A", "data": "192.168.200.2"}"#.into(),
        r#"{"name": "worker1", "type": "AAAA", "data": "fd00:200::2"}"#.into(),
        r#"{"name": "worker2", "type": "A", "data": "192.168.201.2"}"#.into(),
        r#"{"name": "worker2", "type": "AAAA", "data": "fd00:201::2"}"#.into(),
        r#"{"name": "hello-world.default", "type": "A", "data": "192.168.200.2", "ttl": 10}"#
            .into(),
        r#"{"name": "_http._tcp.hello-world.default", "type": "SRV", "data": "0 0 30080 worker1"}"#
            .into(),
        r#"{"name": "_http._tcp.hello-world.default", "type": "SRV", "data": "1 0 30080 worker2"}"#
            .into(),
        r#"{"name": "grafana.monitoring", "type": "A", "data": "192.168.201.2"}"#.into(),
        r#"{"name": "dashboard", "type": "CNAME", "data": "grafana.monitoring"}"#.into(),
    ];
    for i in 0..40 {
        records.push(format!(
            r#"{{"name": "big", "type": "A", "data": "10.0.{}.{}"}}"#,
            i / 10,
            i % 10 + 1
        ));
    }
    for i in 0..20 {
        records.push(format!(
            r#"{{"name": "bigtxt", "type": "TXT", "data": "{i:02}-{}"}}"#,
            "x".repeat(200)
        ));
    }
    format!(
        r#"{{"version": 1, "serial": 7, "gateway": "gw-test", "origin": "k8s.internal", "ttl": 30,
"records": [
{}
]}}"#,
        records.join(",\n")
    )
}

fn start_with_zone(zone: &str) -> (TempDir, Agent) {
    let dir = TempDir::new("agent");
    let path = dir.write("zone.json", zone);
    let agent = Agent::start(BIN, &["--zone-file", path.to_str().unwrap()]);
    (dir, agent)
}

#[test]
fn dig_and_kdig_cases() {
    let cases: CaseFile =
        toml::from_str(include_str!("dns_cases.toml")).expect("dns_cases.toml parses");
    assert!(cases.case.len() >= 20);
    let (_dir, agent) = start_with_zone(&test_zone());
    let (_, failures) = ask_cases(agent.dns, &cases.case, "");
    assert!(
        failures.is_empty(),
        "{} failing case(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn example_zone_is_served() {
    let zone = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/zone.json");
    let agent = Agent::start(BIN, &["--zone-file", zone]);
    let a = dig(agent.dns, &["local.k8s.internal", "A"]);
    assert_eq!(a.answer_data("A"), ["192.168.200.2"], "{}", a.stdout);
    let srv = dig(
        agent.dns,
        &["_http._tcp.hello-world.default.k8s.internal", "SRV"],
    );
    assert_eq!(srv.answer.len(), 2, "{}", srv.stdout);
    let log = agent.child.stderr();
    assert!(
        log.contains("zone loaded from") && log.contains("serial 1") && log.contains("gw-espoo"),
        "start-up log does not describe the zone:\n{log}"
    );
}

// ---------------------------------------------------------------------------------------------
// Raw clients: the exact bytes, for what dig cannot do.

/// A query for `name`/`qtype` with id `id`, RD set, no EDNS.
fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut q = Vec::new();
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.').filter(|l| !l.is_empty()) {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    q
}

/// (id, rcode, ancount) of a response.
fn head(resp: &[u8]) -> (u16, u8, u16) {
    assert!(resp.len() >= 12, "response shorter than a header: {resp:?}");
    (
        u16::from_be_bytes([resp[0], resp[1]]),
        resp[3] & 0x0f,
        u16::from_be_bytes([resp[6], resp[7]]),
    )
}

fn tcp_send(s: &mut TcpStream, msg: &[u8]) {
    let mut framed = (msg.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(msg);
    s.write_all(&framed).unwrap();
}

fn tcp_recv(s: &mut TcpStream) -> Vec<u8> {
    let mut len = [0u8; 2];
    s.read_exact(&mut len).unwrap();
    let mut msg = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut msg).unwrap();
    msg
}

fn udp_ask(server: SocketAddr, q: &[u8]) -> Option<Vec<u8>> {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s.send_to(q, server).unwrap();
    let mut buf = [0u8; 4096];
    let n = s.recv(&mut buf).ok()?;
    Some(buf[..n].to_vec())
}

#[test]
fn tcp_pipelining_and_idle_timeout() {
    let dir = TempDir::new("agent");
    let zone = dir.write("zone.json", test_zone());
    let agent = Agent::start(
        BIN,
        &[
            "--zone-file",
            zone.to_str().unwrap(),
            "--tcp-idle-timeout",
            "1",
        ],
    );

    // Three queries in one write, split oddly; three answers in order.
    let mut c1 = TcpStream::connect(agent.dns).unwrap();
    c1.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut burst = Vec::new();
    for (id, name) in [(1u16, "local"), (2, "nope"), (3, "big")] {
        let q = query(id, &format!("{name}.k8s.internal"), 1);
        burst.extend_from_slice(&(q.len() as u16).to_be_bytes());
        burst.extend_from_slice(&q);
    }
    c1.write_all(&burst[..5]).unwrap();
    c1.write_all(&burst[5..]).unwrap();
    assert_eq!(head(&tcp_recv(&mut c1)), (1, 0, 1));
    assert_eq!(head(&tcp_recv(&mut c1)), (2, 3, 0));
    assert_eq!(head(&tcp_recv(&mut c1)), (3, 0, 40));

    let mut c2 = TcpStream::connect(agent.dns).unwrap();
    c2.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    tcp_send(&mut c2, &query(4, "local.k8s.internal", 1));
    assert_eq!(head(&tcp_recv(&mut c2)), (4, 0, 1));
    let mut b = [0u8; 2];

    // Idle connections are closed after the 1 s idle timeout.
    let t0 = Instant::now();
    for c in [&mut c1, &mut c2] {
        let r = c.read(&mut b);
        assert!(
            matches!(r, Ok(0) | Err(_)),
            "idle connection not closed: {r:?}"
        );
    }
    let idle = t0.elapsed();
    assert!(idle < Duration::from_secs(4), "closed only after {idle:?}");

    // A client that trickles a query one byte at a time is cut off after the idle timeout
    // too, although it is never silent for that long.
    let mut slow = TcpStream::connect(agent.dns).unwrap();
    slow.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let q = query(6, "local.k8s.internal", 1);
    let mut framed = (q.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&q);
    let t0 = Instant::now();
    let mut closed = false;
    for byte in framed.iter().take(framed.len() - 1) {
        if slow.write_all(&[*byte]).is_err() {
            closed = true;
            break;
        }
        // Waits 300 ms for the close; a read that times out means still open.
        if matches!(slow.read(&mut b), Ok(0)) {
            closed = true;
            break;
        }
    }
    let held = t0.elapsed();
    assert!(closed, "a trickling client was never cut off");
    assert!(
        held < Duration::from_secs(3),
        "a trickling client held its connection {held:?}"
    );

    // With those gone, new connections are served again.
    let mut c4 = TcpStream::connect(agent.dns).unwrap();
    c4.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    tcp_send(&mut c4, &query(5, "local.k8s.internal", 1));
    assert_eq!(head(&tcp_recv(&mut c4)), (5, 0, 1));
}

#[test]
fn garbage_never_crashes_the_agent() {
    let (_dir, mut agent) = start_with_zone(&test_zone());
    // Seeded: the same garbage every run.
    let mut rng = sdwan_testsupport::Rng::new(0x5d3a_11f0_9c27_e4b1);
    let mut next = move || rng.next_u64();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let valid = query(9, "local.k8s.internal", 1);
    for i in 0..3000 {
        let len = (next() % 600) as usize;
        let mut msg: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if i % 3 == 0 {
            // Mutate a valid query instead: gets past the first checks.
            msg = valid.clone();
            for _ in 0..1 + next() % 4 {
                let at = (next() as usize) % msg.len();
                msg[at] = next() as u8;
            }
            msg.truncate(((next() as usize) % msg.len()).max(1));
        }
        sock.send_to(&msg, agent.dns).unwrap();
    }
    for i in 0..50u32 {
        let mut s = TcpStream::connect(agent.dns).unwrap();
        let len = (next() % 300) as usize;
        let mut msg: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if i % 2 == 0 {
            msg.splice(0..0, (len as u16).to_be_bytes());
        }
        let _ = s.write_all(&msg);
    }
    assert!(agent.child.try_exit().is_none(), "agent died on garbage");
    let r = udp_ask(agent.dns, &query(77, "local.k8s.internal", 1)).expect("an answer");
    assert_eq!(head(&r), (77, 0, 1));
    let a = dig(agent.dns, &["+tcp", "local.k8s.internal"]);
    assert_eq!(a.answer_data("A"), ["192.168.200.2"], "{}", a.stdout);
}

#[test]
fn ipv6_listen_on_loopback() {
    let dir = TempDir::new("agent");
    let zone = dir.write("zone.json", test_zone());
    let port = sdwan_testsupport::free_port();
    let v6: SocketAddr = format!("[::1]:{port}").parse().unwrap();
    let v4: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut child = ChildGuard::spawn(
        "sdwan-agent",
        Command::new(BIN)
            .env("RUST_LOG", "info")
            .args(["--zone-file", zone.to_str().unwrap()])
            .args(["--listen", &v4.to_string(), "--listen", &v6.to_string()]),
    );
    child.wait_stderr(Duration::from_secs(10), &format!("listening on tcp {v6}"));
    for args in [
        &["local.k8s.internal", "AAAA"][..],
        &["+tcp", "local.k8s.internal", "AAAA"],
    ] {
        for got in [dig(v6, args), kdig(v6, args), dig(v4, args)] {
            assert_eq!(got.answer_data("AAAA"), ["fd00:200::2"], "{}", got.stdout);
        }
    }
}

#[test]
fn dnsmasq_forwards_the_suffix_to_the_agent() {
    let (_dir, agent) = start_with_zone(&test_zone());
    let dnsmasq = Dnsmasq::start("k8s.internal", agent.dns, &[]);
    let a = dig(dnsmasq.addr, &["hello-world.default.k8s.internal", "A"]);
    assert_eq!(a.status.as_deref(), Some("NOERROR"), "{}", a.stdout);
    assert_eq!(a.answer_data("A"), ["192.168.200.2"], "{}", a.stdout);
    let srv = dig(
        dnsmasq.addr,
        &["_http._tcp.hello-world.default.k8s.internal", "SRV"],
    );
    assert_eq!(
        srv.answer_data("SRV"),
        [
            "0 0 30080 worker1.k8s.internal.",
            "1 0 30080 worker2.k8s.internal."
        ],
        "{}",
        srv.stdout
    );
    let nx = dig(dnsmasq.addr, &["nope.k8s.internal", "A"]);
    assert_eq!(nx.status.as_deref(), Some("NXDOMAIN"), "{}", nx.stdout);
    // A large answer: dnsmasq gets TC over UDP and retries over TCP itself.
    let big = dig(dnsmasq.addr, &["+tcp", "bigtxt.k8s.internal", "TXT"]);
    assert_eq!(big.answer.len(), 20, "{}", big.stdout);
}

#[test]
fn no_zone_answers_refused_and_warns() {
    let agent = Agent::start(BIN, &[]);
    assert!(
        agent.child.stderr().contains("no zone loaded"),
        "no warning:\n{}",
        agent.child.stderr()
    );
    for got in [
        dig(agent.dns, &["local.k8s.internal"]),
        dig(agent.dns, &["+tcp", "local.k8s.internal"]),
    ] {
        assert_eq!(got.status.as_deref(), Some("REFUSED"), "{}", got.stdout);
    }
}

// ---------------------------------------------------------------------------------------------
// Command line, config file, start-up errors.

fn run_agent(args: &[&str]) -> (i32, String, String) {
    let o = Command::new(BIN).args(args).output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn help_and_version_tell_the_truth() {
    let (code, out, _) = run_agent(&["--version"]);
    assert_eq!((code, out.trim()), (0, "sdwan-agent 0.1.0"));
    let (code, help, _) = run_agent(&["--help"]);
    assert_eq!(code, 0);
    // The tests' build has worker mode (the crate's dev-dependency on itself); the TAP flags
    // are shown only in a build with the smoltcp feature (issue 15).
    for key in sdwan_agent::config::KEYS {
        let built = !key.starts_with("tap") || cfg!(feature = "smoltcp");
        assert_eq!(
            help.contains(&format!("--{key} ")),
            built,
            "--help and --{key}"
        );
    }
    assert!(help.contains("--config FILE") && help.contains("RUST_LOG"));
}

#[test]
fn bad_command_lines_exit_2_with_a_clear_message() {
    let cases: &[(&[&str], &str)] = &[
        (&["--listne", "127.0.0.1:53"], "invalid option '--listne'"),
        (
            &["--listen", "127.0.0.1"],
            "--listen: bad value '127.0.0.1' for 'listen'",
        ),
        (
            &["--zone-file"],
            "missing argument for option '--zone-file'",
        ),
        (
            &["--broker", "tcp://x:1"],
            "bad value 'tcp://x:1' for 'broker'",
        ),
        (&["extra"], "unexpected argument"),
    ];
    for (args, want) in cases {
        let (code, _, err) = run_agent(args);
        assert_eq!(code, 2, "{args:?}: exit {code}, stderr {err}");
        assert!(
            err.contains(want),
            "{args:?}: stderr {err:?} lacks {want:?}"
        );
    }
}

#[test]
fn rejected_zone_file_names_the_record_and_exits_1() {
    let dir = TempDir::new("agent");
    let cases = [
        (
            r#"{"version":1,"serial":1,"gateway":"g","origin":"k8s.internal","ttl":30,
               "records":[{"name":"a","type":"A","data":"192.0.2.1"},
                          {"name":"broken","type":"A","data":"300.1.1.1"}]}"#,
            "record 1 (\"broken\")",
        ),
        (r#"{"version":2}"#, "version"),
        ("not json", "zone file"),
    ];
    for (i, (zone, want)) in cases.iter().enumerate() {
        let path = dir.write(format!("bad{i}.json"), zone);
        let (code, _, err) = run_agent(&[
            "--listen",
            "127.0.0.1:0",
            "--zone-file",
            path.to_str().unwrap(),
        ]);
        assert_eq!(code, 1, "{zone}: exit {code}, stderr {err}");
        assert!(
            err.contains(want) && err.contains(path.to_str().unwrap()),
            "{zone}: stderr {err:?} lacks {want:?} or the file name"
        );
    }
    let (code, _, err) = run_agent(&["--zone-file", "/nonexistent/zone.json"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("cannot read zone file /nonexistent/zone.json"),
        "{err}"
    );
}

#[test]
fn config_file_keys_and_flags_win() {
    let dir = TempDir::new("agent");
    let zone = dir.write("zone.json", test_zone());
    let port = sdwan_testsupport::free_port();
    let conf = dir.write(
        "agent.conf",
        format!(
            "# rendered from UCI\nlisten = 127.0.0.1:{port}\nzone-file = \"{}\"\ntcp-idle-timeout = 3\n",
            zone.display()
        ),
    );
    // From the file alone.
    let mut c = ChildGuard::spawn(
        "sdwan-agent",
        Command::new(BIN)
            .env("RUST_LOG", "info")
            .args(["--config", conf.to_str().unwrap()]),
    );
    c.wait_stderr(
        Duration::from_secs(10),
        &format!("listening on tcp 127.0.0.1:{port}"),
    );
    let a = dig(([127, 0, 0, 1], port).into(), &["local.k8s.internal"]);
    assert_eq!(a.answer_data("A"), ["192.168.200.2"], "{}", a.stdout);
    drop(c);
    // A flag replaces the file's listen address.
    let agent = Agent::start(BIN, &["--config", conf.to_str().unwrap()]);
    assert!(!agent.child.stderr().contains(&format!("127.0.0.1:{port}")));
    let a = dig(agent.dns, &["local.k8s.internal"]);
    assert_eq!(a.answer_data("A"), ["192.168.200.2"], "{}", a.stdout);
    // A bad line names the file and line.
    let bad = dir.write("bad.conf", "listen = 127.0.0.1:53\nzone_file = x\n");
    let (code, _, err) = run_agent(&["--config", bad.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(
        err.contains("bad.conf:2: unknown setting 'zone_file'"),
        "{err}"
    );
}

#[test]
fn address_in_use_is_a_clear_error() {
    let taken = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, _, err) = run_agent(&["--listen", &addr]);
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!("cannot listen on UDP {addr}")),
        "{err}"
    );
}

#[test]
fn user_switch_after_binding() {
    let (code, _, err) = run_agent(&["--listen", "127.0.0.1:0", "--user", "no-such-user-xyz"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("--user no-such-user-xyz: no such user"),
        "{err}"
    );

    // SAFETY: plain syscall.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        let (code, _, err) = run_agent(&["--listen", "127.0.0.1:0", "--user", "nobody"]);
        assert_eq!(code, 1, "{err}");
        assert!(err.contains("switching users needs root"), "{err}");
        return;
    }
    // As root: the agent binds, drops to nobody, and still answers.
    let dir = TempDir::new("agent");
    let zone = dir.write("zone.json", test_zone());
    let agent = Agent::start(
        BIN,
        &["--zone-file", zone.to_str().unwrap(), "--user", "nobody"],
    );
    assert!(agent.child.stderr().contains("running as user nobody"));
    let status = std::fs::read_to_string(format!("/proc/{}/status", agent.child.id())).unwrap();
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(
        uid.split_whitespace().skip(1).all(|u| u != "0"),
        "still root: {uid}"
    );
    let a = dig(agent.dns, &["local.k8s.internal"]);
    assert_eq!(a.answer_data("A"), ["192.168.200.2"], "{}", a.stdout);
}
