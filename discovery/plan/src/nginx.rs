//! The files of a worker's reverse proxy for proxy payload v1 (`docs/proxy.md`,
//! `docs/payload-proxy.md`): the nginx server configuration `sdwan.conf` and the help page
//! `help.html`, rendered by `sdwan-render` (the renderer the worker agent links for proxy
//! payload v2). This module keeps the topology's [`ProxySettings`] and turns a [`ProxyView`]
//! into the renderer's input ([`to_snapshot`]); the renderer checks every name and number
//! that reaches the nginx configuration again, whatever the planner already checked.

use sdwan_contract::v2::proxy as v2p;
use sdwan_contract::v2::Str;

use crate::dns;
use crate::listing::{ProxyPort, ProxyService};

pub use sdwan_render::{escape_html, CONF_FILE, HELP_FILE};

/// Render parameters from the topology's `[proxy]` table (`docs/topology.md`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxySettings {
    /// Port nginx listens on for the proxy server (default 80).
    pub listen_port: u16,
    /// Host the NodePorts are reached on from nginx (default `127.0.0.1`): an IPv4 or IPv6
    /// literal or a DNS name.
    pub upstream_host: String,
    /// Absolute directory of the proxy files on the workers (default `/etc/nginx/sdwan`).
    pub dir: String,
}

impl Default for ProxySettings {
    fn default() -> Self {
        ProxySettings {
            listen_port: 80,
            upstream_host: "127.0.0.1".into(),
            dir: "/etc/nginx/sdwan".into(),
        }
    }
}

impl ProxySettings {
    /// Checks every field; the error names the field and the rule.
    pub fn check(&self) -> Result<(), String> {
        if self.listen_port == 0 {
            return Err("listen_port must be 1..=65535".into());
        }
        if !valid_upstream_host(&self.upstream_host) {
            return Err(format!(
                "upstream_host {:?} must be an IPv4 or IPv6 address or a DNS name",
                self.upstream_host
            ));
        }
        if !valid_dir(&self.dir) {
            return Err(format!(
                "dir {:?} must be an absolute path of A-Z a-z 0-9 . _ - / without '..', at most 200 characters",
                self.dir
            ));
        }
        Ok(())
    }

    /// The directory without a trailing `/`.
    pub fn dir_trimmed(&self) -> &str {
        match self.dir.trim_end_matches('/') {
            "" => "/",
            d => d,
        }
    }
}

/// An IP literal or a DNS name of letters, digits and `-`.
pub fn valid_upstream_host(h: &str) -> bool {
    h.parse::<std::net::IpAddr>().is_ok()
        || (!h.is_empty()
            && h.len() <= 253
            && h.split('.').all(|l| {
                (1..=63).contains(&l.len())
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            }))
}

/// An absolute path of `[A-Za-z0-9._/-]`, no `..` component, at most 200 characters.
pub fn valid_dir(d: &str) -> bool {
    d.starts_with('/')
        && d.len() <= 200
        && d.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/'))
        && !d.split('/').any(|c| c == "..")
}

/// A label that may appear in a location path or a host name: [`dns::valid_label`].
pub fn safe_label(s: &str) -> bool {
    dns::valid_label(s)
}

/// Everything the two files are rendered from.
#[derive(Debug, Clone)]
pub struct ProxyView<'a> {
    /// This worker's node name.
    pub node: &'a str,
    /// Zone suffix (`k8s.internal`).
    pub suffix: &'a str,
    /// Label of the nearest-worker name (`local`).
    pub local_label: &'a str,
    /// Render parameters.
    pub settings: &'a ProxySettings,
    /// Services with a ready endpoint on this worker.
    pub local: &'a [ProxyService],
    /// Services elsewhere, with up to 8 workers holding them.
    pub elsewhere: &'a [(ProxyService, Vec<String>)],
}

/// The port a service is proxied to: the first TCP port named `http`, else the first TCP
/// port; only ports with a NodePort in 1..=65535 count (`sdwan_render::http_port`).
pub fn http_port(s: &ProxyService) -> Option<&ProxyPort> {
    let tcp = || {
        s.ports
            .iter()
            .filter(|p| p.protocol == crate::Protocol::Tcp && p.node_port != 0)
    };
    tcp()
        .find(|p| p.name.as_deref() == Some("http"))
        .or_else(|| tcp().next())
}

