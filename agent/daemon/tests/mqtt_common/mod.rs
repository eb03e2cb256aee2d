//! Shared pieces of the MQTT integration tests: the test PKI and broker, zone payloads whose
//! A record encodes the serial, the agent as a child process, a small DNS client, and a
//! "master" MQTT client (built with `sdwan-link`, like the real master) that publishes zones
//! and tracks status documents.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use sdwan_contract::v2::encode::{encode_notice, Delta, Service, Snapshot};
use sdwan_contract::v2::proxy::{encode_notice as proxy_notice, ProxySnapshot};
use sdwan_contract::v2::{Family, Node, Port, Str, Tier, Version, ZoneHeader};
use sdwan_link::rumqttc::{Client, Event, Packet, QoS};
use sdwan_link::{BrokerUrl, LinkOptions, Status, Topics};
use sdwan_testsupport::certs::{Ca, CertFiles};
use sdwan_testsupport::mosquitto::{BrokerTls, Mosquitto, MosquittoConfig};
use sdwan_testsupport::nginx::Nginx;
use sdwan_testsupport::{free_port, wait_for, ChildGuard, TempDir};

/// Topic prefix of the tests.
pub const PREFIX: &str = "sdwan/test";
/// Deadline for anything that should happen "at once" on loopback.
pub const SOON: Duration = Duration::from_secs(10);
/// The record name the zones carry.
pub const NAME: &str = "svc.k8s.internal";

/// The test PKI: a CA, the broker's certificate, a master certificate, and a foreign CA.
#[derive(Debug)]
pub struct Pki {
    pub ca: Ca,
    pub server: CertFiles,
    pub master: CertFiles,
    pub foreign: Ca,
}

impl Pki {
    pub fn new(dir: &Path) -> Pki {
        let ca = Ca::new(dir, "test");
        let server = ca.server("broker");
        let master = ca.client("master");
        let foreign = Ca::new(dir, "foreign");
        Pki {
            ca,
            server,
            master,
            foreign,
        }
    }

    /// mosquitto with TLS, client certificates required (CN = username) and the design's ACL.
    pub fn broker(&self, dir: &Path, persistence: bool) -> Mosquitto {
        Mosquitto::start(
            dir,
            &MosquittoConfig {
                tls: Some(BrokerTls {
                    ca: self.ca.cert().to_path_buf(),
                    server: self.server.clone(),
                    require_client_cert: true,
                }),
                acl: Some(MosquittoConfig::design_acl(PREFIX)),
                persistence,
                max_packet_size: None,
            },
        )
    }
}

/// The A record address that encodes `serial`.
pub fn ip_for(serial: u32) -> Ipv4Addr {
    let b = serial.to_be_bytes();
    Ipv4Addr::new(10, b[1], b[2], b[3])
}

/// A zone payload v1 for `gateway` whose `svc` A record is [`ip_for`]`(serial)`.
pub fn zone(gateway: &str, serial: u32) -> String {
    format!(
        r#"{{"version":1,"serial":{serial},"gateway":"{gateway}","origin":"k8s.internal","ttl":30,"records":[{{"name":"svc","type":"A","data":"{}"}},{{"name":"@","type":"TXT","data":"sdwan-discovery"}}]}}"#,
        ip_for(serial)
    )
}

/// A payload v2 snapshot for `gateway` at `version` whose short service `svc` answers
/// [`ip_for`]`(serial)` (one node, `worker-1`, in slot 0; `svc.default` on it).
pub fn snapshot_v2(gateway: &str, version: u64, serial: u32) -> Snapshot {
    Snapshot {
        gateway: gateway.into(),
        version: Version(version),
        zone: ZoneHeader {
            suffix: Str::new("k8s.internal").unwrap(),
            local: Str::new("local").unwrap(),
            ttl: 30,
            service_ttl: 10,
            family: Family::Dual,
            nodes: 1,
            probe: None,
        },
        nodes: vec![Some(Node {
            name: Str::new("worker-1").unwrap(),
            tier: Tier::Near,
            v4: Some(ip_for(serial)),
            v6: None,
        })],
        services: vec![Service {
            ns: "default".into(),
            name: "svc".into(),
            short: true,
            ports: vec![Port::parse("_http._tcp:30080").unwrap()],
            hosts: vec![0],
        }],
    }
}

