//! sdwan-discovery: the master. Watches Kubernetes, plans, publishes changed payloads over MQTT.
//!
//! Layout (the planning itself is the pure `sdwan-plan` crate; this crate is the I/O around it):
//! - [`cli`]: flags of `run` (the default) and `plan`.
//! - [`watch`]: kube-rs watchers on Nodes, Services, EndpointSlices -> [`watch::WatchMsg`]; a
//!   (re)list arrives as one complete list, never piecemeal.
//! - [`controller`]: the loop: bursts coalesced (an isolated change at once, then debounce,
//!   bounded delay), one plan per burst; gateways' payload v2 through [`publish::Publisher`]
//!   (a start reads the retained statuses, never zones), workers' v1 proxy payloads with
//!   serials continued from the retained ones; convergence from the agents' status documents
//!   (gateways by content digest).
//! - [`publish`]: the payload v2 publisher, a pure state machine.
//! - [`metrics`]: convergence state, Prometheus text on `/metrics`, `/healthz`, `/readyz`.
//! - [`reach`]: the gateways' view of the workers (issue 14), as metrics and log lines.
//! - [`leader`]: leader election through a coordination.k8s.io Lease (one replica publishes),
//!   and [`leader::API_CALLS`], every Kubernetes API call the master makes.
//! - [`broker`]: the embedded rumqttd broker used when no `--broker` is given.
//! - [`offline`]: `sdwan-discovery plan` (files in, files out).
//!
//! MQTT and TLS options come from `sdwan-link`, shared with the agent.
#![forbid(unsafe_code)]

pub mod broker;
pub mod cli;
pub mod controller;
pub mod leader;
pub mod metrics;
pub mod offline;
pub mod publish;
pub mod reach;
pub mod watch;

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sdwan_link::{BrokerUrl, LinkOptions, Topics};

use crate::cli::RunArgs;
use crate::controller::{Controller, Source, Timing};
use crate::metrics::{Metrics, SharedMetrics};

/// After the shutdown signal, how long the controller may take to finish its current step
/// (a flush, the retained read) and the leader to release its Lease, each. Whatever the
/// broker and the API server do, `run` returns within about twice this (issue 12: a master
/// with publishes queued to a broker that stopped reading ignored SIGTERM).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Why the master (or `plan`) stopped.
#[derive(Debug)]
pub enum Error {
    /// A file could not be read.
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// An output file or directory could not be written.
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A cluster dump is not usable; the source names the object and field.
    Cluster {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        source: sdwan_plan::InputError,
    },
    /// The topology file is not usable; the source names the field.
    Topology {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        source: sdwan_plan::TopologyError,
    },
    /// Broker URL, TLS files, credentials or topic prefix.
    Link(sdwan_link::LinkError),
    /// The embedded broker could not start.
    Broker(broker::BrokerError),
    /// No Kubernetes configuration (kubeconfig or in-cluster) could be loaded.
    Kube(String),
    /// The metrics address could not be bound.
    Metrics {
        /// The address.
        addr: std::net::SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Read { path, source } => write!(f, "{}: cannot read: {source}", path.display()),
            Error::Write { path, source } => {
                write!(f, "{}: cannot write: {source}", path.display())
            }
            Error::Cluster { path, source } => write!(f, "{}: {source}", path.display()),
            Error::Topology { path, source } => write!(f, "{}: {source}", path.display()),
            Error::Link(e) => write!(f, "{e}"),
            Error::Broker(e) => write!(f, "{e}"),
            Error::Kube(e) => write!(f, "kubernetes: {e}"),
            Error::Metrics { addr, source } => write!(f, "--metrics {addr}: {source}"),
        }
    }
}

impl std::error::Error for Error {}

async fn kube_client(args: &RunArgs) -> Result<kube::Client, Error> {
    let config = match &args.kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| Error::Kube(format!("{}: {e}", path.display())))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| Error::Kube(format!("{}: {e}", path.display())))?
        }
        None => kube::Config::infer().await.map_err(|e| {
            Error::Kube(format!("no in-cluster config and no kubeconfig ({e}); use --kubeconfig FILE or --cluster-file FILE"))
        })?,
    };
    log::info!("kubernetes: {}", config.cluster_url);
    kube::Client::try_from(config).map_err(|e| Error::Kube(e.to_string()))
}

/// Handles to a running master (for tests and `main`).
#[derive(Debug, Clone)]
pub struct Running {
    /// Metrics and convergence.
    pub metrics: SharedMetrics,
    /// Where `/metrics` is served, if it is.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// The embedded broker's address, if one runs.
    pub embedded_broker: Option<std::net::SocketAddr>,
}

