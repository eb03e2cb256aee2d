//! bench/scale (issue 11): the whole system at the scale the project is for.
//!
//! `sdwan-bench-scale run [options]` sets up, all on loopback:
//! - a real mosquitto with TLS, client certificates and the design ACL (limits at their
//!   defaults);
//! - the fake API server loaded with plan-bench's synthetic cluster ([`cluster`]) and its
//!   topology of gateways;
//! - the master (`sdwan-discovery run`) as its own process, connected through a counting
//!   relay ([`relay`]) so that what it reads from the broker is measured;
//! - the load generator ([`loadgen`]): one session per gateway and per worker;
//! - three real agents (`sdwan-agent`) answering `dig`;
//!
//! and measures the first publish, three kinds of change (endpoints move, a replica is added,
//! a node goes NotReady), a master restart and the agents' RSS, printing Markdown tables.
//! Every process it starts is stopped by its PID at the end, also on failure
//! (`sdwan_testsupport::ChildGuard`).
//!
//! `sdwan-bench-scale messages DIR` writes the synthetic v2 zone of
//! agent/contract/tests/v2_common as message files (snapshot parts and a chain of deltas)
//! for `sdwan-bench-apply`, the apply timer that also runs on mipsel.

mod cluster;
mod loadgen;
mod relay;
#[path = "../../plan/synthetic.rs"]
mod synthetic;
#[path = "../../../agent/contract/tests/v2_common/mod.rs"]
mod v2_common;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use sdwan_fake_apiserver::FakeApiServer;
use sdwan_testsupport::certs::Ca;
use sdwan_testsupport::{Agent, ChildGuard, TempDir};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use cluster::{worker, worker_v4, Cluster};
use loadgen::{Held, Load, Payload, KINDS};

const PREFIX: &str = "sdwan/v1/scale";
/// A change that brought no message within this long brought none.
const CHANGE_FIRST: Duration = Duration::from_secs(30);
/// Longest a change may take to be delivered (a master that keeps publishing, e.g. while its
/// connection keeps failing, never lets the sessions go quiet).
const CHANGE_DEADLINE: Duration = Duration::from_secs(60);
const USAGE: &str = "\
usage: sdwan-bench-scale run [--services N] [--nodes N] [--gateways N] [--agents N] [--seed N]
                             [--payload v1|v2] [--master BIN] [--agent BIN] [--quiet MS]
                             [--deadline SECS] [--max-queued-messages N]
       sdwan-bench-scale messages DIR [--deltas N]";

#[derive(Debug)]
struct Args {
    services: usize,
    nodes: usize,
    gateways: usize,
    agents: usize,
    seed: u64,
    payload: Payload,
    master: PathBuf,
    agent: PathBuf,
    /// A change is delivered once no session got a message for this long.
    quiet: Duration,
    /// Longest wait for the master's first complete publish.
    deadline: Duration,
    /// mosquitto's `max_queued_messages` (none: its default, 1000).
    max_queued: Option<u64>,
}

fn fail(msg: &str) -> ! {
    eprintln!("sdwan-bench-scale: {msg}\n{USAGE}");
    std::process::exit(2)
}

