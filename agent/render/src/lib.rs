//! The files of a worker's reverse proxy (`docs/proxy.md`): the nginx server configuration
//! `sdwan.conf` and the help page `help.html`, rendered from a worker's proxy content
//! ([`ProxySnapshot`], proxy payload v2, `docs/payload-v2.md`). The worker agent renders them
//! itself from what it holds; the planner renders proxy payload v1 with the same functions.
//!
//! Layout: [`render_conf`] (nginx), [`render_help`] (HTML), and the small rules both use
//! ([`http_port`], [`escape_html`], [`safe_label`], [`valid_name`]).
//!
//! Pure functions from content to text. Every name and number that reaches the nginx
//! configuration is checked here again, whatever the content's own checks did: a service whose
//! namespace or name is not a DNS label, or which has no TCP port with a usable NodePort, gets
//! no `location` (it is counted in a comment at the top of the file, never copied into it);
//! settings that break a rule give a server that answers 503. The help page HTML-escapes
//! everything it shows.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use sdwan_contract::v2::proxy::{
    is_proxy_dir, is_upstream_host, Protocol, ProxyPort, ProxyService, ProxySnapshot,
};

/// File name of the nginx configuration inside the proxy directory.
pub const CONF_FILE: &str = "sdwan.conf";
/// File name of the help page inside the proxy directory.
pub const HELP_FILE: &str = "help.html";

/// One DNS label: 1..=63 of `[a-z0-9-]`, not starting or ending with `-` (the contract's
/// rule, [`sdwan_contract::v2::is_label`]).
pub fn safe_label(label: &str) -> bool {
    sdwan_contract::v2::is_label(label)
}

/// A dotted name of [`safe_label`]s.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.split('.').all(safe_label)
}

/// The port a service is proxied to: the first TCP port named `http`, else the first TCP
/// port; only ports with a NodePort in 1..=65535 count.
pub fn http_port(s: &ProxyService) -> Option<&ProxyPort> {
    let tcp = || {
        s.ports
            .iter()
            .filter(|p| p.protocol == Protocol::Tcp && p.node_port != 0)
    };
    tcp()
        .find(|p| p.name.is_some_and(|n| n.as_str() == "http"))
        .or_else(|| tcp().next())
}

/// Path segments under which a service is reachable, when it can be proxied at all:
/// `/<namespace>/<name>/`, and `/<name>/` when the name is unique (and not `help`).
fn paths(s: &ProxyService) -> Option<(String, Option<String>)> {
    if !safe_label(&s.ns) || !safe_label(&s.name) {
        return None;
    }
    let full = format!("/{}/{}/", s.ns, s.name);
    let short = (s.unique && s.name != "help").then(|| format!("/{}/", s.name));
    Some((full, short))
}

/// Whether the settings may be written into a configuration.
fn settings_ok(p: &ProxySnapshot) -> bool {
    let h = &p.proxy;
    h.listen_port != 0
        && is_upstream_host(&h.upstream_host)
        && is_proxy_dir(&h.dir)
        && valid_name(&h.suffix)
        && safe_label(&h.local)
}

