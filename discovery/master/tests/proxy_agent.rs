//! Proxy payload v2 end to end with real parts: fake API server -> master (in-process) ->
//! mosquitto -> `sdwan-agent` in worker mode for w1 -> real nginx -> HTTP backends on the
//! NodePorts. A service is reached through the worker that hosts it, moves
//! with its endpoint, and the master's node metrics say converged by digest. Needs
//! mosquitto and nginx, and the agent binary with worker mode (`cargo build -p sdwan-agent
//! --features worker`; `cargo nextest run --workspace` builds it so).

mod common;

use std::time::{Duration, Instant};

use common::*;
use sdwan_discovery::metrics::SharedMetrics;
use sdwan_fake_apiserver::FakeApiServer;
use sdwan_testsupport::mosquitto::{Mosquitto, MosquittoConfig};
use sdwan_testsupport::nginx::{http_get, Backend, Nginx};
use sdwan_testsupport::{free_port, require_tool, ChildGuard, TempDir};

const LOCAL: &str = "local.k8s.internal";

fn serves(port: u16, path: &str, service: &str) -> bool {
    http_get(port, LOCAL, path)
        .is_some_and(|r| r.status == 200 && r.body.starts_with(&format!("service {service} ")))
}

fn not_found(port: u16, path: &str) -> bool {
    http_get(port, LOCAL, path).is_some_and(|r| r.status == 404)
}

fn converged(metrics: &SharedMetrics, nodes: &[&str]) -> bool {
    let m = metrics.lock().unwrap();
    nodes
        .iter()
        .all(|n| m.nodes.get(*n).is_some_and(|c| c.converged()))
}

async fn wait(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ok = tokio::task::block_in_place(&mut cond);
        if ok {
            return;
        }
        assert!(Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_agents_serve_through_nginx_what_the_master_publishes_as_proxy_v2() {
    require_tool("mosquitto");
    require_tool("nginx");
    let dir = TempDir::new("proxy-agent");
    let broker = Mosquitto::start(
        dir.path(),
        &MosquittoConfig {
            tls: None,
            acl: None,
            persistence: false,
            max_packet_size: None,
        },
    );
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], broker.port()));
    let web = Backend::start("web");
    let api_backend = Backend::start("api");
    let api = FakeApiServer::start().await.unwrap();
    api.apply(node("w1", "192.0.2.1", "a", true));
    api.apply(node("w2", "192.0.2.2", "b", true));
    api.apply(service("default", "web", web.port));
    api.apply(slice("default", "web", &["w1"]));

    // Worker w1 runs here: its nginx includes the topology's `[proxy] dir`, which is also
    // its agent's `--proxy-dir`, and listens on the topology's `listen_port`.
    let listen = free_port();
    let w1_dir = dir.path().join("w1-sdwan");
    std::fs::create_dir_all(&w1_dir).unwrap();
    let topology = format!(
        "{TOPOLOGY}\n[proxy]\nlisten_port = {listen}\nupstream_host = \"127.0.0.1\"\ndir = \"{}\"\n",
        w1_dir.display()
    );
    write_file(dir.path(), "kubeconfig", &api.kubeconfig_yaml());
    write_file(dir.path(), "topology.toml", &topology);
    let nginx_prefix = dir.path().join("nginx-w1");
    std::fs::create_dir_all(&nginx_prefix).unwrap();
    let nginx = Nginx::start(&nginx_prefix, &format!("{}/*.conf", w1_dir.display()));

    let m = Master::start(&args(
        &dir.join("kubeconfig"),
        &dir.join("topology.toml"),
        &format!("mqtt://{addr}"),
        &[],
    ))
    .await;
    let mut cmd = std::process::Command::new(agent_bin());
    cmd.env("RUST_LOG", "info")
        .args(["--broker", &format!("mqtt://{addr}")])
        .args(["--node-id", "w1", "--topic-prefix", PREFIX])
        .arg("--proxy-dir")
        .arg(&w1_dir)
        .args(["--check-cmd", &nginx.check_cmd()])
        .args(["--reload-cmd", &nginx.reload_cmd()]);
    let agent = ChildGuard::spawn("sdwan-agent w1", &mut cmd);

    wait("w1 serves web through nginx, converged", || {
        serves(listen, "/default/web/", "web") && converged(&m.metrics, &["w1"])
    })
    .await;
    let help = http_get(listen, "w1.k8s.internal", "/help/").unwrap();
    assert_eq!(help.status, 200, "{help:?}");
    assert!(help.body.contains("web"), "{}", help.body);

    // The endpoint moves to w2 and another service comes to w1: w1's nginx stops proxying
    // web and proxies api, by delta; the metrics follow by digest.
    let published = m.metrics.lock().unwrap().published_proxies;
    api.apply(slice("default", "web", &["w2"]));
    api.apply(service("default", "api", api_backend.port));
    api.apply(slice("default", "api", &["w1"]));
    wait("w1 proxies api and no longer web, converged", || {
        not_found(listen, "/default/web/")
            && serves(listen, "/default/api/", "api")
            && converged(&m.metrics, &["w1"])
    })
    .await;
    assert!(m.metrics.lock().unwrap().published_proxies > published);
    let v2 = m.metrics.lock().unwrap().v2_egress.clone();
    assert!(v2.get("delta").is_some_and(|d| d.0 > 0), "{v2:?}");
    drop(agent);
    m.stop().await;
}