fn parse_run(args: &[String]) -> Args {
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    let mut a = Args {
        services: 5000,
        nodes: 500,
        gateways: 2000,
        agents: 3,
        seed: 1,
        payload: Payload::V2,
        master: exe_dir.join("sdwan-discovery"),
        agent: exe_dir.join("sdwan-agent"),
        quiet: Duration::from_millis(3000),
        deadline: Duration::from_secs(300),
        max_queued: None,
    };
    for pair in args.chunks(2) {
        let v = pair
            .get(1)
            .unwrap_or_else(|| fail(&format!("{} needs a value", pair[0])));
        let n = || -> u64 {
            v.parse()
                .unwrap_or_else(|_| fail(&format!("{}: {v:?} is not a number", pair[0])))
        };
        match pair[0].as_str() {
            "--services" => a.services = n() as usize,
            "--nodes" => a.nodes = n() as usize,
            "--gateways" => a.gateways = n() as usize,
            "--agents" => a.agents = n() as usize,
            "--seed" => a.seed = n(),
            "--quiet" => a.quiet = Duration::from_millis(n()),
            "--deadline" => a.deadline = Duration::from_secs(n()),
            "--max-queued-messages" => a.max_queued = Some(n()),
            "--payload" => {
                a.payload = match v.as_str() {
                    "v1" => Payload::V1,
                    "v2" => Payload::V2,
                    _ => fail("--payload is v1 or v2"),
                }
            }
            "--master" => a.master = PathBuf::from(v),
            "--agent" => a.agent = PathBuf::from(v),
            other => fail(&format!("unknown option {other}")),
        }
    }
    for bin in [&a.master, &a.agent] {
        if !bin.exists() {
            fail(&format!(
                "{} not found (cargo build -p sdwan-discovery -p sdwan-agent)",
                bin.display()
            ));
        }
    }
    a
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("messages") => {
            let dir = args.get(1).unwrap_or_else(|| fail("messages needs DIR"));
            let deltas = match args.get(2).map(String::as_str) {
                Some("--deltas") => args
                    .get(3)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| fail("--deltas N")),
                Some(other) => fail(&format!("unknown option {other}")),
                None => 60,
            };
            messages(Path::new(dir), deltas);
        }
        Some("run") => {
            let a = parse_run(&args[1..]);
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap()
                .block_on(async {
                    // Interrupted: dropping the run stops every process it started.
                    let mut term =
                        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                            .expect("SIGTERM handler");
                    tokio::select! {
                        () = run(a) => {}
                        _ = tokio::signal::ctrl_c() => eprintln!("interrupted: stopping"),
                        _ = term.recv() => eprintln!("terminated: stopping"),
                    }
                });
        }
        _ => fail("which command?"),
    }
}

// ---------------------------------------------------------------------------------------
// The apply timer's input.

/// Writes the synthetic v2 zone's snapshot parts and a chain of `n` deltas, cycling through
/// the three kinds of change of the bench: an endpoint of a small service moves, a service
/// scales out by one, a DaemonSet loses one worker (a node going NotReady, for that service).
fn messages(dir: &Path, n: usize) {
    use sdwan_contract::v2::encode::Delta;
    use sdwan_contract::v2::Version;
    std::fs::create_dir_all(dir).unwrap_or_else(|e| fail(&format!("{}: {e}", dir.display())));
    let snap = v2_common::snapshot(1);
    let parts = snap.encode().expect("the synthetic snapshot encodes");
    for (k, p) in parts.iter().enumerate() {
        std::fs::write(dir.join(format!("part-{k}.json")), p).unwrap();
    }
    std::fs::write(dir.join("gateway"), &snap.gateway).unwrap();
    let slots = snap.nodes.len() as u16;
    let mut rng = sdwan_testsupport::Rng::new(7);
    let mut cur = snap;
    for i in 0..n {
        let mut next = cur.clone();
        next.version = Version(cur.version.0 + 1);
        loop {
            let s = rng.below(next.services.len());
            let hosts = &mut next.services[s].hosts;
            let changed = match i % 3 {
                0 if hosts.len() <= 3 => {
                    let h = rng.below(hosts.len());
                    let to = rng.below(slots as usize) as u16;
                    if hosts.contains(&to) {
                        false
                    } else {
                        hosts[h] = to;
                        true
                    }
                }
                1 if hosts.len() < 20 => {
                    let to = rng.below(slots as usize) as u16;
                    if hosts.contains(&to) {
                        false
                    } else {
                        hosts.push(to);
                        true
                    }
                }
                2 if hosts.len() == slots as usize => {
                    hosts.remove(rng.below(hosts.len()));
                    true
                }
                _ => false,
            };
            if changed {
                hosts.sort_unstable();
                break;
            }
        }
        let d = Delta::between(&cur, &next).expect("a delta");
        std::fs::write(
            dir.join(format!("delta-{i:03}.json")),
            d.encode().expect("the delta encodes"),
        )
        .unwrap();
        cur = next;
    }
    println!(
        "wrote {} parts and {n} deltas for {} into {}",
        parts.len(),
        cur.gateway,
        dir.display()
    );
}

// ---------------------------------------------------------------------------------------
// The run.

fn cert_of(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("scale-{name}.crt")),
        dir.join(format!("scale-{name}.key")),
    )
}

/// Enough descriptors for thousands of sessions, in this process and the broker it starts.
fn raise_fd_limit() -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit on a struct we own.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
        r.rlim_cur = r.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &r);
    }
    r.rlim_cur
}

