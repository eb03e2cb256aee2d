//! `sdwan-testbed measure`: the convergence measurement of bench/convergence (run by
//! `bench/convergence/run.sh`).
//!
//! For each run a service is created (EndpointSlice, then Service) in the fake API server,
//! from inside the central-office namespace, and the time is taken from just before the first
//! of those requests to
//!   - the first DNS answer with the expected address on each measured host (UDP queries to
//!     the host's resolver, its gateway agent, on an absolute 1 ms schedule), and
//!   - then the first successful HTTP GET from that host to the answered address and the
//!     NodePort (a fresh TCP connection each try) whose body names the service;
//!
//! then the service is deleted (Service, then EndpointSlice) and the time to the first
//! NXDOMAIN is taken the same way. Each create and delete starts after `QUIET_MS` (env,
//! default 100) without a change, longer than the master's `--debounce`, so that the changes
//! are isolated as issue 11 (item 9) measures them (`QUIET_MS=0` measures coalescing).
//!
//! With PROXY=1 (nginx and the worker agents run), two more times: to the first HTTP GET
//! through nginx on the node (`http://<service>.bench.<suffix>/bench/<service>/`, port 80)
//! that reaches the backend after a create, and to the first that nginx answers with its "No
//! service at this path" 404 after a delete.
//!
//! Each measured host is followed by its own OS thread, with its own UDP socket opened inside
//! the host's network namespace (setns(2)), so that one host's HTTP checks never delay another
//! host's polling. Query k of a wait is due k ms after the wait began, whenever the answers
//! come: a late or lost answer does not move the schedule (`schedule::next_slot`); answers are
//! matched by id and count for `QUERY_TIMEOUT`. The time of the first right answer is when the
//! thread received it. The API calls go from the main thread over one kept-alive HTTP/1.1
//! connection. At the end, each host's punctuality (gaps between consecutive queries, how late
//! each query went out after its slot) goes to stderr.
//!
//! CSV rows (appended to OUT.csv at the end): `workers,run,op,host,metric,ms` with op
//! `create|delete` and metric `dns|http-nodeport|http-nginx`; per run one stderr line
//! `run N: METRIC HOST MS ...` in the order reached.
//!
//! With `MEASURE_TRACE=FILE` (env), one more row per DNS wait is appended to FILE, times in ms
//! since t0: `workers,run,op,host,queries,first_sent,last_wrong_sent,last_wrong_received,
//! right_sent,received,max_late,t0_unix`: the resolver answered the last wrong answer's query (sent
//! at `last_wrong_sent`; empty when no answer was wrong) before it had the change, and the
//! right one (sent at `right_sent`) after; `received - right_sent` is that query's round trip,
//! `max_late` the most any query of the wait went out after its slot, `t0_unix` the wall-clock
//! time of t0 (seconds since the epoch, to line the waits up with other samples).

pub mod dns;
pub mod http;
pub mod schedule;

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::process::ExitCode;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use schedule::{match_answer, next_slot, Punctuality};

pub const USAGE: &str =
    "sdwan-testbed measure API_URL NS_PREFIX RUNS WORKERS PROXY(0|1) OUT.csv HOST:GATEWAY_IP...";

const SUFFIX: &str = "k8s.internal";
const NODEPORT: u16 = 30090;
/// The polling period of DNS queries and HTTP checks.
const PERIOD: Duration = Duration::from_millis(1);
/// An answer that comes later than this after its query is taken as lost.
const QUERY_TIMEOUT: Duration = Duration::from_millis(200);
/// One HTTP check's connect and read timeout.
const HTTP_TIMEOUT: Duration = Duration::from_millis(500);
/// How long a host may take to see one change before the measurement fails.
const WAIT_LIMIT: Duration = Duration::from_secs(10);

#[derive(Debug)]
struct Args {
    api: SocketAddr,
    prefix: String,
    runs: u32,
    workers: u32,
    proxy: bool,
    out: String,
    hosts: Vec<(String, Ipv4Addr)>,
}

