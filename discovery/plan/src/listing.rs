//! Services as the proxy payload lists them ([`ProxyService`], [`ProxyPort`]): what
//! [`crate::ProxyContent`] gives out and what `nginx` renders from.

use crate::snapshot::Protocol;

/// One service port as the proxy payload lists it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ProxyPort {
    /// Port name, if any.
    pub name: Option<String>,
    /// Protocol.
    pub protocol: Protocol,
    /// Service port.
    pub port: u16,
    /// NodePort to proxy to.
    pub node_port: u16,
}

/// A service as the proxy payload lists it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ProxyService {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// No other exposed service has this name (so `/<name>/` may be used).
    pub unique: bool,
    /// Ports with a nodePort.
    pub ports: Vec<ProxyPort>,
}