fn mosquitto_conf(
    dir: &Path,
    port: u16,
    ca: &Path,
    server: (&Path, &Path),
    max_queued: Option<u64>,
) -> PathBuf {
    let mut c = String::new();
    if let Some(n) = max_queued {
        // Per client: also how many retained messages a new wildcard subscription gets
        // (the master's on the statuses at start).
        let _ = writeln!(c, "max_queued_messages {n}");
    }
    let _ = writeln!(c, "per_listener_settings false");
    let _ = writeln!(c, "user root");
    let _ = writeln!(c, "log_dest file {}", dir.join("mosquitto.log").display());
    let _ = writeln!(c, "log_type error\nlog_type warning");
    let _ = writeln!(c, "connection_messages false");
    let _ = writeln!(c, "set_tcp_nodelay true");
    let _ = writeln!(c, "listener {port} 127.0.0.1");
    let _ = writeln!(c, "cafile {}", ca.display());
    let _ = writeln!(c, "certfile {}", server.0.display());
    let _ = writeln!(c, "keyfile {}", server.1.display());
    let _ = writeln!(c, "require_certificate true");
    let _ = writeln!(c, "use_identity_as_username true");
    let _ = writeln!(c, "use_username_as_clientid true");
    let _ = writeln!(c, "allow_anonymous false");
    let acl = dir.join("acl");
    std::fs::write(
        &acl,
        sdwan_testsupport::mosquitto::MosquittoConfig::design_acl(PREFIX),
    )
    .unwrap();
    let _ = writeln!(c, "acl_file {}", acl.display());
    let path = dir.join("mosquitto.conf");
    std::fs::write(&path, c).unwrap();
    path
}

/// GET `path` from an HTTP server on loopback, within 3 s.
async fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    tokio::time::timeout(Duration::from_secs(3), http_get_unbounded(addr, path))
        .await
        .ok()
        .flatten()
}