fn parse_args(args: &[String]) -> Result<Args, String> {
    let [api, prefix, runs, workers, proxy, out, hosts @ ..] = args else {
        return Err("too few arguments".into());
    };
    if hosts.is_empty() {
        return Err("no HOST:GATEWAY_IP".into());
    }
    let api = api
        .strip_prefix("http://")
        .unwrap_or(api)
        .trim_end_matches('/')
        .parse()
        .map_err(|e| format!("API_URL {api:?}: {e}"))?;
    let hosts = hosts
        .iter()
        .map(|h| {
            let (name, ip) = h.split_once(':').ok_or(format!("bad host {h:?}"))?;
            Ok((
                name.to_string(),
                ip.parse().map_err(|e| format!("{h:?}: {e}"))?,
            ))
        })
        .collect::<Result<_, String>>()?;
    Ok(Args {
        api,
        prefix: prefix.clone(),
        runs: runs.parse().map_err(|e| format!("RUNS {runs:?}: {e}"))?,
        workers: workers
            .parse()
            .map_err(|e| format!("WORKERS {workers:?}: {e}"))?,
        proxy: proxy == "1",
        out: out.clone(),
        hosts,
    })
}

/// `sdwan-testbed measure ARGS...` (the arguments after `measure`).
pub fn main(args: &[String]) -> ExitCode {
    let args = match parse_args(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("sdwan-testbed measure: {e}\nusage: {USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sdwan-testbed measure: {e}");
            ExitCode::from(1)
        }
    }
}

/// Enters the network namespace `/run/netns/NAME`, for the calling thread only.
#[allow(unsafe_code)]
fn enter_netns(name: &str) -> io::Result<()> {
    let path = format!("/run/netns/{name}");
    let f = File::open(&path).map_err(|e| io::Error::new(e.kind(), format!("{path}: {e}")))?;
    // SAFETY: setns(2) with a file descriptor that stays open for the call; it changes only
    // the network namespace of the calling thread.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("setns {name}: {e}")));
    }
    Ok(())
}

