//! kube-rs watchers on Nodes, Services and EndpointSlices, turned into [`WatchMsg`]s.
//!
//! A (re)list is never passed on piecemeal: the objects of `Init`..`InitApply`..`InitDone`
//! are collected and sent as one [`WatchMsg::Listed`], which the controller swaps in for
//! that resource at once. So a 410 Gone (relist) never shows a transient empty cluster.
//! Dropped connections re-watch from the last resourceVersion (kube-rs does that), with
//! kube-rs' default backoff on errors.

use std::time::Instant;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};
use sdwan_plan::Change;
use tokio::sync::mpsc::UnboundedSender;

/// The three watched resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Resource {
    /// v1 Nodes.
    Nodes,
    /// v1 Services.
    Services,
    /// discovery.k8s.io/v1 EndpointSlices.
    EndpointSlices,
}

impl Resource {
    /// All three.
    pub const ALL: [Resource; 3] = [
        Resource::Nodes,
        Resource::Services,
        Resource::EndpointSlices,
    ];

    /// The API plural.
    pub fn as_str(self) -> &'static str {
        match self {
            Resource::Nodes => "nodes",
            Resource::Services => "services",
            Resource::EndpointSlices => "endpointslices",
        }
    }
}

/// What the watchers tell the controller.
#[derive(Debug)]
pub enum WatchMsg {
    /// One object added, modified or deleted, at `at`.
    Event(Resource, Change, Instant),
    /// A complete list of one resource (at start and after every relist), at `at`.
    Listed(Resource, Vec<Change>, Instant),
    /// A watch error; the watcher retries with backoff.
    Error(Resource, String),
}

fn ns_name(m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> (String, String) {
    (
        m.namespace.clone().unwrap_or_default(),
        m.name.clone().unwrap_or_default(),
    )
}

fn node_change(n: Node) -> Change {
    Change::Node(Box::new(n))
}
fn node_delete(n: Node) -> Change {
    Change::NodeDeleted(n.metadata.name.unwrap_or_default())
}
fn service_change(s: Service) -> Change {
    Change::Service(Box::new(s))
}
fn service_delete(s: Service) -> Change {
    let (namespace, name) = ns_name(&s.metadata);
    Change::ServiceDeleted { namespace, name }
}
fn slice_change(s: EndpointSlice) -> Change {
    Change::Slice(Box::new(s))
}
fn slice_delete(s: EndpointSlice) -> Change {
    let (namespace, name) = ns_name(&s.metadata);
    Change::SliceDeleted { namespace, name }
}

async fn run<K>(
    api: Api<K>,
    resource: Resource,
    apply: fn(K) -> Change,
    delete: fn(K) -> Change,
    tx: UnboundedSender<WatchMsg>,
) where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    // Lists are consistent reads (not from the API server's cache), so a relist never goes back
    // to an older state than the one already published.
    let config = watcher::Config::default();
    let mut stream = watcher::watcher(api, config).default_backoff().boxed();
    let mut listing: Vec<Change> = Vec::new();
    while let Some(item) = stream.next().await {
        let msg = match item {
            Ok(Event::Init) => {
                listing.clear();
                continue;
            }
            Ok(Event::InitApply(o)) => {
                listing.push(apply(o));
                continue;
            }
            Ok(Event::InitDone) => {
                log::info!("{}: listed {} objects", resource.as_str(), listing.len());
                WatchMsg::Listed(resource, std::mem::take(&mut listing), Instant::now())
            }
            Ok(Event::Apply(o)) => WatchMsg::Event(resource, apply(o), Instant::now()),
            Ok(Event::Delete(o)) => WatchMsg::Event(resource, delete(o), Instant::now()),
            Err(e) => {
                log::warn!("{}: watch error (retrying): {e}", resource.as_str());
                WatchMsg::Error(resource, e.to_string())
            }
        };
        if tx.send(msg).is_err() {
            return;
        }
    }
}

/// Starts the three watchers as tasks sending into `tx`.
pub fn spawn(client: Client, tx: UnboundedSender<WatchMsg>) -> Vec<tokio::task::JoinHandle<()>> {
    vec![
        tokio::spawn(run(
            Api::<Node>::all(client.clone()),
            Resource::Nodes,
            node_change,
            node_delete,
            tx.clone(),
        )),
        tokio::spawn(run(
            Api::<Service>::all(client.clone()),
            Resource::Services,
            service_change,
            service_delete,
            tx.clone(),
        )),
        tokio::spawn(run(
            Api::<EndpointSlice>::all(client),
            Resource::EndpointSlices,
            slice_change,
            slice_delete,
            tx,
        )),
    ]
}
