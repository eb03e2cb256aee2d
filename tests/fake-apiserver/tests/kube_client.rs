//! The real kube-rs client and watcher against the fake API server.

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt as _;
use sdwan_fake_apiserver::FakeApiServer;
use serde_json::json;

fn node(name: &str, ready: &str) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "Node",
           "metadata": {"name": name, "labels": {"topology.kubernetes.io/zone": "espoo"}},
           "status": {"conditions": [{"type": "Ready", "status": ready}],
                      "addresses": [{"type": "InternalIP", "address": "192.168.200.2"}]}})
}

fn client(server: &FakeApiServer) -> kube::Client {
    let config = kube::Config::new(server.url().parse().unwrap());
    kube::Client::try_from(config).unwrap()
}

type Events = tokio::sync::mpsc::UnboundedReceiver<Result<Event<Node>, watcher::Error>>;

/// Drives the watcher in a task (it only makes requests while polled).
fn spawn_watcher(api: Api<Node>) -> Events {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let mut stream = watcher::watcher(api, watcher::Config::default().any_semantic())
        .default_backoff()
        .boxed();
    tokio::spawn(async move {
        while let Some(e) = stream.next().await {
            if tx.send(e).is_err() {
                return;
            }
        }
    });
    rx
}

const STEP: Duration = Duration::from_secs(5);

/// Next watcher event that is not an error (errors are retried by the backoff), with a deadline.
async fn next_event(stream: &mut Events) -> Event<Node> {
    loop {
        match tokio::time::timeout(STEP, stream.recv()).await {
            Ok(Some(Ok(e))) => return e,
            Ok(Some(Err(_))) => continue,
            Ok(None) => panic!("watch stream ended"),
            Err(_) => panic!("no watcher event within {STEP:?}"),
        }
    }
}

fn name(e: &Event<Node>) -> String {
    match e {
        Event::Apply(n) | Event::Delete(n) | Event::InitApply(n) => {
            n.metadata.name.clone().unwrap()
        }
        Event::Init => "<init>".into(),
        Event::InitDone => "<init-done>".into(),
    }
}