/// Asks the kernel to fire the calling thread's timers (ppoll, nanosleep) on time instead of
/// up to its default 50 us slack later: the polling grid is 1 ms. Scheduling priority is left
/// alone.
#[allow(unsafe_code)]
fn tight_timers() -> io::Result<()> {
    // SAFETY: prctl(2) PR_SET_TIMERSLACK takes a plain integer; it affects only this thread.
    let rc = unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Waits until `fd` is readable or `timeout` passed (ppoll(2): nanosecond timeout, unlike
/// SO_RCVTIMEO, which the kernel rounds to its tick).
#[allow(unsafe_code)]
fn wait_readable(fd: RawFd, timeout: Duration) -> io::Result<bool> {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ts = libc::timespec {
        tv_sec: timeout.as_secs().try_into().unwrap_or(libc::time_t::MAX),
        tv_nsec: timeout.subsec_nanos().into(),
    };
    // SAFETY: one valid pollfd, a valid timespec, no signal mask; all outlive the call.
    let rc = unsafe { libc::ppoll(&mut p, 1, &ts, std::ptr::null()) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::Interrupted {
            Ok(false)
        } else {
            Err(e)
        };
    }
    Ok(rc > 0)
}

fn nanos(d: Duration) -> u64 {
    d.as_nanos().try_into().unwrap_or(u64::MAX)
}

/// An HTTP GET a host makes once it has the right DNS answer.
#[derive(Debug, Clone)]
struct Check {
    metric: &'static str,
    addr: SocketAddrV4,
    path: String,
    host: String,
    want: &'static str,
}

/// One change to follow on one host.
#[derive(Debug)]
struct Job {
    t0: Instant,
    end: Instant,
    fqdn: String,
    want: dns::Want,
    checks: Vec<Check>,
}

/// What a host reached in one job: (metric, ms since t0), in order, and how its DNS wait went.
type Reached = Result<(Vec<(&'static str, f64)>, DnsTrace), String>;

/// Every host's outcome of one job: (host, metric, ms) by time, and (host, DNS wait).
type Collected = (Vec<(String, &'static str, f64)>, Vec<(String, DnsTrace)>);

/// How one DNS wait went, in ms since the job's t0 (the `MEASURE_TRACE` row).
#[derive(Debug, Clone, Copy, Default)]
struct DnsTrace {
    queries: usize,
    first_sent: f64,
    /// The query whose answer was the last wrong one received: when it went out, when its
    /// answer came.
    last_wrong: Option<(f64, f64)>,
    right_sent: f64,
    received: f64,
    /// The latest any query of this wait went out after its slot.
    max_late: f64,
}

/// One measured host: its thread's socket and bookkeeping.
struct Follower {
    name: String,
    sock: UdpSocket,
    next_id: u16,
    query: Vec<u8>,
    buf: Vec<u8>,
    punctuality: Punctuality,
}

impl Follower {
    fn open(ns: &str, name: &str, resolver: Ipv4Addr) -> io::Result<Follower> {
        enter_netns(ns)?;
        tight_timers()?;
        let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
        sock.connect((resolver, 53))?;
        sock.set_nonblocking(true)?;
        Ok(Follower {
            name: name.to_string(),
            sock,
            next_id: 1,
            query: Vec::with_capacity(512),
            buf: vec![0; 1500],
            punctuality: Punctuality::default(),
        })
    }

    fn follow(&mut self, job: &Job) -> Reached {
        let mut reached = Vec::new();
        let trace = self.wait_dns(job)?;
        reached.push(("dns", trace.received));
        for c in &job.checks {
            let at = self.wait_http(job, c)?;
            reached.push((c.metric, ms_since(job.t0, at)));
        }
        Ok((reached, trace))
    }

    /// Polls the resolver on the 1 ms grid until an answer satisfies `job.want`; returns when
    /// that answer was received (`DnsTrace::received`) and how the wait went.
    fn wait_dns(&mut self, job: &Job) -> Result<DnsTrace, String> {
        let host = &self.name;
        dns::build_query(0, &job.fqdn, &mut self.query).map_err(|e| format!("{host}: {e:?}"))?;
        let start = Instant::now();
        let first = self.next_id;
        let mut sent: Vec<u64> = Vec::with_capacity(64);
        let mut due = 0;
        let period = nanos(PERIOD);
        let timeout = nanos(QUERY_TIMEOUT);
        self.punctuality.waits += 1;
        let base = ms_since(job.t0, start);
        let ms = |ns: u64| base + ns as f64 / 1e6;
        let mut trace = DnsTrace::default();
        loop {
            let now = nanos(start.elapsed());
            if now >= due {
                let id = first.wrapping_add(sent.len() as u16);
                dns::set_id(&mut self.query, id);
                // A failed send (ICMP unreachable reported on this socket) is a lost query.
                let _ = self.sock.send(&self.query);
                self.punctuality.sent(due, now, sent.last().copied());
                trace.max_late = trace.max_late.max(now.saturating_sub(due) as f64 / 1e6);
                sent.push(now);
                let (next, skipped) = next_slot(due, now, period);
                self.punctuality.skipped += skipped;
                due = next;
                self.next_id = first.wrapping_add(sent.len() as u16);
            }
            if Instant::now() > job.end {
                return Err(format!(
                    "{host}: no right DNS answer ({} queries)",
                    sent.len()
                ));
            }
            let wait = Duration::from_nanos(due.saturating_sub(nanos(start.elapsed())));
            if !wait.is_zero() {
                wait_readable(self.sock.as_raw_fd(), wait).map_err(|e| format!("{host}: {e}"))?;
            }
            loop {
                let n = match self.sock.recv(&mut self.buf) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(format!("{host}: recv: {e}")),
                };
                let at = Instant::now();
                let Ok(r) = dns::parse(&self.buf[..n]) else {
                    continue;
                };
                let at_ns = nanos(at - start);
                let Some(k) = match_answer(first, &sent, r.id, at_ns, timeout) else {
                    continue;
                };
                if !r.answers(&self.query) {
                    continue;
                }
                if job.want.holds(&r) {
                    trace.queries = sent.len();
                    trace.first_sent = ms(sent[0]);
                    trace.right_sent = ms(sent[k]);
                    trace.received = ms(at_ns);
                    return Ok(trace);
                }
                trace.last_wrong = Some((ms(sent[k]), ms(at_ns)));
            }
        }
    }

    /// Tries `c` on the 1 ms grid (a try that takes longer skips the slots it overran) until
    /// it succeeds; returns when the successful response was read.
    fn wait_http(&mut self, job: &Job, c: &Check) -> Result<Instant, String> {
        let start = Instant::now();
        let mut due = 0;
        loop {
            let now = nanos(start.elapsed());
            if now >= due {
                if http_check(c) {
                    return Ok(Instant::now());
                }
                due = next_slot(due, now, nanos(PERIOD)).0;
            }
            if Instant::now() > job.end {
                return Err(format!("{}: {} pending ({c:?})", self.name, c.metric));
            }
            thread::sleep(Duration::from_nanos(
                due.saturating_sub(nanos(start.elapsed())),
            ));
        }
    }
}

fn ms_since(t0: Instant, at: Instant) -> f64 {
    at.saturating_duration_since(t0).as_secs_f64() * 1e3
}

/// One GET over a fresh connection: whether the response's body contains `c.want`.
fn http_check(c: &Check) -> bool {
    let attempt = || -> io::Result<bool> {
        let mut s = TcpStream::connect_timeout(&SocketAddr::V4(c.addr), HTTP_TIMEOUT)?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(HTTP_TIMEOUT))?;
        s.set_write_timeout(Some(HTTP_TIMEOUT))?;
        let req = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            c.path, c.host
        );
        s.write_all(req.as_bytes())?;
        let r = read_response(&mut s, &mut Vec::new())?;
        Ok(http::contains(&r.body, c.want.as_bytes()))
    };
    attempt().unwrap_or(false)
}

/// Reads one response from `s`; `buf` holds bytes already read (and keeps those after it).
fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<http::Response> {
    let mut chunk = [0u8; 4096];
    let mut eof = false;
    loop {
        match http::parse_response(buf, eof) {
            Ok(Some(r)) => {
                buf.drain(..r.len);
                return Ok(r);
            }
            Ok(None) => {}
            Err(e) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("HTTP response: {e:?}"),
                ))
            }
        }
        if buf.len() > 1 << 20 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "HTTP response over 1 MiB",
            ));
        }
        let n = s.read(&mut chunk)?;
        eof = n == 0;
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The fake API server, over one kept-alive connection.
struct Api {
    stream: TcpStream,
    host: String,
    buf: Vec<u8>,
}

