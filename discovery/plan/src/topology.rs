//! The topology file (TOML, `docs/topology.md`): DNS suffix, labels, excluded namespaces and
//! the gateways with their nearness hints and address policy ([`Family`]).

use std::collections::BTreeSet;
use std::fmt;

use serde::Deserialize;

use crate::dns;
use crate::nginx::ProxySettings;

/// Namespaces never exposed unless the topology says otherwise.
pub const DEFAULT_EXCLUDED_NAMESPACES: [&str; 4] = [
    "kube-system",
    "kube-public",
    "kube-node-lease",
    "metallb-system",
];

/// Longest gateway id (payload contract).
pub const MAX_GATEWAY_ID: usize = 64;
/// Largest TTL a payload may carry.
pub const MAX_TTL: u32 = 2_147_483_647;
/// Largest topology file, in bytes (16 MiB: about 100,000 gateways with a few `near` nodes
/// each). toml's parser bounds nesting itself (80 levels of arrays and inline tables).
pub const MAX_TOPOLOGY_BYTES: usize = 16 * 1024 * 1024;

/// The whole topology.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// Zone origin, `k8s.internal` by default (no trailing dot; `.internal` is reserved for
    /// private use and never delegated in the public DNS).
    pub suffix: String,
    /// Label of the nearest-worker name, `local` by default.
    pub local_label: String,
    /// Document TTL of the zone payloads (seconds), 30 by default.
    pub ttl: u32,
    /// TTL of the service records (`<service>.<namespace>`, short names, SRV), 10 by default:
    /// services move more often than nodes.
    pub service_ttl: u32,
    /// Namespaces whose services are never exposed.
    pub exclude_namespaces: BTreeSet<String>,
    /// Gateways, in file order; ids are unique.
    pub gateways: Vec<Gateway>,
    /// Render parameters of the workers' reverse proxy (`[proxy]` table).
    pub proxy: ProxySettings,
    /// Address policy of gateways that do not set their own, [`Family::Dual`] by default.
    pub family: Family,
}

/// A gateway's address policy: the contract's type, so the topology file and payload v2
/// share one spelling (`docs/planning.md`, "address policy").
pub use sdwan_contract::v2::Family;

/// `family = "dual" | "ipv4" | "ipv6"` as the file spells it.
struct FileFamily(Family);

impl<'de> Deserialize<'de> for FileFamily {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Family::parse(&s)
            .map(FileFamily)
            .ok_or_else(|| serde::de::Error::unknown_variant(&s, &["dual", "ipv4", "ipv6"]))
    }
}

/// One branch gateway.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Gateway {
    /// Gateway id: 1..=64 characters of `[A-Za-z0-9._-]`.
    pub id: String,
    /// Nodes labelled `topology.kubernetes.io/zone=<zone>` come right after `near`.
    pub zone: Option<String>,
    /// Node names, nearest first.
    pub near: Vec<String>,
    /// Address policy: the gateway's own `family`, else the topology's.
    pub family: Family,
}

impl Default for Topology {
    fn default() -> Topology {
        Topology {
            suffix: "k8s.internal".into(),
            local_label: "local".into(),
            ttl: 30,
            service_ttl: 10,
            exclude_namespaces: DEFAULT_EXCLUDED_NAMESPACES
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            gateways: Vec::new(),
            proxy: ProxySettings::default(),
            family: Family::Dual,
        }
    }
}

/// A topology file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopologyError {
    /// 1-based line of the offending value, when known.
    pub line: Option<usize>,
    /// Field path, like `gateway[2].id`; empty when the file as a whole is wrong.
    pub field: String,
    /// What is wrong.
    pub kind: TopologyErrorKind,
}

/// The reasons a topology is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopologyErrorKind {
    /// Not TOML, an unknown key or a value of the wrong type (toml's message, which names
    /// the key and shows the line).
    Syntax(String),
    /// A gateway id that the payload contract does not allow.
    BadGatewayId(String),
    /// The same gateway id twice.
    DuplicateGatewayId(String),
    /// `suffix` is not a DNS name of valid labels.
    BadSuffix(String),
    /// `local_label` is not a valid DNS label.
    BadLocalLabel(String),
    /// A TTL above 2,147,483,647.
    BadTtl(u64),
    /// A `[proxy]` value that cannot be put into an nginx configuration (the rule).
    BadProxy(String),
}

impl fmt::Display for TopologyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let TopologyErrorKind::Syntax(msg) = &self.kind {
            return write!(f, "topology: {}", msg.trim_end());
        }
        write!(f, "topology")?;
        if let Some(line) = self.line {
            write!(f, " line {line}")?;
        }
        if !self.field.is_empty() {
            write!(f, ", {}", self.field)?;
        }
        match &self.kind {
            TopologyErrorKind::Syntax(_) => Ok(()),
            TopologyErrorKind::BadGatewayId(id) => write!(
                f,
                ": gateway id {id:?} must be 1..={MAX_GATEWAY_ID} characters of A-Z a-z 0-9 . _ -"
            ),
            TopologyErrorKind::DuplicateGatewayId(id) => {
                write!(f, ": gateway id {id:?} appears more than once")
            }
            TopologyErrorKind::BadSuffix(s) => write!(
                f,
                ": suffix {s:?} must be a DNS name of labels of a-z 0-9 - (at most 63 each, 200 in all)"
            ),
            TopologyErrorKind::BadLocalLabel(s) => write!(
                f,
                ": local_label {s:?} must be one DNS label of a-z 0-9 - (at most 63)"
            ),
            TopologyErrorKind::BadTtl(t) => write!(f, ": ttl {t} is above {MAX_TTL}"),
            TopologyErrorKind::BadProxy(why) => write!(f, ": {why}"),
        }
    }
}

