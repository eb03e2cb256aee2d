//! Convergence state and the Prometheus text endpoint (`GET /metrics`), plus `/healthz` and
//! `/readyz`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};

/// Bucket bounds (seconds) of the latency histograms.
pub const BUCKETS: &[f64] = &[
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
];

/// A cumulative histogram in Prometheus' shape.
#[derive(Debug, Clone, Default)]
pub struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&mut self, d: Duration) {
        if self.counts.is_empty() {
            self.counts = vec![0; BUCKETS.len()];
        }
        let s = d.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if s <= *b {
                self.counts[i] += 1;
            }
        }
        self.sum += s;
        self.count += 1;
    }

    /// Sum of the observations, in seconds.
    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.count
    }

    fn render(&self, name: &str, help: &str, out: &mut String) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (i, b) in BUCKETS.iter().enumerate() {
            let c = self.counts.get(i).copied().unwrap_or(0);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {c}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum {}\n{name}_count {}", self.sum, self.count);
    }
}

/// What the master knows about one gateway or node agent.
///
/// Gateways and nodes alike (payload v2, zones and proxies): `desired` is the version the
/// desired content has on the wire, `applied` the version the agent reports (`held`), and
/// convergence compares the content digests, never the versions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Convergence {
    /// Version the desired content has on the wire (published or adopted), if it has one.
    pub desired: Option<u64>,
    /// Version the agent reports it holds.
    pub applied: Option<u64>,
    /// The digest of the desired content.
    pub desired_digest: Option<u64>,
    /// The version last published (the stream's current version, whatever its content): a
    /// report older than it may be stale.
    pub published: Option<u64>,
    /// The digest the agent reports for the content it serves.
    pub applied_digest: Option<u64>,
    /// The agent's last status said online.
    pub online: bool,
    /// The agent's last error.
    pub error: Option<String>,
}

impl Convergence {
    /// The agent serves the desired content: its reported digest is the desired digest,
    /// reported at a version no older than the last one published (RFC 1982; an older report
    /// may be stale). Without desired content: not converged.
    pub fn converged(&self) -> bool {
        use sdwan_contract::v2::Version;
        match self.desired_digest {
            Some(d) => {
                self.applied_digest == Some(d)
                    && self.published.is_none_or(|p| {
                        self.applied
                            .is_some_and(|a| !Version(p).is_newer_than(Version(a)))
                    })
            }
            None => false,
        }
    }
}

