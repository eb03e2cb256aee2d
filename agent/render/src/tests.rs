use super::*;
use sdwan_contract::v2::proxy::ProxyHeader;
use sdwan_contract::v2::{Str, Version};

fn port(name: Option<&str>, protocol: Protocol, node_port: u16) -> ProxyPort {
    ProxyPort {
        name: name.map(|n| Str::new(n).unwrap()),
        protocol,
        port: 80,
        node_port,
    }
}

fn svc(ns: &str, name: &str, unique: bool, here: bool, ports: &[ProxyPort]) -> ProxyService {
    ProxyService {
        ns: ns.into(),
        name: name.into(),
        unique,
        ports: ports.to_vec(),
        here,
        nodes: if here { vec![] } else { vec![1] },
    }
}

fn snapshot(mut services: Vec<ProxyService>) -> ProxySnapshot {
    services.sort_by(|a, b| a.key().cmp(&b.key()));
    ProxySnapshot {
        node: "worker1".into(),
        version: Version(1),
        proxy: ProxyHeader {
            suffix: "k8s.internal".into(),
            local: "local".into(),
            listen_port: 80,
            upstream_host: "127.0.0.1".into(),
            dir: "/etc/nginx/sdwan".into(),
            ipv6: false,
            nodes: 2,
        },
        nodes: vec![Some("worker1".into()), Some("worker2".into())],
        services,
    }
}

#[test]
fn port_choice_prefers_http_then_first_tcp() {
    let s = svc(
        "a",
        "b",
        true,
        true,
        &[
            port(Some("dns"), Protocol::Udp, 30053),
            port(Some("admin"), Protocol::Tcp, 30001),
            port(Some("http"), Protocol::Tcp, 30080),
        ],
    );
    assert_eq!(http_port(&s).unwrap().node_port, 30080);
    let s = svc(
        "a",
        "b",
        true,
        true,
        &[
            port(None, Protocol::Udp, 1),
            port(None, Protocol::Tcp, 30002),
        ],
    );
    assert_eq!(http_port(&s).unwrap().node_port, 30002);
    let s = svc("a", "b", true, true, &[port(None, Protocol::Udp, 30053)]);
    assert!(http_port(&s).is_none());
}

#[test]
fn conf_proxies_exactly_the_services_here_with_good_names() {
    let p = snapshot(vec![
        svc(
            "default",
            "hello-world",
            true,
            true,
            &[port(Some("http"), Protocol::Tcp, 30080)],
        ),
        svc(
            "shop",
            "web",
            false,
            true,
            &[port(None, Protocol::Tcp, 30081)],
        ),
        svc(
            "x",
            "evil;}server{",
            true,
            true,
            &[port(None, Protocol::Tcp, 30082)],
        ),
        svc("x", "help", true, true, &[port(None, Protocol::Tcp, 30083)]),
        svc(
            "x",
            "udp-only",
            true,
            true,
            &[port(None, Protocol::Udp, 30084)],
        ),
        svc(
            "far",
            "away",
            true,
            false,
            &[port(None, Protocol::Tcp, 30085)],
        ),
    ]);
    let conf = render_conf(&p);
    assert!(
        conf.contains("server_name local.k8s.internal worker1.k8s.internal *.k8s.internal;"),
        "{conf}"
    );
    assert!(conf
        .contains("location /default/hello-world/ {\n        proxy_pass http://127.0.0.1:30080/;"));
    assert!(conf.contains("location /hello-world/ {"));
    assert!(conf.contains("location /shop/web/ {"));
    assert!(!conf.contains("location /web/ {"), "not unique");
    assert!(!conf.contains("evil"));
    assert!(conf.contains("location /x/help/ {"));
    assert!(!conf.contains("location /help/ {"));
    assert!(!conf.contains("30084"));
    assert!(
        !conf.contains("30085"),
        "a service elsewhere is not proxied here"
    );
    assert!(conf.contains("# 2 service(s) left out"));
    assert!(conf.contains("rewrite ^ /help.html break;"));
    assert!(conf.contains("root /etc/nginx/sdwan;"));
    assert!(!conf.contains("[::]"));
}

#[test]
fn conf_listens_on_ipv6_when_the_header_says_so_and_brackets_v6_upstreams() {
    let mut p = snapshot(vec![svc(
        "a",
        "b",
        true,
        true,
        &[port(None, Protocol::Tcp, 30000)],
    )]);
    p.proxy.listen_port = 8080;
    p.proxy.ipv6 = true;
    p.proxy.upstream_host = "::1".into();
    let conf = render_conf(&p);
    assert!(
        conf.contains("    listen 8080;\n    listen [::]:8080;\n"),
        "{conf}"
    );
    assert!(conf.contains("proxy_pass http://[::1]:30000/;"), "{conf}");
}

#[test]
fn bad_settings_render_a_server_that_answers_503() {
    // (field, value)
    let cases: [(&str, &str); 5] = [
        ("upstream_host", "a b"),
        ("upstream_host", "h;"),
        ("dir", "relative"),
        ("dir", "/a/../b"),
        ("suffix", "k8s internal"),
    ];
    for (field, value) in cases {
        let mut p = snapshot(vec![svc(
            "a",
            "b",
            true,
            true,
            &[port(None, Protocol::Tcp, 30000)],
        )]);
        match field {
            "upstream_host" => p.proxy.upstream_host = value.into(),
            "dir" => p.proxy.dir = value.into(),
            _ => p.proxy.suffix = value.into(),
        }
        let conf = render_conf(&p);
        assert!(conf.contains("return 503;"), "{field}={value}: {conf}");
        assert!(!conf.contains("proxy_pass"), "{field}={value}");
        assert!(
            !conf.contains(value) || field == "suffix",
            "{field}={value} copied: {conf}"
        );
    }
}