impl Api {
    fn connect(addr: SocketAddr) -> io::Result<Api> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.set_write_timeout(Some(Duration::from_secs(5)))?;
        Ok(Api {
            stream,
            host: addr.to_string(),
            buf: Vec::new(),
        })
    }

    fn call(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<(), String> {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let ctype = if body.is_empty() {
            ""
        } else {
            "Content-Type: application/json\r\n"
        };
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\n{ctype}Content-Length: {}\r\n\r\n{body}",
            self.host,
            body.len()
        );
        let r = self
            .stream
            .write_all(req.as_bytes())
            .and_then(|()| read_response(&mut self.stream, &mut self.buf))
            .map_err(|e| format!("{method} {path}: {e}"))?;
        if r.status >= 300 {
            return Err(format!("{method} {path}: HTTP {}", r.status));
        }
        Ok(())
    }
}

fn service(name: &str, port: u16) -> serde_json::Value {
    serde_json::json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "bench"},
        "spec": {"type": "NodePort", "clusterIP": "10.96.0.10",
                 "ports": [{"name": "http", "protocol": "TCP", "port": 80,
                            "targetPort": 8080, "nodePort": port}]}})
}

fn endpoint_slice(name: &str, node: &str) -> serde_json::Value {
    serde_json::json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("{name}-abcde"), "namespace": "bench",
                     "labels": {"kubernetes.io/service-name": name}},
        "addressType": "IPv4", "ports": [{"name": "http", "protocol": "TCP", "port": 8080}],
        "endpoints": [{"addresses": ["10.244.0.5"], "nodeName": node,
                       "conditions": {"ready": true, "serving": true, "terminating": false}}]})
}

