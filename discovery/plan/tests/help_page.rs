//! The workers' help page as the master renders it (`ProxyContent::render` of the bundled
//! example), read the way a user reads it: its links and its header. Issue 12's help-page
//! items, each guarded by a test named after it.

use sdwan_plan::{plan, Snapshot, Topology};

/// The example cluster planned under the example topology plus `extra` (TOML), and the help
/// page of `node` out of its proxy payload.
fn help_page(extra: &str, node: &str) -> String {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples");
    let cluster = std::fs::read(format!("{root}/cluster.json")).unwrap();
    let topo = std::fs::read_to_string(format!("{root}/topology.toml")).unwrap();
    let s = Snapshot::from_kubectl_json(&cluster).unwrap();
    let t = Topology::from_toml(&format!("{topo}\n{extra}")).unwrap();
    let payload = plan(&s, &t).nodes[node].render(node, 1);
    let doc: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    doc["files"]["help.html"].as_str().unwrap().to_owned()
}

/// Every `href` of the page that leaves it, unescaped (not the namespace index's `#...`).
fn links(html: &str) -> Vec<String> {
    html.split("href=\"")
        .skip(1)
        .map(|rest| rest[..rest.find('"').unwrap()].replace("&amp;", "&"))
        .filter(|l| !l.starts_with('#'))
        .collect()
}

#[test]
fn help_links_carry_a_listen_port_other_than_80() {
    let html = help_page("[proxy]\nlisten_port = 8080", "worker1");
    let links = links(&html);
    assert!(links.len() >= 4, "{links:?}");
    for l in &links {
        let host = l
            .strip_prefix("http://")
            .unwrap()
            .split('/')
            .next()
            .unwrap();
        assert!(host.ends_with(".k8s.internal:8080"), "{l}");
    }
    assert!(links.contains(&"http://local.k8s.internal:8080/hello-world/".to_owned()));
    assert!(links.contains(&"http://worker1.k8s.internal:8080/hello-world/".to_owned()));
    // The header's examples too.
    assert!(html.contains("http://local.k8s.internal:8080/&lt;service&gt;/"));
    assert!(html.contains("http://&lt;node&gt;.k8s.internal:8080/&lt;service&gt;/"));

    // Port 80 is the URL default: no port in the links.
    let links = self::links(&help_page("", "worker1"));
    assert!(links.iter().all(|l| !l.contains(":80")), "{links:?}");
    assert!(links.contains(&"http://local.k8s.internal/hello-world/".to_owned()));
}

#[test]
fn help_header_does_not_promise_that_local_reaches_services_running_elsewhere() {
    let html = help_page("", "worker1");
    assert!(
        !html.contains("nearest node that runs the service"),
        "the old promise is back: {html}"
    );
    let header = &html[html.find("<h1>").unwrap()..html.find("<h2>").unwrap()];
    assert!(
        header.contains("reaches the worker node nearest to the branch")
            && header.contains("answers 404 for the others"),
        "{header}"
    );
    // What the header says instead holds for the links: a service on this node also has a
    // link through the node's own name, which reaches it from a branch whose nearest worker
    // is another one; a service elsewhere is linked through the nodes that run it only.
    let links = links(&html);
    assert!(links.contains(&"http://worker1.k8s.internal/hello-world/".to_owned()));
    assert!(!links
        .iter()
        .any(|l| l.starts_with("http://local.") && l.contains("/web/")));
}
