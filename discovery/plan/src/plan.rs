//! The plan: cluster model + topology -> zone content per gateway, proxy content per worker.
//!
//! Structure (for scale, see `docs/planning.md`): one shared `Cluster` view per plan (Ready
//! workers, exposed services with their hosting workers, the record budget) and one nearness
//! `Order` per distinct gateway class (gateways with the same filtered `near` list and
//! `zone` and address policy share it). A [`ZoneContent`] is the pair; its records are
//! produced when rendered, so planning 2,000 gateways does not build 2,000 record lists.
//!
//! This module is the entry point [`plan()`] and the public paths of the plan's types; the
//! code is split by concern (the crate root's layout shows the modules and their imports).

pub use crate::content::{
    Plan, ProxyContent, Record, RecordType, Warning, ZoneContent, APEX_TXT, MAX_PAYLOAD_BYTES,
    MAX_PROXY_NODES, MAX_RECORDS, MAX_SRV_TARGETS,
};
pub use crate::listing::{ProxyPort, ProxyService};
// What `v2` builds its payloads from.
pub(crate) use crate::content::Worker;
pub(crate) use crate::pieces::{plan_service, set_short};

use crate::planner::Planner;
use crate::snapshot::Snapshot;
use crate::topology::Topology;

/// Plans from scratch: the pure entry point. For repeated planning use
/// [`Planner`], which re-plans only what a change touches.
pub fn plan(snapshot: &Snapshot, topology: &Topology) -> Plan {
    Planner::new(snapshot.clone(), topology.clone())
        .plan()
        .clone()
}