/// The threads following the hosts.
struct Hosts {
    jobs: Vec<mpsc::Sender<Job>>,
    done: mpsc::Receiver<(usize, Reached)>,
    threads: Vec<thread::JoinHandle<Punctuality>>,
    names: Vec<String>,
}

impl Hosts {
    fn start(prefix: &str, hosts: &[(String, Ipv4Addr)]) -> Result<Hosts, String> {
        let (done_tx, done) = mpsc::channel();
        let mut me = Hosts {
            jobs: vec![],
            done,
            threads: vec![],
            names: vec![],
        };
        let (ready_tx, ready) = mpsc::channel();
        for (i, (name, resolver)) in hosts.iter().enumerate() {
            let (job_tx, jobs) = mpsc::channel::<Job>();
            let ns = format!("{prefix}-{name}");
            let (name, resolver) = (name.clone(), *resolver);
            let (done_tx, ready_tx) = (done_tx.clone(), ready_tx.clone());
            let t = thread::Builder::new()
                .name(format!("follow-{name}"))
                .spawn(move || {
                    let mut f = match Follower::open(&ns, &name, resolver) {
                        Ok(f) => {
                            let _ = ready_tx.send(Ok(()));
                            f
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(format!("{name}: {e}")));
                            return Punctuality::default();
                        }
                    };
                    for job in jobs {
                        if done_tx.send((i, f.follow(&job))).is_err() {
                            break;
                        }
                    }
                    f.punctuality
                })
                .map_err(|e| format!("cannot start a thread: {e}"))?;
            me.jobs.push(job_tx);
            me.threads.push(t);
            me.names.push(hosts[i].0.clone());
        }
        for _ in hosts {
            ready
                .recv()
                .map_err(|_| "a host thread ended".to_string())??;
        }
        Ok(me)
    }

    /// Hands every host the same job.
    fn follow(&self, job: &Job) -> Result<(), String> {
        for tx in &self.jobs {
            let j = Job {
                t0: job.t0,
                end: job.end,
                fqdn: job.fqdn.clone(),
                want: job.want,
                checks: job.checks.clone(),
            };
            tx.send(j).map_err(|_| "a host thread ended".to_string())?;
        }
        Ok(())
    }

    /// Every host's outcome of the current job: (host, metric, ms) by time.
    fn collect(&self, fqdn: &str) -> Result<Collected, String> {
        let mut got = vec![];
        let mut errors = vec![];
        let mut traces = vec![];
        for _ in &self.jobs {
            match self.done.recv() {
                Ok((i, Ok((r, trace)))) => {
                    traces.push((self.names[i].clone(), trace));
                    got.extend(r.into_iter().map(|(m, ms)| (self.names[i].clone(), m, ms)))
                }
                Ok((_, Err(e))) => errors.push(e),
                Err(_) => errors.push("a host thread ended".to_string()),
            }
        }
        if !errors.is_empty() {
            return Err(format!("{fqdn}: not converged: {}", errors.join("; ")));
        }
        got.sort_by(|a, b| a.2.total_cmp(&b.2));
        Ok((got, traces))
    }

    fn finish(self) -> Vec<(String, Punctuality)> {
        drop(self.jobs);
        self.names
            .into_iter()
            .zip(self.threads)
            .map(|(n, t)| (n, t.join().unwrap_or_default()))
            .collect()
    }
}

