//! `sdwan-discovery plan`: cluster dumps + topology -> payload files, no network.
//!
//! Per gateway it writes the zone payload v1 (`<id>.json`, what `sdwan-agent --zone-file`
//! always read) and the payload v2 snapshot (`<id>.v2.jsonl`: its parts, one message per
//! line, the file an agent keeps in `--state-dir` as `zone-v2.jsonl`; what the master would
//! publish, at version `--serial`). A gateway image can carry either, to answer from its
//! first boot before it ever reached the broker.

use std::path::{Path, PathBuf};

use sdwan_plan::{Snapshot, Topology};

use crate::cli::PlanArgs;
use crate::Error;

/// Reads at most `max + 1` bytes of `path` (what is beyond the limit need not be read to
/// refuse the file, and `/dev/zero` must not fill the memory).
fn read_bounded(path: &Path, max: usize) -> Result<Vec<u8>, Error> {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(max as u64 + 1).read_to_end(&mut bytes))
        .map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(bytes)
}

/// Reads and merges `kubectl get nodes,services,endpointslices -A -o json` dumps.
pub fn load_cluster(files: &[PathBuf]) -> Result<Snapshot, Error> {
    let mut snap = Snapshot::new();
    for f in files {
        let bytes = read_bounded(f, sdwan_plan::snapshot::CLUSTER_FILE.max_bytes)?;
        snap.merge_kubectl_json(&bytes)
            .map_err(|source| Error::Cluster {
                path: f.clone(),
                source,
            })?;
    }
    Ok(snap)
}

/// Reads the topology file.
pub fn load_topology(path: &Path) -> Result<Topology, Error> {
    let bytes = read_bounded(path, sdwan_plan::topology::MAX_TOPOLOGY_BYTES)?;
    let text = String::from_utf8(bytes).map_err(|e| Error::Read {
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.utf8_error()),
    })?;
    Topology::from_toml(&text).map_err(|source| Error::Topology {
        path: path.to_path_buf(),
        source,
    })
}

fn write(path: PathBuf, bytes: &[u8]) -> Result<(), Error> {
    std::fs::write(&path, bytes).map_err(|source| Error::Write { path, source })
}

/// What `plan` wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Written {
    /// Gateway ids.
    pub gateways: Vec<String>,
    /// Node names.
    pub nodes: Vec<String>,
    /// Planner warnings.
    pub warnings: Vec<String>,
}

/// A gateway's payload v2 snapshot as one file: its parts, each a line.
fn v2_file(zones: &sdwan_plan::v2::Zones, gateway: &str, version: u64) -> Result<Vec<u8>, String> {
    let snapshot = zones
        .snapshot(gateway, sdwan_contract::v2::Version(version))
        .ok_or_else(|| format!("gateway {gateway:?} is not in the topology"))?;
    let parts = snapshot.encode().map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for p in parts {
        out.extend_from_slice(&p);
        out.push(b'\n');
    }
    Ok(out)
}

/// Plans and writes `OUT/gateways/<id>.json`, `OUT/gateways/<id>.v2.jsonl` and
/// `OUT/nodes/<node>.json`.
pub fn run(args: &PlanArgs) -> Result<Written, Error> {
    let snap = load_cluster(&args.cluster_files)?;
    let topo = load_topology(&args.topology)?;
    let plan = sdwan_plan::plan(&snap, &topo);
    let zones = sdwan_plan::v2::zones(&snap, &topo);
    let gdir = args.out.join("gateways");
    let ndir = args.out.join("nodes");
    for d in [&gdir, &ndir] {
        std::fs::create_dir_all(d).map_err(|source| Error::Write {
            path: d.clone(),
            source,
        })?;
    }
    let mut w = Written::default();
    for (id, content) in &plan.gateways {
        write(
            gdir.join(format!("{id}.json")),
            &content.render(id, args.serial),
        )?;
        let path = gdir.join(format!("{id}.v2.jsonl"));
        let v2 = v2_file(&zones, id, u64::from(args.serial)).map_err(|e| Error::Write {
            path: path.clone(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        })?;
        write(path, &v2)?;
        w.gateways.push(id.clone());
    }
    for (node, content) in &plan.nodes {
        write(
            ndir.join(format!("{node}.json")),
            &content.render(node, args.serial),
        )?;
        w.nodes.push(node.clone());
    }
    w.warnings = plan.warnings.iter().map(ToString::to_string).collect();
    w.warnings
        .extend(zones.warnings().iter().map(|x| format!("v2: {x}")));
    Ok(w)
}