/// The delta from `old` to `new` (both [`snapshot_v2`]-like), encoded.
pub fn delta_v2(old: &Snapshot, new: &Snapshot) -> Vec<u8> {
    Delta::between(old, new)
        .expect("a delta reaches it")
        .encode()
        .unwrap()
}

/// How to start an agent.
#[derive(Debug, Clone)]
pub struct AgentArgs {
    pub gateway: String,
    pub broker: String,
    pub ca: Option<PathBuf>,
    pub client: Option<CertFiles>,
    pub state_dir: PathBuf,
    pub listen_port: u16,
}

/// An agent process (killed on drop).
#[derive(Debug)]
pub struct Agent {
    pub child: ChildGuard,
    pub dns: SocketAddr,
    pub args: AgentArgs,
}

impl Agent {
    pub fn start(args: AgentArgs) -> Agent {
        // SDWAN_AGENT_BIN: run another build of the agent (the static musl release build
        // for the memory figure).
        let bin = std::env::var_os("SDWAN_AGENT_BIN").map_or_else(
            || PathBuf::from(env!("CARGO_BIN_EXE_sdwan-agent")),
            PathBuf::from,
        );
        let mut cmd = Command::new(bin);
        cmd.env("RUST_LOG", "info")
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", args.listen_port))
            .arg("--broker")
            .arg(&args.broker)
            .arg("--gateway-id")
            .arg(&args.gateway)
            .arg("--topic-prefix")
            .arg(PREFIX)
            .arg("--state-dir")
            .arg(&args.state_dir);
        if let Some(ca) = &args.ca {
            cmd.arg("--ca").arg(ca);
        }
        if let Some(c) = &args.client {
            cmd.arg("--cert").arg(&c.cert).arg("--key").arg(&c.key);
        }
        let child = ChildGuard::spawn(&format!("sdwan-agent {}", args.gateway), &mut cmd);
        let dns = SocketAddr::from(([127, 0, 0, 1], args.listen_port));
        Agent { child, dns, args }
    }

    /// The same agent (same flags, state dir and port) started again.
    pub fn restart(&mut self) {
        self.child.kill();
        *self = Agent::start(self.args.clone());
    }
}

/// Agent arguments for gateway `gw` against a TLS broker, with its own certificate.
pub fn tls_agent_args(pki: &Pki, broker: &Mosquitto, gw: &str, state_dir: &Path) -> AgentArgs {
    std::fs::create_dir_all(state_dir).unwrap();
    AgentArgs {
        gateway: gw.to_string(),
        broker: broker.url(),
        ca: Some(pki.ca.cert().to_path_buf()),
        client: Some(pki.ca.client(gw)),
        state_dir: state_dir.to_path_buf(),
        listen_port: free_port(),
    }
}

/// Result of one A query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub rcode: u8,
    pub a: Vec<Ipv4Addr>,
}

/// Sends one A query over UDP and parses the answer section's A records.
pub fn query_a(server: SocketAddr, name: &str, timeout: Duration) -> Result<Answer, String> {
    static ID: AtomicU64 = AtomicU64::new(1);
    let id = (ID.fetch_add(1, Ordering::Relaxed) & 0xffff) as u16;
    let mut q = Vec::with_capacity(64);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    let sock = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(timeout)).unwrap();
    sock.send_to(&q, server).map_err(|e| e.to_string())?;
    let mut buf = [0u8; 1500];
    let deadline = Instant::now() + timeout;
    loop {
        let n = match sock.recv(&mut buf) {
            Ok(n) => n,
            Err(e) => return Err(format!("no answer: {e}")),
        };
        let r = &buf[..n];
        if n < 12 || u16::from_be_bytes([r[0], r[1]]) != id {
            if Instant::now() > deadline {
                return Err("no matching answer".into());
            }
            continue;
        }
        return parse_answer(r);
    }
}