/// Reads events until InitDone; returns the names listed.
async fn read_init(stream: &mut Events) -> Vec<String> {
    assert!(matches!(next_event(stream).await, Event::Init));
    let mut names = Vec::new();
    loop {
        match next_event(stream).await {
            Event::InitApply(n) => names.push(n.metadata.name.unwrap()),
            Event::InitDone => return names,
            other => panic!("unexpected {} during init", name(&other)),
        }
    }
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + STEP;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_watch_bookmark_gone_and_dropped_connections() {
    let server = FakeApiServer::start().await.unwrap();
    server.apply(node("worker1", "True"));
    server.apply(node("worker2", "True"));
    let api: Api<Node> = Api::all(client(&server));
    let mut stream = spawn_watcher(api);

    // List: the current objects, then a watch from the list's resourceVersion.
    assert_eq!(read_init(&mut stream).await, ["worker1", "worker2"]);
    wait_for("watch open", || server.active_watches("nodes") == 1).await;
    assert_eq!(server.list_requests("nodes"), 1);

    // Watch events.
    server.apply(node("worker3", "True"));
    let e = next_event(&mut stream).await;
    assert!(matches!(e, Event::Apply(_)), "{}", name(&e));
    assert_eq!(name(&e), "worker3");
    server.apply(node("worker3", "False"));
    match next_event(&mut stream).await {
        Event::Apply(n) => {
            let cond = &n.status.unwrap().conditions.unwrap()[0];
            assert_eq!(
                (n.metadata.name.unwrap().as_str(), cond.status.as_str()),
                ("worker3", "False")
            );
        }
        other => panic!("expected MODIFIED worker3, got {}", name(&other)),
    }
    server.delete("Node", "", "worker1");
    let e = next_event(&mut stream).await;
    assert!(
        matches!(e, Event::Delete(_)) && name(&e) == "worker1",
        "{}",
        name(&e)
    );

    // Bookmark: a change elsewhere moves the resourceVersion; the re-watch after a dropped
    // connection resumes from the bookmark's resourceVersion, without a relist.
    server.apply(json!({"apiVersion": "v1", "kind": "Service",
                        "metadata": {"name": "x", "namespace": "default"}}));
    let bookmark_rv = server.resource_version();
    // The bookmark reaches the client asynchronously: send one, cut the connection, and look at
    // where the re-watch resumed; repeat until it resumed from the bookmark (deadline).
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        let watches = server.watch_requests("nodes");
        wait_for("watch open", || server.active_watches("nodes") == 1).await;
        server.send_bookmarks();
        tokio::task::yield_now().await;
        server.drop_watches();
        wait_for("re-watch", || server.watch_requests("nodes") > watches).await;
        let rewatch = server
            .requests()
            .into_iter()
            .rev()
            .find(|r| r.contains("/nodes?") && r.contains("watch=true"))
            .unwrap();
        if rewatch.contains(&format!("resourceVersion={bookmark_rv}&"))
            || rewatch.ends_with(&format!("resourceVersion={bookmark_rv}"))
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "re-watch never resumed from the bookmark rv {bookmark_rv}: {rewatch}"
        );
    }
    assert_eq!(
        server.list_requests("nodes"),
        1,
        "a dropped connection must not relist"
    );
    server.apply(node("worker4", "True"));
    let e = next_event(&mut stream).await;
    assert_eq!(name(&e), "worker4");

    // 410 Gone: a relist with the full current state.
    server.apply(node("worker5", "True"));
    assert_eq!(name(&next_event(&mut stream).await), "worker5");
    server.compact();
    let listed = read_init(&mut stream).await;
    assert_eq!(listed, ["worker2", "worker3", "worker4", "worker5"]);
    assert_eq!(server.list_requests("nodes"), 2);
    server.delete("Node", "", "worker5");
    let e = next_event(&mut stream).await;
    assert!(matches!(e, Event::Delete(_)) && name(&e) == "worker5");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaced_lists_and_endpointslices() {
    let server = FakeApiServer::start().await.unwrap();
    for (ns, n) in [("default", "a"), ("shop", "b"), ("shop", "c")] {
        server.apply(json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": n, "namespace": ns},
            "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}}));
        server.apply(
            json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": format!("{n}-abc"), "namespace": ns,
                         "labels": {"kubernetes.io/service-name": n}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.0.0.1"], "nodeName": "worker1",
                           "conditions": {"ready": true}}]}),
        );
    }
    let c = client(&server);
    let all: Api<Service> = Api::all(c.clone());
    let names: Vec<String> = all
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|s| s.metadata.name.unwrap())
        .collect();
    assert_eq!(names, ["a", "b", "c"]);
    let shop: Api<EndpointSlice> = Api::namespaced(c.clone(), "shop");
    let slices = shop.list(&ListParams::default()).await.unwrap();
    assert_eq!(slices.items.len(), 2);
    assert_eq!(
        slices.items[0].endpoints.as_ref().unwrap()[0]
            .node_name
            .as_deref(),
        Some("worker1")
    );
    assert!(slices.metadata.resource_version.is_some());
    let one = shop.get("c-abc").await.unwrap();
    assert_eq!(
        one.metadata.labels.unwrap()["kubernetes.io/service-name"],
        "c"
    );
    let missing = shop.get("nope").await.unwrap_err();
    assert!(
        matches!(missing, kube::Error::Api(ref s) if s.code == 404),
        "{missing:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_conflict_on_stale_resource_version() {
    let server = FakeApiServer::start().await.unwrap();
    let leases: Api<Lease> = Api::namespaced(client(&server), "sdwan");
    let lease: Lease = serde_json::from_value(json!({"metadata": {"name": "master"},
        "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}}))
    .unwrap();
    let created = leases.create(&PostParams::default(), &lease).await.unwrap();
    let again = leases
        .create(&PostParams::default(), &lease)
        .await
        .unwrap_err();
    assert!(
        matches!(again, kube::Error::Api(ref s) if s.code == 409),
        "{again:?}"
    );
    let mut mine = created.clone();
    mine.spec.as_mut().unwrap().holder_identity = Some("b".into());
    let updated = leases
        .replace("master", &PostParams::default(), &mine)
        .await
        .unwrap();
    assert_ne!(
        updated.metadata.resource_version,
        created.metadata.resource_version
    );
    // A replace carrying the old resourceVersion loses.
    let stale = leases
        .replace("master", &PostParams::default(), &created)
        .await
        .unwrap_err();
    assert!(
        matches!(stale, kube::Error::Api(ref s) if s.code == 409),
        "{stale:?}"
    );
    let got = leases.get("master").await.unwrap();
    assert_eq!(got.spec.unwrap().holder_identity.as_deref(), Some("b"));
}
