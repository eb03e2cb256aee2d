//! Pure planning: cluster model + topology -> zone payload per gateway and proxy payload per
//! worker. No I/O, no async: data in, payload bytes out (`docs/planning.md`).
//!
//! Layout:
//! - [`snapshot`]: the cluster model ([`Snapshot`]) filled from k8s-openapi Nodes, Services
//!   and EndpointSlices, or from `kubectl get ... -o json` output; [`InputError`].
//! - [`topology`]: the topology file ([`Topology`], `docs/topology.md`), with each gateway's
//!   address policy ([`Family`]); [`TopologyError`].
//! - [`plan`](mod@plan): [`plan()`] and the public paths of its result: [`ZoneContent`] per
//!   gateway (rendered to zone payload v1, `docs/payload.md`), [`ProxyContent`] per worker
//!   (`docs/payload-proxy.md`), [`Warning`]s. The code behind it, by concern (private
//!   modules): `content` (the limits, `Record`, `Warning`, the shared `Cluster`, a gateway
//!   class's `Order`, the two contents and their accessors), `pieces` (building workers,
//!   services and orders from the snapshot), `records` (record generation), `budget` (the
//!   record budget that keeps every payload inside the contract's limits), `render`
//!   (payload bytes), `equality` (is a content the same as in the last plan), `listing`
//!   ([`ProxyService`], [`ProxyPort`]: what the proxy payload lists).
//! - [`planner`]: [`Planner`], which keeps state and re-plans only what a [`Change`] touches.
//! - [`v2`]: payload v2 content per gateway (issue 11): [`v2::zones`] plans every gateway,
//!   [`v2::Zones::snapshot`] gives one gateway's `sdwan_contract::v2::encode::Snapshot`.
//! - [`proxy_v2`]: proxy payload v2 content per worker (issue 11): [`proxy_v2::proxies`]
//!   plans every worker, [`proxy_v2::Proxies::snapshot`] gives one worker's
//!   `sdwan_contract::v2::proxy::ProxySnapshot`.
//! - [`dns`]: DNS label and name rules.
//! - [`nginx`]: the reverse proxy's files (nginx `sdwan.conf`, `help.html`) rendered into
//!   proxy payload v1 by `sdwan-render`, with [`nginx::ProxySettings`] from the topology's
//!   `[proxy]` table.
//!
//! Module graph: each module imports (`use crate::...`) only modules of a lower layer, so
//! there is no cycle (`grep -n '^use crate' src/*.rs` shows the edges):
//!
//! ```text
//! layer  module     imports
//!   8    v2         plan, snapshot, topology
//!   8    proxy_v2   plan, content, snapshot
//!   7    plan       planner, content, listing, pieces, snapshot, topology
//!   6    planner    budget, content, pieces, snapshot, topology
//!   5    budget     content
//!   5    pieces     content, dns, snapshot, topology
//!   5    records    content, topology
//!   5    render     content, listing, nginx          (+ methods of `records`)
//!   5    equality   content                          (+ methods of `records`)
//!   4    content    listing, nginx, snapshot, topology
//!   3    topology   dns, nginx
//!   2    nginx      dns, listing
//!   1    listing    snapshot
//!   0    dns, snapshot
//! ```
#![forbid(unsafe_code)]

mod budget;
mod content;
pub mod dns;
mod equality;
mod listing;
pub mod nginx;
mod pieces;
pub mod plan;
pub mod planner;
pub mod proxy_v2;
mod records;
mod render;
pub mod snapshot;
pub mod topology;
pub mod v2;

pub use plan::{
    plan, Plan, ProxyContent, ProxyPort, ProxyService, Record, RecordType, Warning, ZoneContent,
};
pub use planner::{Change, Changed, Planner};
pub use snapshot::{
    InputError, InputErrorKind, NodeInfo, PortInfo, Protocol, ServiceInfo, Snapshot,
};
pub use topology::{Family, Gateway, Topology, TopologyError, TopologyErrorKind};