fn skip_name(r: &[u8], mut p: usize) -> Result<usize, String> {
    loop {
        let len = *r.get(p).ok_or("truncated name")? as usize;
        if len == 0 {
            return Ok(p + 1);
        }
        if len & 0xc0 == 0xc0 {
            return Ok(p + 2);
        }
        p += 1 + len;
    }
}

fn parse_answer(r: &[u8]) -> Result<Answer, String> {
    let rcode = r[3] & 0x0f;
    let qd = u16::from_be_bytes([r[4], r[5]]);
    let an = u16::from_be_bytes([r[6], r[7]]);
    let mut p = 12;
    for _ in 0..qd {
        p = skip_name(r, p)? + 4;
    }
    let mut a = Vec::new();
    for _ in 0..an {
        p = skip_name(r, p)?;
        let h = r.get(p..p + 10).ok_or("truncated record")?;
        let (ty, len) = (
            u16::from_be_bytes([h[0], h[1]]),
            u16::from_be_bytes([h[8], h[9]]) as usize,
        );
        let data = r.get(p + 10..p + 10 + len).ok_or("truncated rdata")?;
        if ty == 1 && len == 4 {
            a.push(Ipv4Addr::new(data[0], data[1], data[2], data[3]));
        }
        p += 10 + len;
    }
    Ok(Answer { rcode, a })
}

/// Waits until the agent answers [`NAME`] with the address of `serial`.
#[track_caller]
pub fn wait_serving(dns: SocketAddr, serial: u32) {
    let want = ip_for(serial);
    wait_for(
        SOON,
        &format!("{dns} to answer {NAME} A {want} (serial {serial})"),
        || {
            query_a(dns, NAME, Duration::from_millis(300))
                .ok()
                .filter(|a| a.rcode == 0 && a.a == [want])
        },
    );
}

/// Counts DNS queries sent in a loop from a thread until stopped.
#[derive(Debug)]
pub struct QueryLoop {
    stop: Arc<AtomicBool>,
    handle: Option<thread::JoinHandle<(u64, Vec<String>)>>,
}

impl QueryLoop {
    /// Queries [`NAME`] back to back; an answer counts as good when it is NOERROR with
    /// exactly one A record of a zone this test published (10.x.y.z).
    pub fn start(dns: SocketAddr) -> QueryLoop {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let handle = thread::spawn(move || {
            let mut ok = 0u64;
            let mut failures = Vec::new();
            while !s.load(Ordering::Relaxed) {
                match query_a(dns, NAME, Duration::from_secs(1)) {
                    Ok(a) if a.rcode == 0 && a.a.len() == 1 && a.a[0].octets()[0] == 10 => ok += 1,
                    Ok(a) => failures.push(format!("bad answer {a:?}")),
                    Err(e) => failures.push(e),
                }
            }
            (ok, failures)
        });
        QueryLoop {
            stop,
            handle: Some(handle),
        }
    }

    /// Stops and returns (good answers, failures).
    pub fn finish(mut self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take().unwrap().join().unwrap()
    }
}