/// `host:port` for `proxy_pass`, with IPv6 literals in brackets.
fn upstream(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Renders `sdwan.conf`: one nginx `server` (plus a `map` for websocket upgrades) for the
/// `http` context, proxying exactly the services with `here` (a ready endpoint on this
/// worker), listening on IPv4, and on `[::]` too when the header says `ipv6`. Settings that
/// break a rule render a server that answers every request with 503.
pub fn render_conf(p: &ProxySnapshot) -> String {
    let h = &p.proxy;
    let here: Vec<&ProxyService> = p.here().collect();
    let mut o = String::with_capacity(2048 + 200 * here.len());
    let _ = writeln!(
        o,
        "# Written by sdwan-discovery for node {}; changes are overwritten. Include it in the\n\
         # http context: include {}/*.conf;",
        if valid_name(&p.node) {
            &p.node
        } else {
            "(name not a DNS name)"
        },
        if is_proxy_dir(&h.dir) {
            &h.dir
        } else {
            "(invalid dir)"
        }
    );
    let ok = settings_ok(p);
    let mut skipped = 0usize;
    let mut locations = String::new();
    if ok {
        for svc in &here {
            let (Some((full, short)), Some(port)) = (paths(svc), http_port(svc)) else {
                skipped += 1;
                continue;
            };
            let upstream = upstream(&h.upstream_host, port.node_port);
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
    if !ok {
        o.push_str("    listen 80;\n    return 503;\n}\n");
        return o;
    }
    let _ = writeln!(o, "    listen {};", h.listen_port);
    if h.ipv6 {
        let _ = writeln!(o, "    listen [::]:{};", h.listen_port);
    }
    let mut names = format!("{}.{}", h.local, h.suffix);
    if valid_name(&p.node) {
        let _ = write!(names, " {}.{}", p.node, h.suffix);
    }
    let _ = write!(names, " *.{}", h.suffix);
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
         charset utf-8;\n        gzip on;\n        add_header Cache-Control \"no-cache\";\n        \
         rewrite ^ /{HELP_FILE} break;\n    }}",
        h.dir
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
/// `<node>.<suffix>`, which always does), then the services on other workers (links through
/// `<node>.<suffix>` of up to 8 workers holding them), each list grouped by namespace under
/// an index of namespaces with anchors. A filter box narrows the lists as one types; it needs
/// JavaScript, the links and the index do not (without it the box stays hidden). Every link
/// carries `listen_port` unless it is 80. Only services that `sdwan.conf` would proxy get
/// links; the others are listed without one. Services neither here nor with a named worker
/// elsewhere are not listed.
///
/// One page serves readers of every branch, so the links are names: each reader's gateway
/// answers them under its own nearness and address policy (`docs/planning.md`).
pub fn render_help(p: &ProxySnapshot) -> String {
    let h = &p.proxy;
    let port = h.listen_port;
    let local_host = authority(&format!("{}.{}", h.local, h.suffix), port);
    let mut own = Vec::new();
    if valid_name(&p.node) {
        own.push(authority(&format!("{}.{}", p.node, h.suffix), port));
    }
    let here_hosts: Vec<&str> = std::iter::once(local_host.as_str())
        .chain(own.iter().map(String::as_str))
        .collect();
    // (namespace -> items), for each list.
    let mut here: BTreeMap<&str, String> = BTreeMap::new();
    let mut there: BTreeMap<&str, String> = BTreeMap::new();
    let (mut here_count, mut there_count) = (0usize, 0usize);
    for s in &p.services {
        if s.here {
            service_item(here.entry(&s.ns).or_default(), s, &here_hosts, true);
            here_count += 1;
            continue;
        }
        let hosts: Vec<String> = s
            .nodes
            .iter()
            .filter_map(|&i| p.node_name(i))
            .filter(|n| valid_name(n))
            .map(|n| authority(&format!("{n}.{}", h.suffix), port))
            .collect();
        if hosts.is_empty() {
            continue;
        }
        let hosts: Vec<&str> = hosts.iter().map(String::as_str).collect();
        service_item(there.entry(&s.ns).or_default(), s, &hosts, false);
        there_count += 1;
    }
    let here_html = grouped(
        &here,
        "here",
        "<p class=\"none\">No service has a ready endpoint on this node.</p>\n",
    );
    let there_html = grouped(&there, "ns", "<p class=\"none\">None.</p>\n");
    HELP_TEMPLATE
        .replace("{{node}}", &escape_html(&p.node))
        .replace("{{local_host}}", &escape_html(&local_host))
        .replace("{{suffix_port}}", &escape_html(&authority(&h.suffix, port)))
        .replace("{{here_count}}", &here_count.to_string())
        .replace("{{there_count}}", &there_count.to_string())
        .replace("{{here_index}}", &index(&here, "here"))
        .replace("{{there_index}}", &index(&there, "ns"))
        .replace("{{here}}", &here_html)
        .replace("{{there}}", &there_html)
}

/// The index of namespaces: links to their sections' anchors, with a count each.
fn index(groups: &BTreeMap<&str, String>, prefix: &str) -> String {
    if groups.len() < 2 {
        return String::new();
    }
    let mut o = String::from("<nav class=\"index\">");
    for (ns, items) in groups {
        let n = items.matches("<li class=\"svc\"").count();
        let _ = write!(
            o,
            "<a href=\"#{prefix}-{id}\">{ns}</a><span class=\"count\">{n}</span> ",
            id = escape_html(ns),
            ns = escape_html(ns)
        );
    }
    o.push_str("</nav>\n");
    o
}

/// One `<section>` per namespace, with its anchor (`<prefix>-<namespace>`).
fn grouped(groups: &BTreeMap<&str, String>, prefix: &str, empty: &str) -> String {
    if groups.is_empty() {
        return empty.to_string();
    }
    let mut o = String::new();
    for (ns, items) in groups {
        let _ = write!(
            o,
            "<section class=\"ns\" id=\"{prefix}-{id}\"><h3>{ns}</h3>\n<ul>\n{items}</ul></section>\n",
            id = escape_html(ns),
            ns = escape_html(ns)
        );
    }
    o
}

/// Links to other workers beyond the first, per service elsewhere on the help page.
const MORE_LINKS: usize = 2;

/// One `<li>`: the service, its links on `hosts` (the first is the main link), its ports
/// (`name port/protocol→NodePort`). On this node every host gets both paths; elsewhere the
/// first worker gets both (the main link and the full path) and [`MORE_LINKS`] more workers
/// one link each, named after the worker, so the page stays small at thousands of services.
fn service_item(o: &mut String, s: &ProxyService, hosts: &[&str], here: bool) {
    o.push_str("<li class=\"svc\">");
    let title = format!("{}/{}", s.ns, s.name);
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
            for (k, h) in hosts.iter().enumerate() {
                if here {
                    for p in std::iter::once(full).chain(short.iter()) {
                        let _ = write!(
                            o,
                            "<a href=\"http://{h}{p}\">{h}{p}</a> ",
                            h = escape_html(h),
                            p = escape_html(p)
                        );
                    }
                } else if k == 0 {
                    // The main link is the short path when there is one: add the full one.
                    if short.is_some() {
                        let _ = write!(
                            o,
                            "<a href=\"http://{h}{p}\">{p}</a> ",
                            h = escape_html(h),
                            p = escape_html(full)
                        );
                    }
                } else if k <= MORE_LINKS {
                    let node = h.split('.').next().unwrap_or(h);
                    let _ = write!(
                        o,
                        "<a href=\"http://{h}{p}\">{n}</a> ",
                        h = escape_html(h),
                        p = escape_html(path),
                        n = escape_html(node)
                    );
                }
            }
            if !here && hosts.len() > MORE_LINKS + 1 {
                let _ = write!(o, "(+{} more)", hosts.len() - MORE_LINKS - 1);
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
            let name = p.name.map(|n| format!("{n} ")).unwrap_or_default();
            format!("{name}{}/{}→{}", p.port, p.protocol.as_str(), p.node_port)
        })
        .collect();
    let _ = writeln!(
        o,
        "<span class=\"ports\">{}</span></li>",
        escape_html(&ports.join(", "))
    );
}

#[cfg(test)]
mod tests;