fn port_v2(p: &ProxyPort) -> v2p::ProxyPort {
    v2p::ProxyPort {
        // A name that does not fit the contract's 15 bytes is shown as unnamed (Kubernetes
        // port names are at most 15 characters).
        name: p.name.as_deref().and_then(Str::new),
        protocol: match p.protocol {
            crate::Protocol::Tcp => v2p::Protocol::Tcp,
            crate::Protocol::Udp => v2p::Protocol::Udp,
            crate::Protocol::Sctp => v2p::Protocol::Sctp,
        },
        port: p.port,
        node_port: p.node_port,
    }
}

fn service_v2(s: &ProxyService, here: bool, nodes: Vec<u16>) -> v2p::ProxyService {
    v2p::ProxyService {
        ns: s.namespace.clone(),
        name: s.name.clone(),
        unique: s.unique,
        ports: s.ports.iter().map(port_v2).collect(),
        here,
        nodes,
    }
}

/// The renderer's input for `v`: the services here with `here`, those elsewhere with their
/// workers as node slots (by name). Not checked against the payload's rules: the renderer
/// checks what it writes.
pub fn to_snapshot(v: &ProxyView<'_>, ipv6: bool) -> v2p::ProxySnapshot {
    let names: std::collections::BTreeSet<&str> = v
        .elsewhere
        .iter()
        .flat_map(|(_, n)| n.iter().map(String::as_str))
        .collect();
    let slots: Vec<&str> = names.into_iter().collect();
    let mut services: Vec<v2p::ProxyService> = v
        .local
        .iter()
        .map(|s| service_v2(s, true, Vec::new()))
        .chain(v.elsewhere.iter().map(|(s, nodes)| {
            let mut idx: Vec<u16> = nodes
                .iter()
                .filter_map(|n| slots.binary_search(&n.as_str()).ok())
                .map(|i| i as u16)
                .collect();
            idx.sort_unstable();
            idx.dedup();
            service_v2(s, false, idx)
        }))
        .collect();
    services.sort_by(|a, b| a.key().cmp(&b.key()));
    v2p::ProxySnapshot {
        node: v.node.to_string(),
        version: sdwan_contract::v2::Version(0),
        proxy: v2p::ProxyHeader {
            suffix: v.suffix.to_string(),
            local: v.local_label.to_string(),
            listen_port: v.settings.listen_port,
            upstream_host: v.settings.upstream_host.clone(),
            dir: v.settings.dir_trimmed().to_string(),
            ipv6,
            nodes: slots.len() as u16,
        },
        nodes: slots.into_iter().map(|n| Some(n.to_string())).collect(),
        services,
    }
}

/// Renders `sdwan.conf` (`sdwan_render::render_conf`), listening on IPv4 only.
pub fn render_conf(v: &ProxyView<'_>) -> String {
    render_conf_listen(v, false)
}

/// [`render_conf`], with `listen [::]:<port>` too when `ipv6` (the master sets it for a worker
/// that has an IPv6 InternalIP: its gateways may give out that address for `local` and the
/// `<node>` name, and a dual-stack host tries it first, issue 13).
pub fn render_conf_listen(v: &ProxyView<'_>, ipv6: bool) -> String {
    sdwan_render::render_conf(&to_snapshot(v, ipv6))
}