impl Drop for QueryLoop {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Messages seen, in order: (topic, payload).
type History = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// The master's side: publishes zones, keeps the latest status document of every gateway.
pub struct Master {
    client: Client,
    topics: Topics,
    statuses: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    /// Every message seen, in order: (topic, payload).
    history: History,
    connected: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl Master {
    /// Connects with `options` (built by `sdwan-link`) and subscribes to every gateway status.
    pub fn connect(mut options: LinkOptions) -> Master {
        options.clean_session = true;
        let topics = Topics::new(PREFIX).unwrap();
        let (client, mut connection) = options.sync_client(256).unwrap();
        let statuses = Arc::new(Mutex::new(HashMap::new()));
        let history = Arc::new(Mutex::new(Vec::new()));
        let connected = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let hist = history.clone();
        let (st, conn, stp, sub_client, filter, node_filter) = (
            statuses.clone(),
            connected.clone(),
            stop.clone(),
            client.clone(),
            topics.all_gateway_status(),
            topics.all_node_status(),
        );
        thread::spawn(move || {
            while !stp.load(Ordering::Relaxed) {
                match connection.recv_timeout(Duration::from_millis(200)) {
                    Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => {
                        let _ = sub_client.try_subscribe(filter.clone(), QoS::AtLeastOnce);
                        let _ = sub_client.try_subscribe(node_filter.clone(), QoS::AtLeastOnce);
                    }
                    Ok(Ok(Event::Incoming(Packet::SubAck(_)))) => {
                        conn.store(true, Ordering::Relaxed);
                    }
                    Ok(Ok(Event::Incoming(Packet::Publish(p)))) => {
                        hist.lock()
                            .unwrap()
                            .push((p.topic.clone(), p.payload.to_vec()));
                        st.lock()
                            .unwrap()
                            .insert(p.topic.clone(), p.payload.to_vec());
                    }
                    Ok(Ok(_)) => {}
                    Ok(Err(_)) => {
                        conn.store(false, Ordering::Relaxed);
                        thread::sleep(Duration::from_millis(50));
                    }
                    Err(_) => {}
                }
            }
        });
        let m = Master {
            client,
            topics,
            statuses,
            history,
            connected,
            stop,
        };
        let c = m.connected.clone();
        sdwan_testsupport::wait_until(SOON, "master connected and subscribed", || {
            c.load(Ordering::Relaxed)
        });
        m
    }

    /// Master options for a TLS mosquitto of this PKI.
    pub fn tls_options(pki: &Pki, broker: &Mosquitto) -> LinkOptions {
        let mut o = LinkOptions::new(BrokerUrl::parse(&broker.url()).unwrap(), "master");
        o.ca = Some(pki.ca.cert().to_path_buf());
        o.cert = Some(pki.master.cert.clone());
        o.key = Some(pki.master.key.clone());
        o
    }

    /// Publishes `payload` as `gw`'s zone (retained, QoS 1).
    pub fn publish_zone(&self, gw: &str, payload: impl Into<Vec<u8>>) {
        self.client
            .publish(
                self.topics.gateway_zone(gw),
                QoS::AtLeastOnce,
                true,
                payload,
            )
            .unwrap();
    }

    /// Publishes `bytes` on `gw`'s v2 topic `leaf` (`part/K`, `tail`: retained; `delta`: not),
    /// QoS 1.
    pub fn publish_v2(&self, gw: &str, leaf: &str, bytes: impl Into<Vec<u8>>) {
        let retain = leaf != "delta";
        self.client
            .publish(
                self.topics.gateway_v2(gw, leaf),
                QoS::AtLeastOnce,
                retain,
                bytes,
            )
            .unwrap();
    }

    /// Publishes `snap` as the master does a new snapshot: its parts (retained), an empty
    /// tail, then a notice on `delta`. Returns the number of parts.
    pub fn publish_snapshot(&self, snap: &Snapshot) -> usize {
        let parts = snap.encode().unwrap();
        for (k, p) in parts.iter().enumerate() {
            self.publish_v2(&snap.gateway, &format!("part/{k}"), p.clone());
        }
        self.publish_v2(&snap.gateway, "tail", Vec::new());
        self.notice(snap);
        parts.len()
    }

    /// Publishes a notice of `snap`'s version and digest on `delta`.
    pub fn notice(&self, snap: &Snapshot) {
        let n = encode_notice(&snap.gateway, snap.version, snap.digest()).unwrap();
        self.publish_v2(&snap.gateway, "delta", n);
    }

    /// Publishes [`snapshot_v2`]`(gw, serial, serial)`: the v2 counterpart of a v1 zone
    /// whose A record encodes `serial`.
    pub fn publish_serial(&self, gw: &str, serial: u32) -> Snapshot {
        let snap = snapshot_v2(gw, serial.into(), serial);
        self.publish_snapshot(&snap);
        snap
    }

    /// The latest status document of `gw`, if any.
    pub fn status(&self, gw: &str) -> Option<Status> {
        let raw = self
            .statuses
            .lock()
            .unwrap()
            .get(&self.topics.gateway_status(gw))
            .cloned()?;
        Some(
            Status::from_json(&raw)
                .unwrap_or_else(|e| panic!("{gw} status {:?}: {e}", String::from_utf8_lossy(&raw))),
        )
    }

    /// Waits until `gw`'s status satisfies `pred`, returning it.
    #[track_caller]
    pub fn wait_status(&self, gw: &str, what: &str, pred: impl Fn(&Status) -> bool) -> Status {
        wait_for(SOON, &format!("{gw} status: {what}"), || {
            self.status(gw).filter(|s| pred(s))
        })
    }

    /// Publishes `bytes` on worker `node`'s proxy v2 topic `leaf` (`part/K`, `tail`:
    /// retained; `delta`: not), QoS 1.
    pub fn publish_proxy_v2(&self, node: &str, leaf: &str, bytes: impl Into<Vec<u8>>) {
        let retain = leaf != "delta";
        self.client
            .publish(
                format!("{}/nodes/{node}/v2/{leaf}", self.topics.prefix()),
                QoS::AtLeastOnce,
                retain,
                bytes,
            )
            .unwrap();
    }

    /// Publishes `content` as the master does a new proxy snapshot: its parts (retained),
    /// an empty tail, then a notice on `delta`. Returns the number of parts.
    pub fn publish_proxy_snapshot(&self, content: &ProxySnapshot) -> usize {
        let parts = content.encode().unwrap();
        for (k, p) in parts.iter().enumerate() {
            self.publish_proxy_v2(&content.node, &format!("part/{k}"), p.clone());
        }
        self.publish_proxy_v2(&content.node, "tail", Vec::new());
        let n = proxy_notice(&content.node, content.version, content.digest()).unwrap();
        self.publish_proxy_v2(&content.node, "delta", n);
        parts.len()
    }

    /// Waits until worker `node`'s status satisfies `pred`, returning it.
    #[track_caller]
    pub fn wait_node_status(
        &self,
        node: &str,
        what: &str,
        pred: impl Fn(&Status) -> bool,
    ) -> Status {
        let topic = self.topics.node_status(node);
        wait_for(SOON, &format!("{node} status: {what}"), || {
            let raw = self.statuses.lock().unwrap().get(&topic).cloned()?;
            Status::from_json(&raw).ok().filter(|s| pred(s))
        })
    }

    /// Every status document of `gw` seen so far, in order.
    pub fn statuses_of(&self, gw: &str) -> Vec<Status> {
        let topic = self.topics.gateway_status(gw);
        self.history
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, _)| *t == topic)
            .filter_map(|(_, p)| Status::from_json(p).ok())
            .collect()
    }

