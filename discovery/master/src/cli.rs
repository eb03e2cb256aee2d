//! Command line: `sdwan-discovery [run] [flags]` and `sdwan-discovery plan ...`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use lexopt::prelude::*;

/// Usage text (`--help`).
pub const USAGE: &str = "\
sdwan-discovery: watch Kubernetes, plan DNS zones per branch gateway, publish them over MQTT.

USAGE:
  sdwan-discovery [run] --topology FILE [options]
  sdwan-discovery plan --cluster-file FILE [--cluster-file FILE ...] --topology FILE --out DIR [--serial N]

RUN OPTIONS:
  --topology FILE           topology file (TOML, docs/topology.md); required
  --kubeconfig FILE         kubeconfig to use (default: in-cluster, then $KUBECONFIG / ~/.kube/config)
  --cluster-file FILE       serve a static cluster from `kubectl get nodes,services,endpointslices -A -o json`
                            output instead of watching (repeatable; files are merged)
  --cluster NAME            cluster name for the default topic prefix (default: default)
  --topic-prefix P          topic prefix (default: sdwan/v1/<cluster>)
  --broker URL              mqtts://host:port (or mqtt:// for tests); without it an embedded broker runs
  --embedded-broker ADDR    listen address of the embedded broker (default: 127.0.0.1:1883)
  --ca FILE --cert FILE --key FILE   TLS: CA bundle, client certificate and key (PEM)
  --username NAME --password-file FILE   MQTT credentials
  --client-id ID            MQTT client id (default: sdwan-discovery-<cluster>)
  --metrics ADDR            serve /metrics, /healthz, /readyz on ADDR (e.g. 127.0.0.1:9100)
  --debounce MS             quiet time that ends a burst of events (default: 20)
  --max-delay MS            longest a burst may delay a publish (default: 100)
  --retained-wait MS        longest to wait for the retained statuses at start (default: 2000)
  --leader-elect            elect one publishing replica through a coordination.k8s.io Lease
                            (default: on in a pod watching Kubernetes, else off)
  --no-leader-elect         publish without an election (a single replica)
  --lease-name NAME         Lease name (default: sdwan-discovery-<cluster>)
  --lease-namespace NS      Lease namespace (default: the pod's namespace, else default)
  --identity ID             this replica's name in the Lease (default: $POD_NAME, else the host name)
  --lease-duration MS       a Lease not renewed for this long is taken over (default: 15000)
  --renew-deadline MS       the leader stops publishing this long after its last renewal (default: 10000)
  --retry-period MS         time between Lease attempts, < duration - deadline (default: 2000)
  -h, --help                this text
  -V, --version             version

PLAN OPTIONS:
  --out DIR                 writes DIR/gateways/<id>.json (zone payload v1), DIR/gateways/<id>.v2.jsonl
                            (payload v2 snapshot, for sdwan-agent --zone-file or its --state-dir)
                            and DIR/nodes/<node>.json
  --serial N                serial of the written payloads, version of the v2 ones (default: 1)
";

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// The live master.
    Run(Box<RunArgs>),
    /// Offline planning into files.
    Plan(PlanArgs),
    /// Print usage.
    Help,
    /// Print the version.
    Version,
}

/// Flags of `run`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunArgs {
    /// Topology file.
    pub topology: PathBuf,
    /// Kubeconfig file.
    pub kubeconfig: Option<PathBuf>,
    /// Static cluster dumps (no watching when non-empty).
    pub cluster_files: Vec<PathBuf>,
    /// Cluster name.
    pub cluster: String,
    /// Topic prefix.
    pub topic_prefix: String,
    /// External broker URL; `None` runs the embedded broker.
    pub broker: Option<String>,
    /// Embedded broker address.
    pub embedded_broker: SocketAddr,
    /// CA file.
    pub ca: Option<PathBuf>,
    /// Client certificate.
    pub cert: Option<PathBuf>,
    /// Client key.
    pub key: Option<PathBuf>,
    /// MQTT username.
    pub username: Option<String>,
    /// MQTT password file.
    pub password_file: Option<PathBuf>,
    /// MQTT client id.
    pub client_id: String,
    /// Metrics/health address.
    pub metrics: Option<SocketAddr>,
    /// Burst quiet time.
    pub debounce: Duration,
    /// Burst bound.
    pub max_delay: Duration,
    /// Retained read bound.
    pub retained_wait: Duration,
    /// Leader election: `None` = on in a pod watching Kubernetes, else off.
    pub leader_elect: Option<bool>,
    /// Lease name.
    pub lease_name: String,
    /// Lease namespace (`None`: the pod's, else `default`).
    pub lease_namespace: Option<String>,
    /// Identity in the Lease (`None`: `$POD_NAME`, else the host name).
    pub identity: Option<String>,
    /// Lease timing.
    pub lease: crate::leader::LeaseTiming,
}