#[test]
fn help_escapes_and_links() {
    let p = snapshot(vec![
        svc(
            "default",
            "hello-world",
            true,
            true,
            &[port(Some("<b>"), Protocol::Tcp, 30080)],
        ),
        svc(
            "shop",
            "web",
            false,
            false,
            &[port(None, Protocol::Tcp, 30081)],
        ),
    ]);
    let html = render_help(&p);
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("href=\"http://local.k8s.internal/hello-world/\""));
    assert!(html.contains("href=\"http://worker1.k8s.internal/hello-world/\""));
    assert!(html.contains("href=\"http://worker2.k8s.internal/shop/web/\""));
    assert!(html.contains("&lt;b&gt;"));
    assert!(!html.contains("<b>"));
    assert!(!html.contains("{{"));
}

/// The synthetic cluster of issue 11 as one worker sees it: 5,000 services in 60
/// namespaces, 188 of them here, the others on up to 8 workers each.
fn big() -> ProxySnapshot {
    let mut rng = sdwan_testsupport::Rng::new(3);
    let nodes: Vec<Option<String>> = (0..500).map(|i| Some(format!("worker-{i:03}"))).collect();
    let mut keys = std::collections::BTreeSet::new();
    while keys.len() < 5000 {
        keys.insert((
            format!("team-{:02}", rng.below(60)),
            format!("svc-{}-{}", rng.below(40), rng.below(1000)),
        ));
    }
    let services = keys
        .into_iter()
        .map(|(ns, name)| {
            let here = rng.chance(4);
            let mut n: Vec<u16> = (0..1 + rng.below(8))
                .map(|_| 1 + rng.below(499) as u16)
                .collect();
            n.sort_unstable();
            n.dedup();
            ProxyService {
                ns,
                name,
                unique: rng.chance(70),
                ports: vec![
                    port(Some("http"), Protocol::Tcp, 30000 + rng.below(2000) as u16),
                    port(
                        Some("metrics"),
                        Protocol::Tcp,
                        32000 + rng.below(700) as u16,
                    ),
                ][..1 + rng.below(2)]
                    .to_vec(),
                here,
                nodes: n,
            }
        })
        .collect();
    let mut p = snapshot(services);
    p.node = "worker-000".into();
    p.proxy.nodes = 500;
    p.nodes = nodes;
    p
}

/// Issue 11 item 6: the help page stays useful at 5,000 services: grouped by namespace,
/// an index whose every link has its anchor, every service findable, and a size a browser
/// loads at once. Run with `--no-capture` to see the size.
#[test]
fn help_page_at_5000_services_is_grouped_indexed_and_sized() {
    let p = big();
    let html = render_help(&p);
    let here = p.here().count();
    println!(
        "help page: {} bytes for {} services ({} here), {:.0} bytes per service",
        html.len(),
        p.services.len(),
        here,
        html.len() as f64 / p.services.len() as f64
    );
    assert!(html.len() < 2_000_000, "{} bytes", html.len());

    // Every index link has its section, and every section is in an index.
    let ids: Vec<&str> = html
        .split(" id=\"")
        .skip(1)
        .map(|s| s.split('"').next().unwrap())
        .filter(|s| s.contains('-'))
        .collect();
    let anchors: Vec<&str> = html
        .split("href=\"#")
        .skip(1)
        .map(|s| s.split('"').next().unwrap())
        .collect();
    assert_eq!(anchors.len(), ids.len(), "one index entry per section");
    for a in &anchors {
        assert!(ids.contains(a), "index link #{a} has no section");
    }
    assert!(ids.contains(&"ns-team-07") && ids.contains(&"here-team-07"));
    // Every service is listed once, in its namespace's section.
    assert_eq!(html.matches("<li class=\"svc\">").count(), p.services.len());
    let sec = html.split("id=\"ns-team-07\">").nth(1).unwrap();
    let sec = sec.split("</section>").next().unwrap();
    for s in p.services.iter().filter(|s| s.ns == "team-07" && !s.here) {
        assert!(
            sec.contains(&format!(">team-07/{}</a>", s.name)),
            "{} not in its section",
            s.name
        );
    }
    // The filter box is hidden until the script shows it; the links need no script.
    assert!(html.contains("<form class=\"filter\" id=\"filter\" hidden=\"hidden\">"));
    let script = html
        .split("<script>")
        .nth(1)
        .unwrap()
        .split("</script>")
        .next()
        .unwrap();
    assert!(
        !script.contains('<') && !script.contains('&') && !script.contains('>'),
        "{script}"
    );
    // The configuration holds only what this worker serves.
    let conf = render_conf(&p);
    let locations = conf.matches("    location /").count() - 1;
    let want: usize = p
        .here()
        .map(|s| 1 + usize::from(s.unique && s.name != "help"))
        .sum();
    assert_eq!(locations, want);
    println!("sdwan.conf: {} bytes for {here} services here", conf.len());
}