    /// Forgets the status documents seen so far.
    pub fn clear_statuses(&self) {
        self.statuses.lock().unwrap().clear();
    }
}

impl Drop for Master {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.client.try_disconnect();
    }
}

/// The gateway rig: a TLS broker with the design's ACL (`persistence` as given), a connected
/// test master, and an agent for gateway `gw-a` (state in `<tmp>/state`) already serving the
/// zone of `serial`. Fields drop in order: the agent first, the temp dir last.
pub struct GatewayRig {
    pub agent: Agent,
    pub master: Master,
    pub broker: Mosquitto,
    pub pki: Pki,
    pub tmp: TempDir,
}

impl GatewayRig {
    pub fn start(name: &str, persistence: bool, serial: u32) -> GatewayRig {
        let tmp = TempDir::new(name);
        let pki = Pki::new(tmp.path());
        let broker = pki.broker(tmp.path(), persistence);
        let master = Master::connect(Master::tls_options(&pki, &broker));
        let agent = Agent::start(tls_agent_args(&pki, &broker, "gw-a", &tmp.join("state")));
        master.publish_serial("gw-a", serial);
        wait_serving(agent.dns, serial);
        GatewayRig {
            agent,
            master,
            broker,
            pki,
            tmp,
        }
    }
}

/// The worker-mode rig: a TLS broker with the design's ACL, a connected test master, a proxy
/// directory and a real nginx that includes `<proxy_dir>/*.conf`. Fields drop in order: nginx
/// first, the temp dir last.
pub struct ProxyRig {
    pub nginx: Nginx,
    pub master: Master,
    pub broker: Mosquitto,
    pub pki: Pki,
    pub proxy_dir: PathBuf,
    pub tmp: TempDir,
}