/// Flags of `plan`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanArgs {
    /// Cluster dumps.
    pub cluster_files: Vec<PathBuf>,
    /// Topology file.
    pub topology: PathBuf,
    /// Output directory.
    pub out: PathBuf,
    /// Serial of the payloads.
    pub serial: u32,
}

fn millis(flag: &str, v: std::ffi::OsString) -> Result<Duration, lexopt::Error> {
    let s = v.string()?;
    s.parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|_| lexopt::Error::from(format!("{flag}: {s:?} is not a number of milliseconds")))
}

fn addr(flag: &str, v: std::ffi::OsString) -> Result<SocketAddr, lexopt::Error> {
    let s = v.string()?;
    s.parse().map_err(|_| {
        lexopt::Error::from(format!(
            "{flag}: {s:?} is not an address like 127.0.0.1:9100"
        ))
    })
}

/// Parses the arguments after the program name.
pub fn parse(args: impl IntoIterator<Item = std::ffi::OsString>) -> Result<Command, lexopt::Error> {
    let mut p = lexopt::Parser::from_args(args);
    let mut sub: Option<String> = None;
    let mut topology = None;
    let mut kubeconfig = None;
    let mut cluster_files = Vec::new();
    let mut cluster = "default".to_string();
    let mut topic_prefix = None;
    let mut broker = None;
    let mut embedded_broker: SocketAddr = "127.0.0.1:1883".parse().unwrap();
    let (mut ca, mut cert, mut key, mut username, mut password_file) =
        (None, None, None, None, None);
    let mut client_id = None;
    let mut metrics = None;
    let mut debounce = Duration::from_millis(20);
    let mut max_delay = Duration::from_millis(100);
    let mut retained_wait = Duration::from_millis(2000);
    let mut out = None;
    let mut serial: u32 = 1;
    let mut leader_elect = None;
    let mut lease_name = None;
    let mut lease_namespace = None;
    let mut identity = None;
    let mut lease = crate::leader::LeaseTiming::default();
    while let Some(arg) = p.next()? {
        match arg {
            Value(v) if sub.is_none() => {
                let v = v.string()?;
                match v.as_str() {
                    "run" | "plan" => sub = Some(v),
                    other => return Err(format!("unknown command {other:?} (run, plan)").into()),
                }
            }
            Short('h') | Long("help") => return Ok(Command::Help),
            Short('V') | Long("version") => return Ok(Command::Version),
            Long("topology") => topology = Some(PathBuf::from(p.value()?)),
            Long("kubeconfig") => kubeconfig = Some(PathBuf::from(p.value()?)),
            Long("cluster-file") => cluster_files.push(PathBuf::from(p.value()?)),
            Long("cluster") => cluster = p.value()?.string()?,
            Long("topic-prefix") => topic_prefix = Some(p.value()?.string()?),
            Long("broker") => broker = Some(p.value()?.string()?),
            Long("embedded-broker") => embedded_broker = addr("--embedded-broker", p.value()?)?,
            Long("ca") => ca = Some(PathBuf::from(p.value()?)),
            Long("cert") => cert = Some(PathBuf::from(p.value()?)),
            Long("key") => key = Some(PathBuf::from(p.value()?)),
            Long("username") => username = Some(p.value()?.string()?),
            Long("password-file") => password_file = Some(PathBuf::from(p.value()?)),
            Long("client-id") => client_id = Some(p.value()?.string()?),
            Long("metrics") => metrics = Some(addr("--metrics", p.value()?)?),
            Long("debounce") => debounce = millis("--debounce", p.value()?)?,
            Long("max-delay") => max_delay = millis("--max-delay", p.value()?)?,
            Long("retained-wait") => retained_wait = millis("--retained-wait", p.value()?)?,
            Long("leader-elect") => leader_elect = Some(true),
            Long("no-leader-elect") => leader_elect = Some(false),
            Long("lease-name") => lease_name = Some(p.value()?.string()?),
            Long("lease-namespace") => lease_namespace = Some(p.value()?.string()?),
            Long("identity") => identity = Some(p.value()?.string()?),
            Long("lease-duration") => lease.duration = millis("--lease-duration", p.value()?)?,
            Long("renew-deadline") => {
                lease.renew_deadline = millis("--renew-deadline", p.value()?)?;
            }
            Long("retry-period") => lease.retry = millis("--retry-period", p.value()?)?,
            Long("out") => out = Some(PathBuf::from(p.value()?)),
            Long("serial") => {
                let s = p.value()?.string()?;
                serial = s.parse().ok().filter(|n| *n >= 1).ok_or_else(|| {
                    lexopt::Error::from(format!(
                        "--serial: {s:?} is not a number from 1 to 4294967295"
                    ))
                })?;
            }
            _ => return Err(arg.unexpected()),
        }
    }
    let topology = topology.ok_or_else(|| lexopt::Error::from("--topology FILE is required"))?;
    if sub.as_deref() == Some("plan") {
        if cluster_files.is_empty() {
            return Err("plan: at least one --cluster-file FILE is required".into());
        }
        let out = out.ok_or_else(|| lexopt::Error::from("plan: --out DIR is required"))?;
        return Ok(Command::Plan(PlanArgs {
            cluster_files,
            topology,
            out,
            serial,
        }));
    }
    if out.is_some() {
        return Err("--out is a flag of `plan`, not of `run`".into());
    }
    if max_delay < debounce {
        return Err("--max-delay must not be shorter than --debounce".into());
    }
    lease.check()?;
    if leader_elect == Some(true) && !cluster_files.is_empty() {
        return Err("--leader-elect needs the Kubernetes API: not with --cluster-file".into());
    }
    let topic_prefix = topic_prefix.unwrap_or_else(|| format!("sdwan/v1/{cluster}"));
    let lease_name = lease_name.unwrap_or_else(|| format!("sdwan-discovery-{cluster}"));
    let client_id = client_id.unwrap_or_else(|| format!("sdwan-discovery-{cluster}"));
    Ok(Command::Run(Box::new(RunArgs {
        topology,
        kubeconfig,
        cluster_files,
        cluster,
        topic_prefix,
        broker,
        embedded_broker,
        ca,
        cert,
        key,
        username,
        password_file,
        client_id,
        metrics,
        debounce,
        max_delay,
        retained_wait,
        leader_elect,
        lease_name,
        lease_namespace,
        identity,
        lease,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<std::ffi::OsString> {
        s.split_whitespace().map(Into::into).collect()
    }

    #[test]
    fn run_is_the_default_with_derived_prefix() {
        let Command::Run(r) = parse(args("--topology t.toml --cluster lab")).unwrap() else {
            panic!()
        };
        assert_eq!(r.topic_prefix, "sdwan/v1/lab");
        assert_eq!(r.client_id, "sdwan-discovery-lab");
        assert_eq!(r.embedded_broker.to_string(), "127.0.0.1:1883");
        assert_eq!(r.debounce, Duration::from_millis(20));
    }

    #[test]
    fn plan_needs_out_and_cluster_files() {
        let e = parse(args("plan --topology t.toml --out d"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("--cluster-file"), "{e}");
        let Command::Plan(p) = parse(args(
            "plan --cluster-file a --cluster-file b --topology t --out d --serial 7",
        ))
        .unwrap() else {
            panic!()
        };
        assert_eq!((p.cluster_files.len(), p.serial), (2, 7));
        assert!(parse(args(
            "plan --cluster-file a --topology t --out d --serial 0"
        ))
        .is_err());
    }

    #[test]
    fn leader_election_flags() {
        let Command::Run(r) = parse(args("--topology t --cluster lab")).unwrap() else {
            panic!()
        };
        assert_eq!(r.leader_elect, None);
        assert_eq!(r.lease_name, "sdwan-discovery-lab");
        assert_eq!(r.lease, crate::leader::LeaseTiming::default());
        let Command::Run(r) = parse(args(
            "--topology t --leader-elect --lease-name l --lease-namespace ns --identity pod-1 \
             --lease-duration 1500 --renew-deadline 1000 --retry-period 200",
        ))
        .unwrap() else {
            panic!()
        };
        assert_eq!(r.leader_elect, Some(true));
        assert_eq!(
            (
                r.lease_name.as_str(),
                r.lease_namespace.as_deref(),
                r.identity.as_deref()
            ),
            ("l", Some("ns"), Some("pod-1"))
        );
        assert_eq!(r.lease.renew_deadline, Duration::from_millis(1000));
        let e = parse(args(
            "--topology t --lease-duration 1000 --renew-deadline 1000",
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("--renew-deadline"), "{e}");
        let e = parse(args("--topology t --cluster-file c.json --leader-elect"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("--cluster-file"), "{e}");
    }

    #[test]
    fn bad_values_name_the_flag() {
        let e = parse(args("--topology t --debounce soon"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("--debounce"), "{e}");
        let e = parse(args("--topology t --metrics localhost"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("--metrics"), "{e}");
    }
}