/// All metrics. Shared between the controller and the HTTP server.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Per gateway id.
    pub gateways: BTreeMap<String, Convergence>,
    /// Per node name.
    pub nodes: BTreeMap<String, Convergence>,
    /// What was published for each (kind, name), until the agent reports it applied: the
    /// content digest, and when.
    pub pending: BTreeMap<(bool, String), (u64, Instant)>,
    /// Watch events received, per resource.
    pub watch_events: BTreeMap<&'static str, u64>,
    /// Complete (re)lists received, per resource.
    pub relists: BTreeMap<&'static str, u64>,
    /// Watch errors, per resource.
    pub watch_errors: BTreeMap<&'static str, u64>,
    /// Plans made (one per burst).
    pub plans: u64,
    /// Gateway zone versions published.
    pub published_zones: u64,
    /// Worker proxy versions published.
    pub published_proxies: u64,
    /// Bytes of payload published.
    pub published_bytes: u64,
    /// Objects refused by the planner's input checks.
    pub input_errors: u64,
    /// First event of a burst to the publish of its payloads.
    pub event_to_publish: Histogram,
    /// Publish to the agent reporting the content applied.
    pub publish_to_applied: Histogram,
    /// Bytes of retained gateway status documents read at the last start or takeover
    /// (payload v2: the master reads statuses, never zones).
    pub start_status_bytes: u64,
    /// Retained gateway status documents read then.
    pub start_statuses: u64,
    /// Bytes of retained worker status documents read then (never proxies).
    pub start_node_status_bytes: u64,
    /// Retained worker status documents read then.
    pub start_node_statuses: u64,
    /// Payload v2 messages and bytes published, per kind (`part`, `part_delete`, `tail`,
    /// `delta`, `notice`).
    pub v2_egress: BTreeMap<&'static str, (u64, u64)>,
    /// Connected to the broker.
    pub broker_connected: bool,
    /// The first plan was published.
    pub ready: bool,
    /// Leader election is on.
    pub leader_election: bool,
    /// This replica publishes (always true without leader election).
    pub leader: bool,
    /// All watched resources were listed once (the cache is warm).
    pub synced: bool,
    /// The gateways' view of the workers (issue 14: the reachability matrix).
    pub reach: crate::reach::ReachView,
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    /// Notes the desired content of gateway (`gateway`) or node `name` (payload v2): its
    /// digest, the version it has on the wire (`None` until published) and the stream's
    /// current version (`current`). A digest not applied yet starts the publish-to-applied
    /// clock when `published` is given.
    pub fn desired_v2(
        &mut self,
        gateway: bool,
        name: &str,
        version: Option<u64>,
        current: Option<u64>,
        digest: u64,
        published: Option<Instant>,
    ) {
        let c = self.entry(gateway, name);
        c.desired = version;
        c.published = current;
        c.desired_digest = Some(digest);
        let converged = c.converged();
        let key = (gateway, name.to_string());
        if converged {
            self.pending.remove(&key);
        } else if let Some(at) = published {
            if self.pending.get(&key).is_none_or(|p| p.0 != digest) {
                self.pending.insert(key, (digest, at));
            }
        }
    }

    /// Notes one payload v2 message of `kind` (`part`, `part_delete`, `tail`, `delta`,
    /// `notice`) with `bytes` of payload published.
    pub fn published_v2(&mut self, kind: &'static str, bytes: usize) {
        let e = self.v2_egress.entry(kind).or_default();
        e.0 += 1;
        e.1 += bytes as u64;
        self.published_bytes += bytes as u64;
    }

    /// Forgets gateway `name`'s convergence (no longer planned).
    pub fn forget_gateway(&mut self, name: &str) {
        self.forget(true, name);
    }

    /// Forgets the convergence of gateway (`gateway`) or node `name` (no longer planned).
    pub fn forget(&mut self, gateway: bool, name: &str) {
        if gateway {
            self.gateways.remove(name);
        } else {
            self.nodes.remove(name);
        }
        self.pending.remove(&(gateway, name.to_string()));
    }

    fn entry(&mut self, gateway: bool, name: &str) -> &mut Convergence {
        let map = if gateway {
            &mut self.gateways
        } else {
            &mut self.nodes
        };
        map.entry(name.to_string()).or_default()
    }

    /// Notes an agent status. Returns the publish-to-applied latency when this status
    /// completed a pending publish (the agent reporting the pending digest).
    pub fn status(
        &mut self,
        gateway: bool,
        name: &str,
        status: &sdwan_link::Status,
        now: Instant,
    ) -> Option<Duration> {
        let c = self.entry(gateway, name);
        c.online = status.state == sdwan_link::State::Online;
        c.error = status.error.clone();
        let key = (gateway, name.to_string());
        c.applied = status.held;
        c.applied_digest = status.digest.as_deref().and_then(parse_digest);
        let d = c.applied_digest;
        let done = self.pending.get(&key).is_some_and(|p| Some(p.0) == d);
        if done {
            let (_, at) = self.pending.remove(&key)?;
            let d = now.saturating_duration_since(at);
            self.publish_to_applied.observe(d);
            return Some(d);
        }
        None
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut o = String::new();
        for (kind, map) in [("gateway", &self.gateways), ("node", &self.nodes)] {
            let rows: Vec<(&String, &Convergence)> = map.iter().collect();
            let (unit, conv_help) = (
                "version",
                "1 when the digest the agent reports is the desired content's",
            );
            let series: [Series; 5] = [
                ("desired_serial", "last published", |c| {
                    c.desired.map(|v| v as f64)
                }),
                ("applied_serial", "the agent reports in use", |c| {
                    c.applied.map(|v| v as f64)
                }),
                ("online", "1 when the agent's status is online", |c| {
                    Some(if c.online { 1.0 } else { 0.0 })
                }),
                ("converged", "", |c| {
                    Some(if c.converged() { 1.0 } else { 0.0 })
                }),
                ("error", "1 when the agent reports an error", |c| {
                    Some(if c.error.is_some() { 1.0 } else { 0.0 })
                }),
            ];
            for (name, help, f) in series {
                let help = match name {
                    "converged" => conv_help.to_string(),
                    "desired_serial" | "applied_serial" => format!("{unit} {help}"),
                    _ => help.to_string(),
                };
                let _ = writeln!(
                    o,
                    "# HELP sdwan_{kind}_{name} {help}\n# TYPE sdwan_{kind}_{name} gauge"
                );
                for (id, c) in &rows {
                    if let Some(v) = f(c) {
                        let _ = writeln!(o, "sdwan_{kind}_{name}{{{kind}=\"{}\"}} {v}", esc(id));
                    }
                }
            }
        }
        let counters: [(&str, &str, &BTreeMap<&'static str, u64>); 3] = [
            (
                "sdwan_watch_events_total",
                "watch events received",
                &self.watch_events,
            ),
            (
                "sdwan_watch_relists_total",
                "complete lists received (start and relists)",
                &self.relists,
            ),
            (
                "sdwan_watch_errors_total",
                "watch errors (retried)",
                &self.watch_errors,
            ),
        ];
        for (name, help, map) in counters {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} counter");
            for (r, v) in map {
                let _ = writeln!(o, "{name}{{resource=\"{r}\"}} {v}");
            }
        }
        let _ = writeln!(
            o,
            "# HELP sdwan_plans_total plans made (one per burst of events)\n\
             # TYPE sdwan_plans_total counter\nsdwan_plans_total {}",
            self.plans
        );
        let _ = writeln!(
            o,
            "# HELP sdwan_published_total payloads published\n# TYPE sdwan_published_total counter\n\
             sdwan_published_total{{kind=\"zone\"}} {}\nsdwan_published_total{{kind=\"proxy\"}} {}",
            self.published_zones, self.published_proxies
        );
        let _ = writeln!(
            o,
            "# HELP sdwan_published_bytes_total payload bytes published\n\
             # TYPE sdwan_published_bytes_total counter\nsdwan_published_bytes_total {}",
            self.published_bytes
        );
        let _ = writeln!(
            o,
            "# HELP sdwan_input_errors_total Kubernetes objects refused (see the log)\n\
             # TYPE sdwan_input_errors_total counter\nsdwan_input_errors_total {}",
            self.input_errors
        );
        let _ = writeln!(
            o,
            "# HELP sdwan_broker_connected 1 when connected to the MQTT broker\n\
             # TYPE sdwan_broker_connected gauge\nsdwan_broker_connected {}",
            u8::from(self.broker_connected)
        );
        let _ = writeln!(
            o,
            "# HELP sdwan_leader 1 while this replica is the publishing leader\n\
             # TYPE sdwan_leader gauge\nsdwan_leader {}",
            u8::from(self.leader || !self.leader_election)
        );
        let _ = writeln!(
            o,
            "# HELP sdwan_ready 1 once the first complete plan was published\n\
             # TYPE sdwan_ready gauge\nsdwan_ready {}",
            u8::from(self.ready)
        );
        let _ = writeln!(
            o,
            "# HELP sdwan_start_read_bytes bytes of retained documents read at the last start \
             or takeover (status documents only, never zones or proxies)\n\
             # TYPE sdwan_start_read_bytes gauge\n\
             sdwan_start_read_bytes{{kind=\"gateway_status\"}} {}\n\
             sdwan_start_read_bytes{{kind=\"node_status\"}} {}",
            self.start_status_bytes, self.start_node_status_bytes
        );
        let _ = writeln!(
            o,
            "# HELP sdwan_start_read_statuses retained gateway status documents read at the \
             last start or takeover\n# TYPE sdwan_start_read_statuses gauge\n\
             sdwan_start_read_statuses {}",
            self.start_statuses
        );
        let _ = writeln!(
            o,
            "# HELP sdwan_start_read_node_statuses retained worker status documents read at \
             the last start or takeover\n# TYPE sdwan_start_read_node_statuses gauge\n\
             sdwan_start_read_node_statuses {}",
            self.start_node_statuses
        );
        let _ = writeln!(
            o,
            "# HELP sdwan_v2_published_messages_total payload v2 messages published\n\
             # TYPE sdwan_v2_published_messages_total counter"
        );
        for (k, (n, _)) in &self.v2_egress {
            let _ = writeln!(o, "sdwan_v2_published_messages_total{{kind=\"{k}\"}} {n}");
        }
        let _ = writeln!(
            o,
            "# HELP sdwan_v2_published_bytes_total payload v2 payload bytes published\n\
             # TYPE sdwan_v2_published_bytes_total counter"
        );
        for (k, (_, b)) in &self.v2_egress {
            let _ = writeln!(o, "sdwan_v2_published_bytes_total{{kind=\"{k}\"}} {b}");
        }
        self.event_to_publish.render(
            "sdwan_event_to_publish_seconds",
            "first watch event of a burst to the publish of the payloads it changed",
            &mut o,
        );
        self.publish_to_applied.render(
            "sdwan_publish_to_applied_seconds",
            "publish of new content to its agent reporting it in use (gateways: by digest)",
            &mut o,
        );
        self.reach.render(&mut o);
        o
    }
}

