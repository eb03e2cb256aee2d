//! The smoltcp/TAP driver end to end (feature `smoltcp`; `tests/tap.sh` builds and runs it).
//!
//! Each test makes its own network namespace with a TAP device `tap0` (10.99.0.1/24, up), runs
//! the agent inside it attached to tap0 with its own smoltcp address 10.99.0.2, and asks with
//! `dig` from inside the namespace: the packets go kernel -> tap0 -> smoltcp -> core and back,
//! and never leave the namespace. The namespace is deleted when the test ends, pass or fail.
//!
//! A third test runs the driver in-process (a thread that entered the namespace) under a
//! counting allocator: no allocation per query.
//!
//! Needs root (CAP_SYS_ADMIN for the namespace). Not root: the tests fail, unless
//! `SDWAN_SKIP_ROOT_TESTS=1` opts out (for a developer's machine; CI runs as root).
#![cfg(feature = "smoltcp")]

mod dns_common;

use std::net::{Ipv4Addr, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use dns_common::{answer_queries, check, example_store, query, typed, CaseFile};
use sdwan_agent::tap::{self, TapSettings};

use sdwan_testsupport::alloc::{allocations, count_this_thread, CountingAllocator};
use sdwan_testsupport::{require_tool, wait_for, ChildGuard, DigAnswer};

const BIN: &str = env!("CARGO_BIN_EXE_sdwan-agent");
const HOST_ADDR: &str = "10.99.0.1/24";
const AGENT_IP: &str = "10.99.0.2";

/// True when the test may go on: root, or (not root) the opt-out is set, then false.
fn root_or_skip() -> bool {
    // SAFETY: plain syscall without arguments.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var_os("SDWAN_SKIP_ROOT_TESTS").is_some_and(|v| v == "1") {
        eprintln!("not root and SDWAN_SKIP_ROOT_TESTS=1: TAP test skipped");
        return false;
    }
    panic!(
        "the TAP tests need root (network namespace, TAP device); run tests/tap.sh as root, \
         or set SDWAN_SKIP_ROOT_TESTS=1 to skip them on this machine"
    );
}

/// A network namespace with tap0 in it; deleted (with tap0) on drop.
struct Netns {
    name: String,
    ip: std::path::PathBuf,
}

impl Netns {
    fn new(tag: &str) -> Netns {
        let ip = require_tool("ip");
        let name = format!("sdwan-tap-{tag}-{}", std::process::id());
        let ns = Netns { name, ip };
        ns.ip_cmd(&["netns", "add", &ns.name]);
        ns.exec_ok(&["ip", "link", "set", "lo", "up"]);
        ns.exec_ok(&["ip", "tuntap", "add", "mode", "tap", "name", "tap0"]);
        ns.exec_ok(&["ip", "addr", "add", HOST_ADDR, "dev", "tap0"]);
        ns.exec_ok(&["ip", "link", "set", "tap0", "up"]);
        ns
    }