impl ProxyRig {
    /// Proxy settings for nginx on `listen_port`, proxying to loopback, configuration in
    /// this rig's proxy directory.
    pub fn settings(&self, listen_port: u16) -> sdwan_plan::nginx::ProxySettings {
        sdwan_plan::nginx::ProxySettings {
            listen_port,
            upstream_host: "127.0.0.1".into(),
            dir: self.proxy_dir.display().to_string(),
        }
    }

    pub fn start(name: &str) -> ProxyRig {
        let tmp = TempDir::new(name);
        let pki = Pki::new(tmp.path());
        let broker = pki.broker(tmp.path(), false);
        let master = Master::connect(Master::tls_options(&pki, &broker));
        let proxy_dir = tmp.join("proxy");
        std::fs::create_dir_all(&proxy_dir).unwrap();
        std::fs::create_dir_all(tmp.join("nginx")).unwrap();
        let nginx = Nginx::start(
            &tmp.join("nginx"),
            &format!("{}/*.conf", proxy_dir.display()),
        );
        ProxyRig {
            nginx,
            master,
            broker,
            pki,
            proxy_dir,
            tmp,
        }
    }

    /// Starts `sdwan-agent` in worker mode for `node` against this rig: its own client
    /// certificate, `--proxy-dir` the rig's proxy directory, nginx's check and reload commands.
    pub fn start_agent(&self, node: &str) -> ChildGuard {
        self.start_agent_with(node, &self.nginx.check_cmd(), None)
    }

    /// [`ProxyRig::start_agent`] with `check` as `--check-cmd` and, when given, a limit on
    /// the size of the files it writes (RLIMIT_FSIZE, SIGXFSZ ignored: a write beyond it
    /// fails with EFBIG, as on a full disk).
    pub fn start_agent_with(&self, node: &str, check: &str, fsize: Option<u64>) -> ChildGuard {
        let client = self.pki.ca.client(node);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sdwan-agent"));
        if let Some(limit) = fsize {
            use std::os::unix::process::CommandExt;
            // SAFETY: only async-signal-safe calls (setrlimit, signal) between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    let r = libc::rlimit {
                        rlim_cur: limit,
                        rlim_max: limit,
                    };
                    if libc::setrlimit(libc::RLIMIT_FSIZE, &r) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                    Ok(())
                });
            }
        }
        cmd.env("RUST_LOG", "info")
            .args([
                "--broker",
                &self.broker.url(),
                "--node-id",
                node,
                "--topic-prefix",
                PREFIX,
            ])
            .arg("--ca")
            .arg(self.pki.ca.cert())
            .arg("--cert")
            .arg(&client.cert)
            .arg("--key")
            .arg(&client.key)
            .arg("--proxy-dir")
            .arg(&self.proxy_dir)
            .args(["--check-cmd", check])
            .args(["--reload-cmd", &self.nginx.reload_cmd()]);
        ChildGuard::spawn(&format!("sdwan-agent {node}"), &mut cmd)
    }
}