/// Runs the master until `shutdown` resolves. `started` is called once everything listens.
pub async fn run(
    args: RunArgs,
    shutdown: impl Future<Output = ()>,
    started: impl FnOnce(&Running),
) -> Result<(), Error> {
    let topology = offline::load_topology(&args.topology)?;
    let topics = Topics::new(&args.topic_prefix).map_err(Error::Link)?;
    let static_snapshot = if args.cluster_files.is_empty() {
        None
    } else {
        Some(offline::load_cluster(&args.cluster_files)?)
    };

    let (broker_url, embedded) = match &args.broker {
        Some(url) => (BrokerUrl::parse(url).map_err(Error::Link)?, None),
        None => {
            let addr = broker::start(args.embedded_broker).map_err(Error::Broker)?;
            log::info!(
                "no --broker given: embedded MQTT broker (rumqttd, plain MQTT, no TLS) listening on {addr}; \
                 agents connect with --broker mqtt://{addr}"
            );
            let url = BrokerUrl::parse_quiet(&format!("mqtt://{addr}")).map_err(Error::Link)?;
            (url, Some(addr))
        }
    };
    let leader_elect = args.leader_elect.unwrap_or(
        leader::in_cluster() && args.cluster_files.is_empty() && args.kubeconfig.is_none(),
    );
    let identity = args
        .identity
        .clone()
        .unwrap_or_else(leader::default_identity);
    // Replicas must not share an MQTT client id (the broker would disconnect one for the other).
    let client_id = if leader_elect && args.client_id == format!("sdwan-discovery-{}", args.cluster)
    {
        format!("{}-{identity}", args.client_id)
    } else {
        args.client_id.clone()
    };
    let mut link = LinkOptions::new(broker_url, &client_id);
    link.ca = args.ca.clone();
    link.cert = args.cert.clone();
    link.key = args.key.clone();
    link.username = args.username.clone();
    link.password_file = args.password_file.clone();
    link.clean_session = true;
    // TCP_NODELAY and the other link-wide network options come with the shared client.
    let (client, eventloop) = link.async_client(1024).map_err(Error::Link)?;

    let metrics: SharedMetrics = Arc::new(Mutex::new(Metrics {
        leader_election: leader_elect,
        ..Metrics::default()
    }));
    let metrics_addr = match args.metrics {
        Some(addr) => Some(
            metrics::spawn(addr, metrics.clone())
                .await
                .map_err(|source| Error::Metrics { addr, source })?,
        ),
        None => None,
    };
    if let Some(a) = metrics_addr {
        log::info!("metrics on http://{a}/metrics (also /healthz, /readyz)");
    }

    let mut election = None;
    let source = match static_snapshot {
        Some(snap) => {
            log::info!(
                "static cluster from {} file(s); not watching Kubernetes",
                args.cluster_files.len()
            );
            Source::Static(Box::new(snap))
        }
        None => {
            let client = kube_client(&args).await?;
            if leader_elect {
                let cfg = leader::LeaseConfig {
                    name: args.lease_name.clone(),
                    namespace: args
                        .lease_namespace
                        .clone()
                        .unwrap_or_else(leader::default_namespace),
                    identity: identity.clone(),
                    timing: args.lease,
                };
                election = Some(leader::spawn(client.clone(), cfg));
            }
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            watch::spawn(client, tx);
            Source::Watch(rx)
        }
    };
    let (in_tx, in_rx) = tokio::sync::mpsc::unbounded_channel();
    let timing = Timing {
        debounce: args.debounce,
        max_delay: args.max_delay,
        retained_wait: args.retained_wait,
    };
    let ctl = Controller::new(topics, client, metrics.clone(), timing, topology);
    let counts = ctl.publish_counts();
    let mqtt_task = tokio::spawn(controller::mqtt_loop(eventloop, in_tx, counts.clone()));
    let (ctl, election) = match election {
        Some((election, leadership)) => (ctl.with_leadership(leadership), Some(election)),
        None => (ctl, None),
    };
    started(&Running {
        metrics,
        metrics_addr,
        embedded_broker: embedded,
    });
    // The controller sees the stop between its steps; a step blocked on the broker (publishes
    // queued to a broker that stopped reading) or on the connection gets SHUTDOWN_GRACE, then
    // is dropped with what it had not sent.
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let ctl_run = ctl.run(source, in_rx, async {
        let _ = stop_rx.await;
    });
    tokio::pin!(ctl_run);
    tokio::pin!(shutdown);
    let signalled = tokio::select! {
        _ = &mut ctl_run => false,
        _ = &mut shutdown => true,
    };
    let mut cut_short = false;
    if signalled {
        let _ = stop_tx.send(());
        cut_short = tokio::time::timeout(SHUTDOWN_GRACE, &mut ctl_run)
            .await
            .is_err();
    }
    if let Some(e) = election {
        // Publishing has stopped: hand the Lease over now rather than after its duration.
        if tokio::time::timeout(SHUTDOWN_GRACE, e.release())
            .await
            .is_err()
        {
            log::warn!("lease not released within {SHUTDOWN_GRACE:?}: a standby takes over after the lease duration");
        }
    }
    mqtt_task.abort();
    let abandoned = counts.pending();
    log::info!(
        "shutting down, {abandoned} publishes abandoned{}",
        if cut_short {
            format!(" (the controller's step, blocked on the broker, was cut short after {SHUTDOWN_GRACE:?})")
        } else {
            String::new()
        }
    );
    Ok(())
}
