//! Issue 5 with the master's own content: a cluster (kubectl JSON) and a topology with a
//! `[proxy]` table are planned by `sdwan-plan`, `proxy_v2::proxies` makes the proxy payload
//! v2 content the master publishes, and the worker agent renders it for a real nginx through
//! mosquitto.

mod mqtt_common;

use mqtt_common::*;
use sdwan_contract::v2::Version;
use sdwan_testsupport::nginx::{http_get, Backend};
use sdwan_testsupport::{free_port, wait_for};

fn node(name: &str, ip: &str) -> String {
    format!(
        r#"{{"apiVersion":"v1","kind":"Node","metadata":{{"name":"{name}","labels":{{}}}},
 "status":{{"addresses":[{{"type":"InternalIP","address":"{ip}"}}],
 "conditions":[{{"type":"Ready","status":"True"}}]}}}}"#
    )
}

fn service(name: &str, node_port: u16, on: &str) -> String {
    format!(
        r#"{{"apiVersion":"v1","kind":"Service","metadata":{{"name":"{name}","namespace":"default"}},
 "spec":{{"type":"NodePort","ports":[{{"name":"http","port":80,"protocol":"TCP","nodePort":{node_port}}}]}}}},
{{"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice","addressType":"IPv4",
 "metadata":{{"name":"{name}-1","namespace":"default","labels":{{"kubernetes.io/service-name":"{name}"}}}},
 "endpoints":[{{"addresses":["10.244.1.5"],"nodeName":"{on}","conditions":{{"ready":true}}}}]}}"#
    )
}

#[test]
fn planned_payload_is_served_by_nginx() {
    let rig = ProxyRig::start("proxy-master");
    let (master, proxy_dir) = (&rig.master, &rig.proxy_dir);
    let (hello, other) = (Backend::start("hello-world"), Backend::start("other"));
    let port = free_port();

    let cluster = format!(
        r#"{{"apiVersion":"v1","kind":"List","items":[{},{},{},{},{}]}}"#,
        node("worker1", "192.168.200.1"),
        node("worker2", "192.168.200.2"),
        service("hello-world", hello.port, "worker2"),
        service("other", other.port, "worker1"),
        // A name crafted to break out of the nginx location (not a valid Kubernetes name, but
        // the master must not trust the API server's input).
        service("x/ { return 200; } #", other.port, "worker2"),
    );
    let snapshot = sdwan_plan::Snapshot::from_kubectl_json(cluster.as_bytes()).unwrap();
    let topology = sdwan_plan::Topology::from_toml(&format!(
        "[proxy]\nlisten_port = {port}\ndir = \"{}\"\n",
        proxy_dir.display()
    ))
    .unwrap();
    let plan = sdwan_plan::plan(&snapshot, &topology);
    let content = sdwan_plan::proxy_v2::proxies(&snapshot, &plan)
        .snapshot("worker2", Version(1))
        .unwrap();
    assert!(
        plan.warnings
            .iter()
            .any(|w| format!("{w:?}").contains("ServiceNameNotLabel")
                && format!("{w:?}").contains("return 200")),
        "the crafted name gives a warning: {:?}",
        plan.warnings
    );

    let _agent = rig.start_agent("worker2");
    master.publish_proxy_snapshot(&content);
    let st = master.wait_node_status("worker2", "version 1", |s| s.held == Some(1));
    assert_eq!(st.error, None);
    let conf = std::fs::read_to_string(proxy_dir.join("sdwan.conf")).unwrap();
    assert!(!conf.contains("return 200"), "{conf}");
    let r = wait_for(SOON, "hello-world through nginx", || {
        http_get(port, "local.k8s.internal", "/hello-world/").filter(|r| r.status == 200)
    });
    assert!(r.body.starts_with("service hello-world path / "), "{r:?}");
    let r = http_get(port, "local.k8s.internal", "/x/").unwrap();
    assert_eq!(r.status, 404, "{r:?}");
    // `other` runs on worker1: not proxied here, linked from the help page.
    assert_eq!(
        http_get(port, "worker2.k8s.internal", "/other/")
            .unwrap()
            .status,
        404
    );
    let help = http_get(port, "worker2.k8s.internal", "/help/").unwrap();
    assert!(
        help.body.contains(&format!(
            "href=\"http://local.k8s.internal:{port}/hello-world/\""
        )) && help.body.contains(&format!(
            "href=\"http://worker1.k8s.internal:{port}/other/\""
        )),
        "{}",
        help.body
    );
}