impl std::error::Error for TopologyError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    suffix: Option<toml::Spanned<String>>,
    local_label: Option<toml::Spanned<String>>,
    ttl: Option<toml::Spanned<u64>>,
    service_ttl: Option<toml::Spanned<u64>>,
    exclude_namespaces: Option<Vec<String>>,
    #[serde(default)]
    gateway: Vec<FileGateway>,
    proxy: Option<toml::Spanned<FileProxy>>,
    family: Option<FileFamily>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileProxy {
    listen_port: Option<u16>,
    upstream_host: Option<String>,
    dir: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileGateway {
    id: toml::Spanned<String>,
    zone: Option<String>,
    #[serde(default)]
    near: Vec<String>,
    family: Option<FileFamily>,
}

/// Whether `id` is a gateway id the payload contract allows.
pub fn valid_gateway_id(id: &str) -> bool {
    (1..=MAX_GATEWAY_ID).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl Topology {
    /// Parses and validates a topology file.
    pub fn from_toml(text: &str) -> Result<Topology, TopologyError> {
        if text.len() > MAX_TOPOLOGY_BYTES {
            return Err(TopologyError {
                line: None,
                field: String::new(),
                kind: TopologyErrorKind::Syntax(format!(
                    "the file is {} bytes, the limit is {MAX_TOPOLOGY_BYTES}",
                    text.len()
                )),
            });
        }
        let file: File = toml::from_str(text).map_err(|e| TopologyError {
            line: e.span().map(|s| line_of(text, s.start)),
            field: String::new(),
            kind: TopologyErrorKind::Syntax(e.to_string()),
        })?;
        let err = |span: std::ops::Range<usize>, field: &str, kind| TopologyError {
            line: Some(line_of(text, span.start)),
            field: field.to_owned(),
            kind,
        };
        let mut t = Topology::default();
        if let Some(s) = file.suffix {
            let v = s.get_ref().trim_end_matches('.').to_ascii_lowercase();
            if !dns::valid_name(&v) || v.len() > 200 {
                return Err(err(
                    s.span(),
                    "suffix",
                    TopologyErrorKind::BadSuffix(s.into_inner()),
                ));
            }
            t.suffix = v;
        }
        if let Some(l) = file.local_label {
            if !dns::valid_label(l.get_ref()) {
                return Err(err(
                    l.span(),
                    "local_label",
                    TopologyErrorKind::BadLocalLabel(l.into_inner()),
                ));
            }
            t.local_label = l.into_inner();
        }
        for (field, v, slot) in [
            ("ttl", file.ttl, &mut t.ttl),
            ("service_ttl", file.service_ttl, &mut t.service_ttl),
        ] {
            if let Some(v) = v {
                if *v.get_ref() > u64::from(MAX_TTL) {
                    return Err(err(
                        v.span(),
                        field,
                        TopologyErrorKind::BadTtl(*v.get_ref()),
                    ));
                }
                *slot = *v.get_ref() as u32;
            }
        }
        if let Some(ex) = file.exclude_namespaces {
            t.exclude_namespaces = ex.into_iter().collect();
        }
        if let Some(p) = file.proxy {
            let span = p.span();
            let p = p.into_inner();
            let d = ProxySettings::default();
            let settings = ProxySettings {
                listen_port: p.listen_port.unwrap_or(d.listen_port),
                upstream_host: p.upstream_host.unwrap_or(d.upstream_host),
                dir: p.dir.unwrap_or(d.dir),
            };
            if let Err(why) = settings.check() {
                return Err(err(span, "proxy", TopologyErrorKind::BadProxy(why)));
            }
            t.proxy = settings;
        }
        if let Some(FileFamily(f)) = file.family {
            t.family = f;
        }
        let mut seen = BTreeSet::new();
        for (i, g) in file.gateway.into_iter().enumerate() {
            let span = g.id.span();
            let id = g.id.into_inner();
            let field = format!("gateway[{i}].id");
            if !valid_gateway_id(&id) {
                return Err(err(span, &field, TopologyErrorKind::BadGatewayId(id)));
            }
            if !seen.insert(id.clone()) {
                return Err(err(span, &field, TopologyErrorKind::DuplicateGatewayId(id)));
            }
            t.gateways.push(Gateway {
                id,
                zone: g.zone.filter(|z| !z.is_empty()),
                near: g.near,
                family: g.family.map_or(t.family, |f| f.0),
            });
        }
        Ok(t)
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}