    fn ip_cmd(&self, args: &[&str]) {
        let o = Command::new(&self.ip).args(args).output().expect("run ip");
        assert!(
            o.status.success(),
            "ip {args:?} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    /// `ip netns exec NS ARGS...` as a command to run.
    fn exec(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.ip);
        c.args(["netns", "exec", &self.name]).args(args);
        c
    }

    fn exec_ok(&self, args: &[&str]) {
        let o = self.exec(args).output().expect("run ip netns exec");
        assert!(
            o.status.success(),
            "in {}: {args:?} failed: {}",
            self.name,
            String::from_utf8_lossy(&o.stderr)
        );
    }

    /// Runs `dig @server -p port +time=1 +tries=1 ARGS` inside the namespace.
    fn dig(&self, server: &str, port: u16, args: &[&str]) -> DigAnswer {
        let dig = require_tool("dig");
        let at = format!("@{server}");
        let port = port.to_string();
        let mut cmd = self.exec(&[
            dig.to_str().unwrap(),
            &at,
            "-p",
            &port,
            "+time=1",
            "+tries=1",
        ]);
        let o = cmd.args(args).output().expect("run dig in the namespace");
        let mut a = DigAnswer::parse(&String::from_utf8_lossy(&o.stdout));
        a.exit = o.status.code().unwrap_or(-1);
        a.stderr = String::from_utf8_lossy(&o.stderr).into_owned();
        a
    }

    /// Starts the agent inside the namespace and waits until its TAP driver is up.
    fn agent(&self, args: &[&str]) -> ChildGuard {
        let zone = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/zone.json");
        let mut cmd = self.exec(&[BIN, "--zone-file", zone.to_str().unwrap()]);
        cmd.args(args).env("RUST_LOG", "info");
        let mut child = ChildGuard::spawn("sdwan-agent", &mut cmd);
        child.wait_stderr(Duration::from_secs(10), "TAP tap0: smoltcp on");
        child
    }

    /// Asks until an answer comes back (the first query also waits for ARP), within 10 s.
    fn first_answer(&self, server: &str, port: u16, args: &[&str]) -> DigAnswer {
        wait_for(
            Duration::from_secs(10),
            &format!("an answer from {server} port {port}"),
            || Some(self.dig(server, port, args)).filter(|a| a.status.is_some()),
        )
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let o = Command::new(&self.ip)
            .args(["netns", "del", &self.name])
            .output();
        if !matches!(&o, Ok(o) if o.status.success()) {
            eprintln!("could not delete network namespace {}: {o:?}", self.name);
        }
    }
}

/// Every case of `tap_cases.toml` through the TAP driver on port 53, with only the TAP driver
/// serving (no --listen: the OS stack serves no DNS at all).
#[test]
fn dig_through_smoltcp_on_a_tap_device() {
    if !root_or_skip() {
        return;
    }
    let cases: CaseFile =
        toml::from_str(include_str!("tap_cases.toml")).expect("tap_cases.toml parses");
    let ns = Netns::new("only");
    let addr = format!("{AGENT_IP}/24");
    let agent = ns.agent(&["--tap", "tap0", "--tap-address", &addr]);
    ns.first_answer(AGENT_IP, 53, &["local.k8s.internal"]);
    let mut failures = Vec::new();
    for case in &cases.case {
        let args: Vec<&str> = case.args.iter().map(String::as_str).collect();
        let got = ns.dig(AGENT_IP, 53, &args);
        let mut wrong = check(case, &got);
        if !got.has_flag("qr") {
            wrong.push("no qr flag".into());
        }
        if !wrong.is_empty() {
            failures.push(format!(
                "{}: {}\n{}",
                case.name,
                wrong.join("; "),
                got.stdout
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.case.len(),
        failures.join("\n")
    );
    // Checked after the queries: socket servers, had any started, would have logged by now.
    assert!(
        !agent.stderr().contains("listening on"),
        "no --listen: only the TAP driver must serve, got:\n{}",
        agent.stderr()
    );
    // Nothing else answers on that address: the kernel has no 10.99.0.2, smoltcp does.
    let o = ns.exec(&["ip", "-4", "addr", "show"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&o.stdout).contains(AGENT_IP));
}

/// The TAP driver on another port beside a socket listener: both answer the same zone.
#[test]
fn tap_beside_socket_listener_with_custom_port() {
    if !root_or_skip() {
        return;
    }
    let ns = Netns::new("both");
    let addr = format!("{AGENT_IP}/24");
    let agent = ns.agent(&[
        "--listen",
        "127.0.0.1:5353",
        "--tap",
        "tap0",
        "--tap-address",
        &addr,
        "--tap-gateway",
        "10.99.0.1",
        "--tap-port",
        "5300",
    ]);
    assert!(agent.stderr().contains("DNS on udp port 5300"));
    let q = ["_http._tcp.grafana.monitoring.k8s.internal", "SRV"];
    let via_tap = ns.first_answer(AGENT_IP, 5300, &q);
    let via_socket = ns.first_answer("127.0.0.1", 5353, &q);
    assert_eq!(via_tap.status.as_deref(), Some("NOERROR"));
    assert_eq!(
        typed(&via_tap.answer),
        ["SRV 0 0 30300 worker2.k8s.internal."]
    );
    assert_eq!(typed(&via_tap.answer), typed(&via_socket.answer));
    // Port 53 on the TAP address is not served: dig gets no answer (smoltcp sends no reply
    // to a closed port... or an ICMP port unreachable: either way, no DNS answer).
    let none = ns.dig(AGENT_IP, 53, &["local.k8s.internal"]);
    assert_eq!(none.status, None, "port 53 answered:\n{}", none.stdout);
}

/// A TAP device that is not there is a clear error at start (exit 1), not a new device.
#[test]
fn missing_tap_device_is_a_clear_error() {
    if !root_or_skip() {
        return;
    }
    let ns = Netns::new("missing");
    let o = ns
        .exec(&[BIN, "--tap", "nosuch0", "--tap-address", "10.99.0.2/24"])
        .output()
        .expect("run the agent");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot open TAP device nosuch0: no such interface"),
        "{stderr}"
    );
    let links = ns.exec(&["ip", "link"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&links.stdout).contains("nosuch0"));
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// Moves the calling thread (only it) into the network namespace `name`.
fn enter_netns(name: &str) {
    let f = std::fs::File::open(format!("/run/netns/{name}")).expect("open /run/netns/NAME");
    // SAFETY: plain syscall on an open namespace fd; affects only this thread.
    let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
}

/// The driver's own loop, in this process: after a warm-up, thousands of mixed queries
/// (answers, NXDOMAIN, REFUSED, SRV, CNAME, EDNS) through the TAP device add no allocation on
/// the driver's thread. The time is passed in from the driver's clock.
#[test]
fn tap_driver_allocates_nothing_per_query() {
    if !root_or_skip() {
        return;
    }
    let ns = Netns::new("alloc");
    let store = example_store();
    let stop = Arc::new(AtomicBool::new(false));
    let warm = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = mpsc::channel();
    let driver = {
        let (name, store, stop, warm) =
            (ns.name.clone(), store.clone(), stop.clone(), warm.clone());
        std::thread::spawn(move || {
            enter_netns(&name);
            let settings = TapSettings {
                ifname: Some("tap0".into()),
                address: Some((AGENT_IP.parse().unwrap(), 24)),
                gateway: None,
                port: Some(53),
            };
            let mut tap = tap::open(&settings)
                .expect("open tap0")
                .expect("a TAP driver");
            ready_tx.send(()).unwrap();
            let mut answered = 0;
            let cap = smoltcp_ms(10);
            while !stop.load(Ordering::SeqCst) {
                if warm.load(Ordering::SeqCst) {
                    count_this_thread(true);
                }
                let now = tap.now();
                answered += tap.poll(now, &store);
                let delay = tap.delay(now).map_or(cap, |d| d.min(cap));
                tap.wait(Some(delay)).expect("wait on tap0");
            }
            count_this_thread(false);
            answered
        })
    };
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("driver up");
    enter_netns_client(&ns.name, |client| {
        let server = (AGENT_IP.parse::<Ipv4Addr>().unwrap(), 53);
        let mut qs = answer_queries();
        qs.extend([
            query(5, "example.com", 1, None),
            query(6, "dashboard.k8s.internal", 1, None),
            query(7, "k8s.internal", 255, None),
        ]);
        let mut buf = [0u8; 2048];
        let mut round = |client: &UdpSocket| {
            for q in &qs {
                client.send_to(q, server).unwrap();
                let n = client.recv(&mut buf).expect("an answer through tap0");
                assert!(n >= 12 && buf[..2] == q[..2], "answer to another query");
            }
        };
        // Warm-up: ARP both ways, first loads.
        for _ in 0..20 {
            round(client);
        }
        warm.store(true, Ordering::SeqCst);
        // The driver sets its flag on its next iteration; one more round makes sure it did.
        round(client);
        let before = allocations();
        for _ in 0..400 {
            round(client);
        }
        let after = allocations();
        assert_eq!(
            after - before,
            0,
            "allocations on the TAP driver thread over {} queries",
            400 * qs.len()
        );
    });
    stop.store(true, Ordering::SeqCst);
    let answered = driver.join().expect("driver thread");
    assert!(answered >= 421 * 7, "driver answered only {answered}");
}

fn smoltcp_ms(ms: u64) -> smoltcp::time::Duration {
    smoltcp::time::Duration::from_millis(ms)
}

/// Runs `f` with a UDP socket (5 s read timeout) on a thread inside namespace `name`.
fn enter_netns_client(name: &str, f: impl FnOnce(&UdpSocket) + Send) {
    std::thread::scope(|s| {
        s.spawn(|| {
            enter_netns(name);
            let client = UdpSocket::bind("0.0.0.0:0").unwrap();
            client
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            f(&client);
        })
        .join()
        .map_err(|e| std::panic::resume_unwind(e))
        .unwrap();
    });
}
