//! The files of a worker's reverse proxy, rendered by the master (`docs/proxy.md`): the nginx
//! server configuration `sdwan.conf` and the help page `help.html`.
//!
//! Pure functions from a [`ProxyView`] to text. Every name and number that reaches the nginx
//! configuration is checked here first ([`safe_label`], [`ProxySettings::check`]), whatever the
//! planner already checked: a service whose namespace or name is not a DNS label, or which has
//! no TCP port with a usable NodePort, gets no `location` (it is counted in a comment at the top
//! of the file, never copied into it). The help page HTML-escapes everything it shows.

use std::fmt::Write as _;

use crate::dns;
use crate::listing::{ProxyPort, ProxyService};

/// File name of the nginx configuration inside the proxy directory.
pub const CONF_FILE: &str = "sdwan.conf";
/// File name of the help page inside the proxy directory.
pub const HELP_FILE: &str = "help.html";

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

    /// `host:port` for `proxy_pass`, with IPv6 literals in brackets.
    fn upstream(&self, port: u16) -> String {
        if self.upstream_host.contains(':') {
            format!("[{}]:{port}", self.upstream_host)
        } else {
            format!("{}:{port}", self.upstream_host)
        }
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
/// port; only ports with a NodePort in 1..=65535 count.
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

/// Path segments under which a service is reachable, when it can be proxied at all:
/// `/<namespace>/<name>/`, and `/<name>/` when the name is unique (and not `help`).
fn paths(s: &ProxyService) -> Option<(String, Option<String>)> {
    if !safe_label(&s.namespace) || !safe_label(&s.name) {
        return None;
    }
    let full = format!("/{}/{}/", s.namespace, s.name);
    let short = (s.unique && s.name != "help").then(|| format!("/{}/", s.name));
    Some((full, short))
}

/// Renders `sdwan.conf`: one nginx `server` (plus a `map` for websocket upgrades) for the
/// `http` context, listening on IPv4 only. `settings` must have passed
/// [`ProxySettings::check`] (the topology parser ensures it); a failing check renders a server
/// that answers every request with 503.
pub fn render_conf(v: &ProxyView<'_>) -> String {
    render_conf_listen(v, false)
}

/// [`render_conf`], with `listen [::]:<port>` too when `ipv6` (the master sets it for a worker
/// that has an IPv6 InternalIP: its gateways may give out that address for `local` and the
/// `<node>` name, and a dual-stack host tries it first, issue 13).
pub fn render_conf_listen(v: &ProxyView<'_>, ipv6: bool) -> String {
    let mut o = String::with_capacity(2048 + 200 * v.local.len());
    let s = v.settings;
    let _ = writeln!(
        o,
        "# Written by sdwan-discovery for node {}; changes are overwritten. Include it in the\n\
         # http context: include {}/*.conf;",
        if dns::valid_name(v.node) {
            v.node
        } else {
            "(name not a DNS name)"
        },
        s.dir_trimmed()
    );
    let settings_ok = s.check().is_ok() && safe_suffix(v.suffix) && safe_label(v.local_label);
    let mut skipped = 0usize;
    let mut locations = String::new();
    if settings_ok {
        for svc in v.local {
            let (Some((full, short)), Some(port)) = (paths(svc), http_port(svc)) else {
                skipped += 1;
                continue;
            };
            let upstream = s.upstream(port.node_port);
            for path in std::iter::once(full).chain(short) {
                let _ = writeln!(
                    locations,
                    "    location {path} {{\n        proxy_pass http://{upstream}/;\n    }}"
                );
            }
        }
    }
    if skipped > 0 {
        let _ = writeln!(
            o,
            "# {skipped} service(s) left out: a name that is not a DNS label, or no TCP NodePort."
        );
    }
    o.push_str(
        "\nmap $http_upgrade $sdwan_connection_upgrade {\n    default upgrade;\n    '' close;\n}\n\n",
    );
    let _ = writeln!(o, "server {{");
    if !settings_ok {
        o.push_str("    listen 80;\n    return 503;\n}\n");
        return o;
    }
    let _ = writeln!(o, "    listen {};", s.listen_port);
    if ipv6 {
        let _ = writeln!(o, "    listen [::]:{};", s.listen_port);
    }
    let mut names = format!("{}.{}", v.local_label, v.suffix);
    if dns::valid_name(v.node) {
        let _ = write!(names, " {}.{}", v.node, v.suffix);
    }
    let _ = write!(names, " *.{}", v.suffix);
    let _ = writeln!(o, "    server_name {names};");
    o.push_str(
        "\n    proxy_http_version 1.1;\n\
         \x20   proxy_set_header Host $host;\n\
         \x20   proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n\
         \x20   proxy_set_header X-Forwarded-Proto $scheme;\n\
         \x20   proxy_set_header X-Forwarded-Host $host;\n\
         \x20   proxy_set_header Upgrade $http_upgrade;\n\
         \x20   proxy_set_header Connection $sdwan_connection_upgrade;\n\
         \x20   proxy_connect_timeout 5s;\n\
         \x20   proxy_send_timeout 60s;\n\
         \x20   proxy_read_timeout 300s;\n\
         \x20   client_max_body_size 64m;\n\n",
    );
    let _ = writeln!(
        o,
        "    location = /help/ {{\n        root {};\n        default_type text/html;\n        \
         charset utf-8;\n        add_header Cache-Control \"no-cache\";\n        \
         rewrite ^ /{HELP_FILE} break;\n    }}",
        s.dir_trimmed()
    );
    o.push_str("    location = /help {\n        return 301 /help/;\n    }\n");
    o.push_str("    location = / {\n        return 302 /help/;\n    }\n");
    o.push_str(
        "    location / {\n        default_type text/plain;\n        \
         return 404 \"No service at this path. The services are listed at /help/\\n\";\n    }\n",
    );
    o.push_str(&locations);
    o.push_str("}\n");
    o
}

fn safe_suffix(s: &str) -> bool {
    dns::valid_name(s)
}

/// HTML-escapes text for element content and attribute values.
pub fn escape_html(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

const HELP_TEMPLATE: &str = include_str!("help.html");

/// `host`, with `:port` when the proxy listens on another port than 80 (issue 12: a link
/// without it leads to whatever listens on port 80).
fn authority(host: &str, port: u16) -> String {
    if port == 80 {
        host.to_owned()
    } else {
        format!("{host}:{port}")
    }
}

/// Renders `help.html`: the services on this worker (links through `<local>.<suffix>`, which
/// reaches this worker when it is the one nearest to the reader's branch, and through
/// `<node>.<suffix>`, which always does) and elsewhere (links through `<node>.<suffix>` of
/// the workers holding them). Every link carries `[proxy] listen_port` unless it is 80. Only
/// services that `sdwan.conf` proxies get links; the others are listed without one.
///
/// One page serves readers of every branch, so the links are names: each reader's gateway
/// answers them under its own nearness and address policy (`docs/planning.md`).
pub fn render_help(v: &ProxyView<'_>) -> String {
    let port = v.settings.listen_port;
    let local_host = authority(&format!("{}.{}", v.local_label, v.suffix), port);
    let mut own = Vec::new();
    if dns::valid_name(v.node) {
        own.push(authority(&format!("{}.{}", v.node, v.suffix), port));
    }
    let mut here = String::new();
    for s in v.local {
        let hosts: Vec<&str> = std::iter::once(local_host.as_str())
            .chain(own.iter().map(String::as_str))
            .collect();
        here.push_str(&service_item(s, &hosts));
    }
    if here.is_empty() {
        here = "<li class=\"none\">No service has a ready endpoint on this node.</li>\n".into();
    }
    let mut there = String::new();
    for (s, nodes) in v.elsewhere {
        let hosts: Vec<String> = nodes
            .iter()
            .filter(|n| dns::valid_name(n))
            .map(|n| authority(&format!("{n}.{}", v.suffix), port))
            .collect();
        let hosts: Vec<&str> = hosts.iter().map(String::as_str).collect();
        there.push_str(&service_item(s, &hosts));
    }
    if there.is_empty() {
        there = "<li class=\"none\">None.</li>\n".into();
    }
    HELP_TEMPLATE
        .replace("{{node}}", &escape_html(v.node))
        .replace("{{local_host}}", &escape_html(&local_host))
        .replace("{{suffix_port}}", &escape_html(&authority(v.suffix, port)))
        .replace("{{here_count}}", &v.local.len().to_string())
        .replace("{{there_count}}", &v.elsewhere.len().to_string())
        .replace("{{here}}", &here)
        .replace("{{there}}", &there)
}

/// One `<li>`: the service, its links on `hosts` (the first is the main link), its ports.
fn service_item(s: &ProxyService, hosts: &[&str]) -> String {
    let mut o = String::from("<li>");
    let title = format!("{}/{}", s.namespace, s.name);
    let linkable = paths(s).zip(http_port(s)).filter(|_| !hosts.is_empty());
    match &linkable {
        Some(((full, short), _)) => {
            let path = short.as_deref().unwrap_or(full);
            let _ = write!(
                o,
                "<a class=\"main\" href=\"http://{h}{p}\">{t}</a>",
                h = escape_html(hosts[0]),
                p = escape_html(path),
                t = escape_html(&title)
            );
            o.push_str("<span class=\"urls\">");
            for h in hosts {
                for p in std::iter::once(full).chain(short.iter()) {
                    let url = format!("http://{h}{p}");
                    let _ = write!(o, "<a href=\"{u}\">{u}</a> ", u = escape_html(&url));
                }
            }
            o.push_str("</span>");
        }
        None => {
            let _ = write!(
                o,
                "<span class=\"main\">{}</span><span class=\"urls\">no HTTP proxy (no TCP NodePort)</span>",
                escape_html(&title)
            );
        }
    }
    let ports: Vec<String> = s
        .ports
        .iter()
        .map(|p| {
            let name = p
                .name
                .as_deref()
                .map(|n| format!("{n} "))
                .unwrap_or_default();
            format!(
                "{name}{}/{} → NodePort {}",
                p.port,
                p.protocol.as_k8s(),
                p.node_port
            )
        })
        .collect();
    let _ = writeln!(
        o,
        "<span class=\"ports\">{}</span></li>",
        escape_html(&ports.join(", "))
    );
    o
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