/// Renders `help.html` (`sdwan_render::render_help`): the services here and elsewhere,
/// grouped by namespace.
pub fn render_help(v: &ProxyView<'_>) -> String {
    sdwan_render::render_help(&to_snapshot(v, false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Protocol;

    fn svc(
        ns: &str,
        name: &str,
        unique: bool,
        ports: &[(Option<&str>, Protocol, u16)],
    ) -> ProxyService {
        ProxyService {
            namespace: ns.into(),
            name: name.into(),
            unique,
            ports: ports
                .iter()
                .map(|(n, p, np)| ProxyPort {
                    name: n.map(str::to_string),
                    protocol: *p,
                    port: 80,
                    node_port: *np,
                })
                .collect(),
        }
    }

    fn view<'a>(
        settings: &'a ProxySettings,
        local: &'a [ProxyService],
        elsewhere: &'a [(ProxyService, Vec<String>)],
    ) -> ProxyView<'a> {
        ProxyView {
            node: "worker1",
            suffix: "k8s.internal",
            local_label: "local",
            settings,
            local,
            elsewhere,
        }
    }

    #[test]
    fn port_choice_prefers_http_then_first_tcp() {
        let s = svc(
            "a",
            "b",
            true,
            &[
                (Some("dns"), Protocol::Udp, 30053),
                (Some("admin"), Protocol::Tcp, 30001),
                (Some("http"), Protocol::Tcp, 30080),
            ],
        );
        assert_eq!(http_port(&s).unwrap().node_port, 30080);
        let s = svc(
            "a",
            "b",
            true,
            &[(None, Protocol::Udp, 1), (None, Protocol::Tcp, 30002)],
        );
        assert_eq!(http_port(&s).unwrap().node_port, 30002);
        let s = svc("a", "b", true, &[(None, Protocol::Udp, 30053)]);
        assert!(http_port(&s).is_none());
    }

    #[test]
    fn conf_has_locations_for_good_names_only() {
        let settings = ProxySettings::default();
        let local = vec![
            svc(
                "default",
                "hello-world",
                true,
                &[(Some("http"), Protocol::Tcp, 30080)],
            ),
            svc("shop", "web", false, &[(None, Protocol::Tcp, 30081)]),
            svc("x", "evil;}server{", true, &[(None, Protocol::Tcp, 30082)]),
            svc("x", "help", true, &[(None, Protocol::Tcp, 30083)]),
            svc("x", "udp-only", true, &[(None, Protocol::Udp, 30084)]),
        ];
        let conf = render_conf(&view(&settings, &local, &[]));
        assert!(
            conf.contains("server_name local.k8s.internal worker1.k8s.internal *.k8s.internal;"),
            "{conf}"
        );
        assert!(conf.contains(
            "location /default/hello-world/ {\n        proxy_pass http://127.0.0.1:30080/;"
        ));
        assert!(conf.contains("location /hello-world/ {"));
        assert!(conf.contains("location /shop/web/ {"));
        assert!(!conf.contains("location /web/ {"), "not unique");
        assert!(!conf.contains("evil"));
        assert!(conf.contains("location /x/help/ {"));
        assert!(!conf.contains("location /help/ {"));
        assert!(!conf.contains("30084"));
        assert!(conf.contains("# 2 service(s) left out"));
        assert!(conf.contains("rewrite ^ /help.html break;"));
        assert!(conf.contains("root /etc/nginx/sdwan;"));
    }

    #[test]
    fn conf_listens_on_ipv6_only_when_asked() {
        let settings = ProxySettings {
            listen_port: 8080,
            ..ProxySettings::default()
        };
        let v4 = render_conf(&view(&settings, &[], &[]));
        assert!(
            v4.contains("    listen 8080;\n") && !v4.contains("[::]"),
            "{v4}"
        );
        let dual = render_conf_listen(&view(&settings, &[], &[]), true);
        assert!(
            dual.contains("    listen 8080;\n    listen [::]:8080;\n"),
            "{dual}"
        );
    }

    #[test]
    fn settings_are_checked() {
        let ok = ProxySettings::default();
        assert!(ok.check().is_ok());
        for (port, host, dir) in [
            (0u16, "127.0.0.1", "/x"),
            (80, "a b", "/x"),
            (80, "h;", "/x"),
            (80, "::1", "relative"),
            (80, "::1", "/a/../b"),
            (80, "::1", "/a;b"),
        ] {
            let s = ProxySettings {
                listen_port: port,
                upstream_host: host.into(),
                dir: dir.into(),
            };
            assert!(s.check().is_err(), "{s:?}");
        }
        let v6 = ProxySettings {
            upstream_host: "::1".into(),
            ..ProxySettings::default()
        };
        let local = [svc("a", "b", true, &[(None, Protocol::Tcp, 30000)])];
        assert!(render_conf(&view(&v6, &local, &[])).contains("proxy_pass http://[::1]:30000/;"));
    }

    #[test]
    fn help_escapes_and_links() {
        let settings = ProxySettings::default();
        let local = [svc(
            "default",
            "hello-world",
            true,
            &[(Some("<b>"), Protocol::Tcp, 30080)],
        )];
        let there = [(
            svc("shop", "web", false, &[(None, Protocol::Tcp, 30081)]),
            vec!["worker2".to_string()],
        )];
        let html = render_help(&view(&settings, &local, &there));
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.contains("href=\"http://local.k8s.internal/hello-world/\""));
        assert!(html.contains("href=\"http://worker1.k8s.internal/hello-world/\""));
        assert!(html.contains("href=\"http://worker2.k8s.internal/shop/web/\""));
        assert!(html.contains("&lt;b&gt;"));
        assert!(!html.contains("<b>"));
        assert!(!html.contains("{{"));
    }
}