async fn http_get_unbounded(addr: SocketAddr, path: &str) -> Option<String> {
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: bench\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .ok()?
        .ok()?;
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// The value of metric line `name` (exactly, labels included) on the master's /metrics.
async fn metric(addr: SocketAddr, name: &str) -> Option<f64> {
    let text = http_get(addr, "/metrics").await?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// An agent's memory from `/proc/PID/status`: `VmRSS` (KiB), then its peak (`VmHWM`), its
/// anonymous and file-backed parts (`RssAnon`, `RssFile`: the binary's pages are file) and
/// the thread count.
fn agent_memory(pid: u32) -> Option<String> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |key: &str| -> Option<u64> {
        s.lines()
            .find_map(|l| l.strip_prefix(key))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    Some(format!(
        "{} KiB (peak {}; anon {} + file {}; {} threads)",
        field("VmRSS:")?,
        field("VmHWM:")?,
        field("RssAnon:")?,
        field("RssFile:")?,
        field("Threads:")?
    ))
}

/// What the sessions received in a window that starts at `t0`.
#[derive(Debug)]
struct Window {
    t0: Instant,
    bytes0: u64,
    messages0: u64,
    held0: Vec<Held>,
    kinds0: [(u64, u64); KINDS.len()],
}

#[derive(Debug)]
struct Delivered {
    bytes: u64,
    messages: u64,
    /// Sessions whose held version changed (gateways, workers).
    changed: (usize, usize),
    /// Time from t0 until 99 % / all of the changed sessions held their final version.
    p99: Option<Duration>,
    all: Option<Duration>,
    /// Until the last message of the window.
    last: Duration,
    /// Bytes and messages by kind of topic ([`KINDS`]).
    kinds: [(u64, u64); KINDS.len()],
}

impl Delivered {
    /// "part 1.2 MB / 6 msgs, delta ..." for the kinds that had messages.
    fn by_kind(&self) -> String {
        let v: Vec<String> = KINDS
            .iter()
            .zip(&self.kinds)
            .filter(|(_, (_, m))| *m > 0)
            .map(|(k, (b, m))| format!("{k} {} / {m}", mb(*b)))
            .collect();
        if v.is_empty() {
            "-".into()
        } else {
            v.join(", ")
        }
    }
}

impl Window {
    fn open(load: &Load) -> Window {
        Window {
            t0: Instant::now(),
            bytes0: load.bytes.load(Ordering::Relaxed),
            messages0: load.messages.load(Ordering::Relaxed),
            held0: load.held(),
            kinds0: load.kinds(),
        }
    }

    /// Waits until a message arrived after t0 (at most `first`) and then none for `quiet`
    /// (at most `deadline` in all), then sums up.
    async fn settle(
        &self,
        load: &Load,
        quiet: Duration,
        first: Duration,
        deadline: Duration,
    ) -> Delivered {
        let end = self.t0 + deadline;
        loop {
            let now = Instant::now();
            let last = load.last_message();
            let got = load.messages.load(Ordering::Relaxed) > self.messages0;
            if (got && now.duration_since(last) >= quiet)
                || (!got && now > self.t0 + first)
                || now > end
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut times = Vec::new();
        let mut changed = (0, 0);
        for (s, h0) in load.sessions.iter().zip(&self.held0) {
            let st = s.state.lock().unwrap();
            if st.held != *h0 {
                if s.worker {
                    changed.1 += 1;
                } else {
                    changed.0 += 1;
                }
                if let Some(at) = st.changed_at {
                    times.push(at.saturating_duration_since(self.t0));
                }
            }
        }
        times.sort();
        let p99 = (!times.is_empty()).then(|| {
            times[((times.len() as f64 * 0.99).ceil() as usize).clamp(1, times.len()) - 1]
        });
        let got = load.messages.load(Ordering::Relaxed) > self.messages0;
        Delivered {
            bytes: load.bytes.load(Ordering::Relaxed) - self.bytes0,
            messages: load.messages.load(Ordering::Relaxed) - self.messages0,
            changed,
            p99,
            all: times.last().copied(),
            kinds: {
                let now = load.kinds();
                core::array::from_fn(|i| (now[i].0 - self.kinds0[i].0, now[i].1 - self.kinds0[i].1))
            },
            last: if got {
                load.last_message().saturating_duration_since(self.t0)
            } else {
                Duration::ZERO
            },
        }
    }
}

fn secs(d: Option<Duration>) -> String {
    d.map_or("-".into(), |d| format!("{:.2} s", d.as_secs_f64()))
}

fn mb(b: u64) -> String {
    if b >= 10_000_000 {
        format!("{:.0} MB", b as f64 / 1e6)
    } else {
        format!("{:.3} MB", b as f64 / 1e6)
    }
}

/// Runs `f` (blocking: dig, process start) without stalling the runtime's other tasks.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// The master, started as its own process through the relay.
fn start_master(a: &Args, dir: &Path, relay: SocketAddr, metrics: SocketAddr) -> ChildGuard {
    let (cert, key) = cert_of(dir, "master");
    let mut cmd = Command::new(&a.master);
    cmd.arg("run")
        .arg("--kubeconfig")
        .arg(dir.join("kubeconfig"))
        .arg("--topology")
        .arg(dir.join("topology.toml"))
        .arg("--broker")
        .arg(format!("mqtts://{relay}"))
        .arg("--ca")
        .arg(dir.join("scale-ca.pem"))
        .arg("--cert")
        .arg(cert)
        .arg("--key")
        .arg(key)
        .arg("--client-id")
        .arg("master")
        .arg("--topic-prefix")
        .arg(PREFIX)
        .arg("--metrics")
        .arg(metrics.to_string())
        .arg("--no-leader-elect");
    if std::env::var_os("RUST_LOG").is_none() {
        cmd.env("RUST_LOG", "warn");
    }
    ChildGuard::spawn("sdwan-discovery", &mut cmd).stop_signal(libc::SIGTERM)
}

/// Waits until the master's `/metrics` says `sdwan_ready 1`; the time it took from `t0`.
async fn wait_ready(metrics: SocketAddr, t0: Instant, deadline: Duration) -> Option<Duration> {
    while t0.elapsed() < deadline {
        if metric(metrics, "sdwan_ready").await == Some(1.0) {
            return Some(t0.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

struct Agents {
    agents: Vec<Agent>,
}

impl Agents {
    fn dig(&self, i: usize, args: &[&str]) -> sdwan_testsupport::DigAnswer {
        let server = self.agents[i].dns;
        blocking(|| sdwan_testsupport::dig(server, args))
    }
}

struct FirstPublish<'a> {
    a: &'a Args,
    sessions: usize,
    connected_in: Duration,
    ready: Option<Duration>,
    holding: usize,
    first: &'a Delivered,
    published: Option<f64>,
    first_read: u64,
    first_pub: Option<(u64, Duration)>,
    agent_rss: &'a [Option<String>],
    answers: &'a [String],
    total_srv: usize,
}

fn first_publish_table(f: &FirstPublish<'_>) -> String {
    let a = f.a;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| {} services x {} workers x {} gateways (+{} real agents), gateways on payload {:?}, seed {}, mosquitto max_queued_messages {} | |",
        a.services,
        a.nodes,
        a.gateways,
        a.agents,
        a.payload,
        a.seed,
        a.max_queued.map_or("1000 (default)".into(), |n| n.to_string())
    );
    let _ = writeln!(out, "|---|---|");
    let _ = writeln!(
        out,
        "| sessions connected (TLS, one certificate each) and subscribed | {} in {:.1} s |",
        f.sessions,
        f.connected_in.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "| first publish: master start to `sdwan_ready` | {} |",
        f.ready
            .map_or(format!("not within {} s", a.deadline.as_secs()), |d| secs(
                Some(d)
            ))
    );
    let _ = writeln!(
        out,
        "| first publish: sessions holding a version | {} of {} |",
        f.holding, f.sessions
    );
    let _ = writeln!(
        out,
        "| first publish: time until 99 % / all of them hold it | {} / {} |",
        secs(f.first.p99),
        secs(f.first.all)
    );
    let _ = writeln!(
        out,
        "| first publish: delivered to the sessions (egress), messages | {} ({} bytes), {} |",
        mb(f.first.bytes),
        f.first.bytes,
        f.first.messages
    );
    let _ = writeln!(
        out,
        "| first publish: by topic, bytes / messages | {} |",
        f.first.by_kind()
    );
    let _ = writeln!(
        out,
        "| first publish: published by the master (`sdwan_published_bytes_total`) | {} |",
        f.published.map_or("-".into(), |b| mb(b as u64))
    );
    let _ = writeln!(
        out,
        "| first publish: read by the master from the broker (TLS bytes) before it published / until ready (PUBACKs included) | {} / {} |",
        f.first_pub.map_or("-".into(), |p| mb(p.0)),
        mb(f.first_read)
    );
    let _ = writeln!(
        out,
        "| first publish: master start to its first publish | {} |",
        secs(f.first_pub.map(|p| p.1))
    );
    let _ = writeln!(
        out,
        "| agent RSS with the full zone (VmRSS, peak VmHWM, RssAnon + RssFile, threads; {} agents) | {} |",
        a.agents,
        f.agent_rss
            .iter()
            .map(|r| r.as_deref().unwrap_or("-"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for line in f.answers {
        let _ = writeln!(out, "{line}");
    }
    let _ = writeln!(
        out,
        "| SRV sets in the cluster (service ports) | {} |",
        f.total_srv
    );
    out
}

async fn run(a: Args) {
    let fds = raise_fd_limit();
    let sessions = a.gateways + a.nodes;
    if fds < sessions as u64 + 200 {
        fail(&format!(
            "{sessions} sessions need more file descriptors than the limit {fds}"
        ));
    }
    let mut out = String::new();
    let dir = TempDir::new("bench-scale");
    let t = Instant::now();
    let cluster_t = Instant::now();
    let mut cluster = Cluster::new(a.services, a.nodes, a.gateways, a.agents, a.seed);
    eprintln!("cluster and topology made in {:?}", cluster_t.elapsed());

    // PKI: one client certificate per session, as each agent has its own.
    let ca = Ca::new(dir.path(), "scale");
    let server = ca.server("broker");
    ca.client("master");
    let workers = cluster.workers();
    for n in cluster
        .gateways
        .iter()
        .chain(&cluster.agents)
        .chain(&workers)
    {
        ca.client(n);
    }
    eprintln!(
        "{} certificates in {:?}",
        sessions + a.agents + 1,
        t.elapsed()
    );

    // The broker.
    let port = sdwan_testsupport::free_port();
    let conf = mosquitto_conf(
        dir.path(),
        port,
        ca.cert(),
        (&server.cert, &server.key),
        a.max_queued,
    );
    let mosquitto = ChildGuard::spawn(
        "mosquitto",
        Command::new(sdwan_testsupport::mosquitto::MOSQUITTO)
            .arg("-c")
            .arg(&conf),
    )
    .stop_signal(libc::SIGTERM);
    let broker: SocketAddr = ([127, 0, 0, 1], port).into();
    sdwan_testsupport::wait_until(Duration::from_secs(10), "mosquitto listens", || {
        std::net::TcpStream::connect(broker).is_ok()
    });
    let broker_url = format!("mqtts://{broker}");

    // The API server with the cluster.
    let api = FakeApiServer::start().await.expect("fake API server");
    cluster.load(&api);
    std::fs::write(dir.join("kubeconfig"), api.kubeconfig_yaml()).unwrap();
    std::fs::write(dir.join("topology.toml"), &cluster.topology).unwrap();
    eprintln!("API server loaded ({} objects)", a.nodes + 2 * a.services);

    // Real agents.
    let agent_bin = a.agent.display().to_string();
    let agents = Agents {
        agents: cluster
            .agents
            .iter()
            .map(|id| {
                let (cert, key) = cert_of(dir.path(), id);
                let args: Vec<String> = vec![
                    "--broker".into(),
                    broker_url.clone(),
                    "--ca".into(),
                    ca.cert().display().to_string(),
                    "--cert".into(),
                    cert.display().to_string(),
                    "--key".into(),
                    key.display().to_string(),
                    "--gateway-id".into(),
                    id.clone(),
                    "--topic-prefix".into(),
                    PREFIX.into(),
                    // The synthetic cluster's workers are not on loopback: no probes to them.
                    "--probe".into(),
                    "off".into(),
                ];
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                blocking(|| Agent::start(&agent_bin, &args))
            })
            .collect(),
    };

    // The sessions.
    let t = Instant::now();
    let connect = loadgen::Connect {
        broker: broker_url.clone(),
        ca: ca.cert().to_path_buf(),
        cert_of,
        pki_dir: dir.path().to_path_buf(),
        prefix: PREFIX.into(),
        payload: a.payload,
    };
    let load = loadgen::start(&connect, &cluster.gateways, &workers).await;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let (_, subscribed) = load.holding();
        if subscribed == sessions {
            break;
        }
        if Instant::now() > deadline {
            fail(&format!(
                "only {subscribed} of {sessions} sessions subscribed within 300 s; broker log:\n{}",
                std::fs::read_to_string(dir.join("mosquitto.log")).unwrap_or_default()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let connected_in = t.elapsed();
    eprintln!("{sessions} sessions connected and subscribed in {connected_in:?}");

    // The master, through the counting relay.
    let (relay_addr, master_read) = relay::start(broker).await;
    let metrics_addr: SocketAddr = ([127, 0, 0, 1], sdwan_testsupport::free_port()).into();
    let w = Window::open(&load);
    master_read.reset();
    let mut master = start_master(&a, dir.path(), relay_addr, metrics_addr);
    let progress = {
        let load = load.clone();
        tokio::spawn(async move {
            let t0 = Instant::now();
            loop {
                tokio::time::sleep(Duration::from_secs(10)).await;
                let (holding, _) = load.holding();
                eprintln!(
                    "{:>4} s: {holding} sessions hold a version; delivered {} in {} messages",
                    t0.elapsed().as_secs(),
                    mb(load.bytes.load(Ordering::Relaxed)),
                    load.messages.load(Ordering::Relaxed)
                );
            }
        })
    };
    let ready = wait_ready(metrics_addr, w.t0, a.deadline).await;
    eprintln!("master ready: {ready:?}");
    // The first publish is delivered when every session holds a version (or nothing came
    // for a while).
    let hold_deadline = w.t0 + a.deadline;
    loop {
        let (holding, _) = load.holding();
        if holding == sessions
            || Instant::now() > hold_deadline
            || load.last_message().elapsed() > Duration::from_secs(20)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let first = w
        .settle(&load, a.quiet, Duration::from_secs(10), a.deadline)
        .await;
    eprintln!("first publish settled");
    let (holding, _) = load.holding();
    let published = metric(metrics_addr, "sdwan_published_bytes_total").await;
    let first_read = master_read.down.load(Ordering::Relaxed);
    let first_pub = master_read.first_publish();

    // The agents hold the full zone: answers and memory.
    let agent_rss: Vec<Option<String>> = agents
        .agents
        .iter()
        .map(|ag| agent_memory(ag.child.id()))
        .collect();
    let ds = cluster.hosts.iter().position(|h| h.len() == a.nodes);
    let mut answers = Vec::new();
    if let Some(ds) = ds {
        let (ns, name, _) = &cluster.services[ds];
        let q = format!("_http._tcp.{name}.{ns}.k8s.internal");
        let r = agents.dig(0, &["+tcp", &q, "SRV"]);
        answers.push(format!(
            "| `dig +tcp {q} SRV` (a DaemonSet on {} workers) | {} {} targets |",
            a.nodes,
            r.status.as_deref().unwrap_or("no answer"),
            r.answer_data("SRV").len()
        ));
    }
    let total_srv: usize = cluster.services.iter().map(|s| s.2).sum();
    eprintln!("agents checked");

    if std::env::var_os("SCALE_TRACE").is_some() {
        let mut v: Vec<(u64, String)> = load
            .sessions
            .iter()
            .map(|s| (s.state.lock().unwrap().messages, s.name.clone()))
            .collect();
        v.sort();
        eprintln!("most messages: {:?}", &v[v.len().saturating_sub(5)..]);
    }
    let first_table = first_publish_table(&FirstPublish {
        a: &a,
        sessions,
        connected_in,
        ready,
        holding,
        first: &first,
        published,
        first_read,
        first_pub,
        agent_rss: &agent_rss,
        answers: &answers,
        total_srv,
    });
    if ready.is_none() {
        progress.abort();
        let log = master.stderr();
        let last: Vec<&str> = log.lines().rev().take(3).collect();
        println!("{first_table}");
        println!(
            "The master was not ready within {} s; nothing else measured. Its last log lines:\n",
            a.deadline.as_secs()
        );
        for l in last.iter().rev() {
            println!("    {l}");
        }
        return;
    }

    // Changes.
    let mut changes = Vec::new();
    // 1. Endpoints move.
    let s = cluster.pick_small_service();
    let w = Window::open(&load);
    let new_hosts = cluster.move_endpoints(&api, s);
    let (ns, name, _) = cluster.services[s].clone();
    let qname = format!("{name}.{ns}.k8s.internal");
    let want: Vec<String> = new_hosts.iter().map(|&h| worker_v4(h)).collect();
    let mut agent_time = None;
    let agent_deadline = Instant::now() + CHANGE_FIRST;
    while Instant::now() < agent_deadline {
        let ok = (0..agents.agents.len()).all(|i| {
            agents
                .dig(i, &[&qname, "A"])
                .answer_data("A")
                .iter()
                .any(|x| want.contains(x))
        });
        if ok {
            agent_time = Some(w.t0.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let d = w
        .settle(&load, a.quiet, CHANGE_FIRST, CHANGE_DEADLINE)
        .await;
    changes.push((
        format!(
            "endpoints move ({ns}/{name}: {} endpoint(s) to other workers)",
            new_hosts.len()
        ),
        d,
        format!("{} (`dig {qname} A` gives a new worker)", secs(agent_time)),
    ));
    // 2. A replica is added.
    let s = cluster.pick_small_service();
    let w = Window::open(&load);
    let added = cluster.add_replica(&api, s);
    let (ns, name, _) = cluster.services[s].clone();
    let d = w
        .settle(&load, a.quiet, CHANGE_FIRST, CHANGE_DEADLINE)
        .await;
    let q = format!("_http._tcp.{name}.{ns}.k8s.internal");
    let r = agents.dig(0, &["+tcp", &q, "SRV"]);
    let has = r
        .answer_data("SRV")
        .iter()
        .any(|x| x.contains(&format!("{}.k8s.internal", worker(added))));
    changes.push((
        format!(
            "a replica is added ({ns}/{name}: {} endpoints)",
            cluster.hosts[s].len()
        ),
        d,
        format!(
            "`dig +tcp {q} SRV` lists {}: {}",
            worker(added),
            if has { "yes" } else { "no" }
        ),
    ));
    // 3. A node goes NotReady.
    let n = cluster.rng.below(a.nodes);
    let w = Window::open(&load);
    cluster.not_ready(&api, n);
    let d = w
        .settle(&load, a.quiet, CHANGE_FIRST, CHANGE_DEADLINE)
        .await;
    let hosted = cluster.hosts.iter().filter(|h| h.contains(&n)).count();
    let r = agents.dig(0, &[&format!("{}.k8s.internal", worker(n)), "A"]);
    changes.push((
        format!(
            "a node goes NotReady ({}, hosting {hosted} services)",
            worker(n)
        ),
        d,
        format!(
            "`dig {}.k8s.internal A`: {}",
            worker(n),
            r.status.as_deref().unwrap_or("no answer")
        ),
    ));

    // Master restart.
    let first_log = master.stderr();
    master.stop();
    drop(master);
    let w = Window::open(&load);
    master_read.reset();
    let master = start_master(&a, dir.path(), relay_addr, metrics_addr);
    let restart_ready = wait_ready(metrics_addr, w.t0, Duration::from_secs(600)).await;
    let restart_read = master_read.down.load(Ordering::Relaxed);
    let restart_pub = master_read.first_publish();
    let restart = w
        .settle(&load, a.quiet, Duration::from_secs(10), CHANGE_DEADLINE * 2)
        .await;
    let restart_read_settled = master_read.down.load(Ordering::Relaxed);

    let master_log = format!("{first_log}{}", master.stderr());
    let warnings: Vec<&str> = master_log
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .collect();
    let errors: (u64, u64) = load.sessions.iter().fold((0, 0), |acc, s| {
        let st = s.state.lock().unwrap();
        (acc.0 + st.decode_errors, acc.1 + st.connection_errors)
    });
    let sample_error = load
        .sessions
        .iter()
        .find_map(|s| s.state.lock().unwrap().last_error.clone());

    // Tables.
    progress.abort();
    let _ = writeln!(out, "{first_table}");
    let _ = writeln!(
        out,
        "| change | egress to all sessions | messages | by topic: bytes / messages | sessions changed (gateways / workers) | 99 % / all of them hold it | last message | real agents |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
    for (what, d, agent) in &changes {
        let _ = writeln!(
            out,
            "| {what} | {} ({} bytes) | {} | {} | {} / {} | {} / {} | {} | {agent} |",
            mb(d.bytes),
            d.bytes,
            d.messages,
            d.by_kind(),
            d.changed.0,
            d.changed.1,
            secs(d.p99),
            secs(d.all),
            secs(Some(d.last))
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "| master restart (SIGTERM, start again, same cluster) | |"
    );
    let _ = writeln!(out, "|---|---|");
    let _ = writeln!(
        out,
        "| start to its first publish (it had sent {} KiB) | {} |",
        relay::PUBLISHING / 1024,
        secs(restart_pub.map(|p| p.1))
    );
    let _ = writeln!(
        out,
        "| read from the broker before its first publish (TLS bytes through the relay) | {} |",
        restart_pub.map_or("-".into(), |p| format!("{} ({} bytes)", mb(p.0), p.0))
    );
    let _ = writeln!(
        out,
        "| start to `sdwan_ready` (plan published), read until then (PUBACKs included) | {}, {} |",
        secs(restart_ready),
        mb(restart_read)
    );
    let _ = writeln!(
        out,
        "| read from the broker until settled | {} |",
        mb(restart_read_settled)
    );
    let _ = writeln!(
        out,
        "| delivered to the sessions after the restart, messages ({}), sessions changed | {}, {}, {} / {} |",
        restart.by_kind(),
        mb(restart.bytes),
        restart.messages,
        restart.changed.0,
        restart.changed.1
    );
    let _ = writeln!(
        out,
        "| session decode errors / connection errors | {} / {}{} |",
        errors.0,
        errors.1,
        sample_error.map_or(String::new(), |e| format!(" (e.g. {e})"))
    );
    // Distinct warnings (digits ignored, so "size '4091746'" and "size '4093022'" are one).
    let mut kinds: Vec<(String, usize, &str)> = Vec::new();
    for w in &warnings {
        let key: String = w.chars().filter(|c| !c.is_ascii_digit()).collect();
        match kinds.iter_mut().find(|k| k.0 == key) {
            Some(k) => k.1 += 1,
            None => kinds.push((key, 1, w)),
        }
    }
    let _ = writeln!(
        out,
        "| the master's warnings and errors (both runs) | {} |",
        if kinds.is_empty() {
            "none".to_string()
        } else {
            kinds
                .iter()
                .map(|(_, n, w)| {
                    let w: String = w.replace('|', "/").chars().take(300).collect();
                    format!("{n} x `{w}`")
                })
                .collect::<Vec<_>>()
                .join("; ")
        }
    );
    println!("{out}");
    drop(master);
    drop(agents);
    drop(mosquitto);
}