fn run(a: &Args) -> Result<(), String> {
    let hosts = Hosts::start(&a.prefix, &a.hosts)?;
    let co = format!("{}-co", a.prefix);
    enter_netns(&co).map_err(|e| e.to_string())?;
    let mut api = Api::connect(a.api).map_err(|e| format!("API {}: {e}", a.api))?;
    let node = format!("w{}", a.workers);
    let node_ip: Ipv4Addr = format!("10.77.0.1{}", a.workers)
        .parse()
        .map_err(|e| format!("WORKERS {}: {e}", a.workers))?;
    let quiet = Duration::from_millis(
        std::env::var("QUIET_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(100),
    );
    let mut rows = String::new();
    let mut trace_rows = String::new();
    for run in 0..a.runs {
        let name = format!("svc{run}");
        let fqdn = format!("{name}.bench.{SUFFIX}");
        let check = |metric, port, path: String, want| Check {
            metric,
            addr: SocketAddrV4::new(node_ip, port),
            path,
            host: fqdn.clone(),
            want,
        };
        let mut up = vec![check("http-nodeport", NODEPORT, "/".into(), "bench on")];
        let mut gone = vec![];
        if a.proxy {
            let path = format!("/bench/{name}/");
            up.push(check("http-nginx", 80, path.clone(), "bench on"));
            gone.push(check("http-nginx", 80, path, "No service at this path"));
        }
        let mut line = format!("run {run}:");
        for (op, want, checks) in [
            ("create", dns::Want::Addr(node_ip), up),
            ("delete", dns::Want::NxDomain, gone),
        ] {
            thread::sleep(quiet);
            let t0 = Instant::now();
            let t0_unix = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            hosts.follow(&Job {
                t0,
                end: t0 + WAIT_LIMIT,
                fqdn: fqdn.clone(),
                want,
                checks,
            })?;
            if op == "create" {
                let slices = "/apis/discovery.k8s.io/v1/namespaces/bench/endpointslices";
                api.call("POST", slices, Some(&endpoint_slice(&name, &node)))?;
                api.call(
                    "POST",
                    "/api/v1/namespaces/bench/services",
                    Some(&service(&name, NODEPORT)),
                )?;
            } else {
                api.call(
                    "DELETE",
                    &format!("/api/v1/namespaces/bench/services/{name}"),
                    None,
                )?;
                api.call(
                    "DELETE",
                    &format!(
                        "/apis/discovery.k8s.io/v1/namespaces/bench/endpointslices/{name}-abcde"
                    ),
                    None,
                )?;
            }
            let (got, traces) = hosts.collect(&fqdn)?;
            for (host, metric, ms) in got {
                rows += &format!("{},{run},{op},{host},{metric},{ms:.3}\n", a.workers);
                line += &format!(" {metric} {host} {ms:.1}");
            }
            for (host, t) in traces {
                let (wrong_sent, wrong_recv) = t
                    .last_wrong
                    .map_or((String::new(), String::new()), |(s, r)| {
                        (format!("{s:.3}"), format!("{r:.3}"))
                    });
                trace_rows += &format!(
                    "{},{run},{op},{host},{},{:.3},{wrong_sent},{wrong_recv},{:.3},{:.3},{:.3},{t0_unix:.6}\n",
                    a.workers, t.queries, t.first_sent, t.right_sent, t.received, t.max_late
                );
            }
        }
        eprintln!("{line}");
    }
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&a.out)
        .map_err(|e| format!("{}: {e}", a.out))?;
    out.write_all(rows.as_bytes())
        .map_err(|e| format!("{}: {e}", a.out))?;
    if let Some(path) = std::env::var_os("MEASURE_TRACE") {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| format!("{}: {e}", path.to_string_lossy()))?;
        f.write_all(trace_rows.as_bytes())
            .map_err(|e| format!("{}: {e}", path.to_string_lossy()))?;
    }
    for (host, p) in hosts.finish() {
        eprintln!("polling {host}: {}", p.summary());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_as_run_sh_passes_them() {
        let args: Vec<String> =
            "http://127.0.0.1:40123 p99 100 1 0 /tmp/c.csv h1:10.77.11.1 h2:10.77.12.1"
                .split(' ')
                .map(String::from)
                .collect();
        let a = parse_args(&args).unwrap();
        assert_eq!(a.api, "127.0.0.1:40123".parse::<SocketAddr>().unwrap());
        assert_eq!(
            (a.prefix.as_str(), a.runs, a.workers, a.proxy),
            ("p99", 100, 1, false)
        );
        assert_eq!(a.hosts[1], ("h2".to_string(), Ipv4Addr::new(10, 77, 12, 1)));
        assert!(parse_args(&args[..6]).is_err());
        let mut bad = args.clone();
        bad[6] = "h1".into();
        assert!(parse_args(&bad).is_err());
    }
}
