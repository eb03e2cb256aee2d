//! Pure planning: cluster model + topology -> zone payload per gateway and proxy payload per
//! worker. No I/O, no async: data in, payload bytes out (`docs/planning.md`).
//!
//! Layout:
//! - [`snapshot`]: the cluster model ([`Snapshot`]) filled from k8s-openapi Nodes, Services
//!   and EndpointSlices, or from `kubectl get ... -o json` output; [`InputError`].
//! - [`topology`]: the topology file ([`Topology`], `docs/topology.md`), with each gateway's
//!   address policy ([`Family`]); [`TopologyError`].
//! - [`plan`](mod@plan): [`plan()`] and its result: [`ZoneContent`] per gateway (rendered to
//!   zone payload v1, `docs/payload.md`), [`ProxyContent`] per worker
//!   (`docs/payload-proxy.md`), [`Warning`]s; the record budget that keeps every payload
//!   inside the contract's limits.
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

pub mod dns;
pub mod nginx;
pub mod plan;
pub mod planner;
pub mod proxy_v2;
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