/// A status document's `digest`: 16 lower-case hex digits (anything else: none).
pub fn parse_digest(text: &str) -> Option<u64> {
    if text.len() != 16 || !text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    u64::from_str_radix(text, 16).ok()
}

/// One per-agent gauge: name, help, value.
type Series = (&'static str, &'static str, fn(&Convergence) -> Option<f64>);

impl Metrics {
    /// `/readyz`: `Ok` when ready, else the reason. Connected to the broker, and either the
    /// first complete plan published (the leader, or no election) or, for a standby replica,
    /// all watched resources listed (it can take over at once).
    pub fn readiness(&self) -> Result<&'static str, String> {
        let standby = self.leader_election && !self.leader;
        if self.broker_connected && standby && self.synced {
            return Ok("ready (standby)\n");
        }
        if self.broker_connected && !standby && self.ready {
            return Ok("ready\n");
        }
        Err(if standby {
            format!(
                "not ready: standby, cluster listed: {}, broker connected: {}\n",
                self.synced, self.broker_connected
            )
        } else {
            format!(
                "not ready: first plan published: {}, broker connected: {}\n",
                self.ready, self.broker_connected
            )
        })
    }
}

/// Shared metrics handle.
pub type SharedMetrics = Arc<Mutex<Metrics>>;

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain; version=0.0.4; charset=utf-8")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

