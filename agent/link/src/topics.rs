//! Topic names. Under a prefix `P` (default [`DEFAULT_PREFIX`]):
//! `P/gateways/ID/zone`, `P/gateways/ID/status`, `P/nodes/NODE/proxy`, `P/nodes/NODE/status`.

use crate::LinkError;

/// The default topic prefix.
pub const DEFAULT_PREFIX: &str = "sdwan/v1/default";

/// What a topic under the prefix is, with the gateway id or node name it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicKind<'a> {
    /// `P/gateways/ID/zone`
    GatewayZone(&'a str),
    /// `P/gateways/ID/status`
    GatewayStatus(&'a str),
    /// `P/nodes/NODE/proxy`
    NodeProxy(&'a str),
    /// `P/nodes/NODE/status`
    NodeStatus(&'a str),
}

/// Topic builder for one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    prefix: String,
}

impl Default for Topics {
    fn default() -> Self {
        Topics {
            prefix: DEFAULT_PREFIX.to_string(),
        }
    }
}

/// Checks one topic level (gateway id, node name): non-empty, no wildcard, separator or NUL.
pub fn check_segment(what: &'static str, value: &str) -> Result<(), LinkError> {
    if value.is_empty() || value.contains(['+', '#', '/', '\0']) {
        return Err(LinkError::BadTopicSegment {
            what,
            value: value.to_string(),
        });
    }
    Ok(())
}

impl Topics {
    /// A builder for `prefix` (a trailing `/` is dropped). The prefix may hold several levels
    /// but no wildcards or empty levels.
    pub fn new(prefix: &str) -> Result<Topics, LinkError> {
        let prefix = prefix.strip_suffix('/').unwrap_or(prefix);
        if prefix.is_empty()
            || prefix.contains(['+', '#', '\0'])
            || prefix.split('/').any(str::is_empty)
        {
            return Err(LinkError::BadTopicSegment {
                what: "topic prefix",
                value: prefix.to_string(),
            });
        }
        Ok(Topics {
            prefix: prefix.to_string(),
        })
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `P/gateways/ID/zone`: the gateway's zone payload (retained, QoS 1).
    pub fn gateway_zone(&self, gateway: &str) -> String {
        format!("{}/gateways/{gateway}/zone", self.prefix)
    }
    /// `P/gateways/ID/v2/LEAF` (`LEAF`: `part/K`, `part/+`, `tail`, `delta`, `#`): payload v2
    /// topics of a gateway (`docs/payload-v2.md`).
    pub fn gateway_v2(&self, gateway: &str, leaf: &str) -> String {
        format!("{}/gateways/{gateway}/v2/{leaf}", self.prefix)
    }
    /// `P/gateways/ID/status`: the gateway agent's status document (retained).
    pub fn gateway_status(&self, gateway: &str) -> String {
        format!("{}/gateways/{gateway}/status", self.prefix)
    }
    /// `P/nodes/NODE/proxy`: the worker's proxy payload (retained, QoS 1).
    pub fn node_proxy(&self, node: &str) -> String {
        format!("{}/nodes/{node}/proxy", self.prefix)
    }
    /// `P/nodes/NODE/status`: the worker agent's status document (retained).
    pub fn node_status(&self, node: &str) -> String {
        format!("{}/nodes/{node}/status", self.prefix)
    }
    /// `P/gateways/+/status`: every gateway's status (for the master).
    pub fn all_gateway_status(&self) -> String {
        format!("{}/gateways/+/status", self.prefix)
    }
    /// `P/nodes/+/status`: every worker's status (for the master).
    pub fn all_node_status(&self) -> String {
        format!("{}/nodes/+/status", self.prefix)
    }

    /// Recognises one of the four topics under this prefix.
    pub fn parse<'t>(&self, topic: &'t str) -> Option<TopicKind<'t>> {
        let rest = topic
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix('/')?;
        let mut parts = rest.split('/');
        let (group, name, leaf) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || check_segment("", name).is_err() {
            return None;
        }
        match (group, leaf) {
            ("gateways", "zone") => Some(TopicKind::GatewayZone(name)),
            ("gateways", "status") => Some(TopicKind::GatewayStatus(name)),
            ("nodes", "proxy") => Some(TopicKind::NodeProxy(name)),
            ("nodes", "status") => Some(TopicKind::NodeStatus(name)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_the_four_topics() {
        let t = Topics::default();
        assert_eq!(
            t.gateway_zone("gw-a"),
            "sdwan/v1/default/gateways/gw-a/zone"
        );
        assert_eq!(
            t.gateway_status("gw-a"),
            "sdwan/v1/default/gateways/gw-a/status"
        );
        assert_eq!(t.node_proxy("w1"), "sdwan/v1/default/nodes/w1/proxy");
        assert_eq!(
            t.gateway_v2("gw-a", "part/3"),
            "sdwan/v1/default/gateways/gw-a/v2/part/3"
        );
        assert_eq!(t.node_status("w1"), "sdwan/v1/default/nodes/w1/status");
        let t = Topics::new("x/y/").unwrap();
        assert_eq!(t.all_gateway_status(), "x/y/gateways/+/status");
        assert_eq!(t.all_node_status(), "x/y/nodes/+/status");
    }

    #[test]
    fn parses_its_own_topics_only() {
        let t = Topics::new("p/q").unwrap();
        assert_eq!(
            t.parse("p/q/gateways/g1/zone"),
            Some(TopicKind::GatewayZone("g1"))
        );
        assert_eq!(
            t.parse("p/q/gateways/g1/status"),
            Some(TopicKind::GatewayStatus("g1"))
        );
        assert_eq!(
            t.parse("p/q/nodes/n/proxy"),
            Some(TopicKind::NodeProxy("n"))
        );
        assert_eq!(
            t.parse("p/q/nodes/n/status"),
            Some(TopicKind::NodeStatus("n"))
        );
        for bad in [
            "p/gateways/g1/zone",
            "p/qq/gateways/g1/zone",
            "p/q/gateways//zone",
            "p/q/gateways/g1/zone/x",
            "p/q/gateways/g1/proxy",
            "p/q/nodes/n",
        ] {
            assert_eq!(t.parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn refuses_wildcards_in_prefix_and_segments() {
        for bad in ["", "/", "a/+/b", "a/#", "a//b"] {
            assert!(Topics::new(bad).is_err(), "{bad}");
        }
        assert!(check_segment("gateway id", "gw/1").is_err());
        assert!(check_segment("gateway id", "gw+").is_err());
        assert!(check_segment("gateway id", "").is_err());
        assert!(check_segment("gateway id", "gw-1.a_b").is_ok());
    }
}