/// Serves `/metrics`, `/healthz` (always 200 while the process runs) and `/readyz` (200 when
/// [`Metrics::readiness`] says so, else 503 with the reason) on `listener`.
pub async fn serve(listener: tokio::net::TcpListener, metrics: SharedMetrics) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let metrics = metrics.clone();
                async move {
                    let m = metrics.lock().unwrap();
                    let resp = match req.uri().path() {
                        "/metrics" => text(StatusCode::OK, m.render()),
                        "/healthz" => text(StatusCode::OK, "ok\n".into()),
                        "/readyz" => match m.readiness() {
                            Ok(t) => text(StatusCode::OK, t.into()),
                            Err(t) => text(StatusCode::SERVICE_UNAVAILABLE, t),
                        },
                        _ => text(
                            StatusCode::NOT_FOUND,
                            "not found: /metrics /healthz /readyz\n".into(),
                        ),
                    };
                    Ok::<_, Infallible>(resp)
                }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await;
        });
    }
}

/// Binds `addr` and serves in a task. Returns the bound address.
pub async fn spawn(addr: SocketAddr, metrics: SharedMetrics) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(serve(listener, metrics));
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let mut h = Histogram::default();
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_millis(30));
        let mut o = String::new();
        h.render("x_seconds", "help", &mut o);
        assert!(o.contains("x_seconds_bucket{le=\"0.002\"} 0\n"), "{o}");
        assert!(o.contains("x_seconds_bucket{le=\"0.005\"} 1\n"), "{o}");
        assert!(o.contains("x_seconds_bucket{le=\"0.05\"} 2\n"), "{o}");
        assert!(o.contains("x_seconds_bucket{le=\"+Inf\"} 2\n"), "{o}");
        assert!(o.contains("x_seconds_count 2\n"), "{o}");
    }

    fn v2_status(held: u64, digest: &str) -> sdwan_link::Status {
        let mut s = sdwan_link::Status::online(None, None, "0.1.0");
        s.held = Some(held);
        s.digest = Some(digest.to_string());
        s
    }

    #[test]
    fn status_completes_a_pending_publish() {
        let mut m = Metrics::default();
        let t0 = Instant::now();
        m.desired_v2(true, "gw-a", Some(5), Some(5), 0xab, Some(t0));
        assert!(!m.gateways["gw-a"].converged());
        let old = v2_status(4, "00000000000000aa");
        assert_eq!(
            m.status(true, "gw-a", &old, t0 + Duration::from_millis(1)),
            None
        );
        let new = v2_status(5, "00000000000000ab");
        let d = m.status(true, "gw-a", &new, t0 + Duration::from_millis(7));
        assert_eq!(d, Some(Duration::from_millis(7)));
        assert!(m.gateways["gw-a"].converged());
        let text = m.render();
        assert!(
            text.contains("sdwan_gateway_converged{gateway=\"gw-a\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("sdwan_gateway_applied_serial{gateway=\"gw-a\"} 5\n"),
            "{text}"
        );
        assert!(
            text.contains("sdwan_publish_to_applied_seconds_count 1\n"),
            "{text}"
        );
    }

    #[test]
    fn a_gateway_holding_other_content_is_not_converged_whatever_its_version() {
        let mut m = Metrics::default();
        let t0 = Instant::now();
        m.desired_v2(true, "gw-a", Some(5), Some(5), 0xab, Some(t0));
        // The same version with other content (a lying or confused agent), a newer version
        // with other content, no digest at all: never converged.
        for st in [
            v2_status(5, "00000000000000aa"),
            v2_status(6, "00000000000000aa"),
            v2_status(5, "not a digest"),
            sdwan_link::Status::online(Some(5), None, "0.1.0"),
        ] {
            m.status(true, "gw-a", &st, t0);
            assert!(!m.gateways["gw-a"].converged(), "{st:?}");
            assert!(m
                .render()
                .contains("sdwan_gateway_converged{gateway=\"gw-a\"} 0\n"));
        }
        // The desired content reported at a version older than the last published one: the
        // report may be stale (the agent may serve what was published since), not converged;
        // at a version as new or newer (another publisher's, the same content): converged.
        m.status(true, "gw-a", &v2_status(3, "00000000000000ab"), t0);
        assert!(!m.gateways["gw-a"].converged());
        m.status(true, "gw-a", &v2_status(7, "00000000000000ab"), t0);
        assert!(m.gateways["gw-a"].converged());
    }

    #[test]
    fn a_worker_converges_by_digest_not_by_version() {
        let mut m = Metrics::default();
        let t0 = Instant::now();
        m.desired_v2(false, "w1", Some(5), Some(5), 0xab, Some(t0));
        assert!(!m.nodes["w1"].converged());
        // A v1 serial or the right version with other content is not converged.
        let serial = sdwan_link::Status::online(Some(5), None, "0.1.0");
        assert!(m.status(false, "w1", &serial, t0).is_none());
        assert!(!m.nodes["w1"].converged());
        assert!(m
            .status(false, "w1", &v2_status(5, "00000000000000aa"), t0)
            .is_none());
        assert!(!m.nodes["w1"].converged());
        assert!(m
            .status(false, "w1", &v2_status(5, "00000000000000ab"), t0)
            .is_some());
        assert!(m.nodes["w1"].converged());
        assert!(m.render().contains("sdwan_node_converged{node=\"w1\"} 1\n"));
    }

    #[test]
    fn label_values_are_escaped() {
        let mut m = Metrics::default();
        m.desired_v2(false, "a\"b", Some(1), Some(1), 1, None);
        assert!(m.render().contains("{node=\"a\\\"b\"} 1"));
    }
}
