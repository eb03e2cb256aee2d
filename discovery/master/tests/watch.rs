//! The master against the fake API server (real kube-rs client) and an MQTT broker: what it
//! publishes on start, on changes, on 410 Gone relists, dropped watches, bursts, restarts.

mod common;

use std::time::{Duration, Instant};

use common::*;
use sdwan_contract::v2::{Digest, Version};

/// [`Setup`] with a control-plane node `cp` as well (never an answer).
async fn setup(name: &str) -> Setup {
    Setup::start(name, &[control_plane("cp", "192.0.2.100")]).await
}

fn a(s: &Zone, name: &str) -> Vec<String> {
    s.data_of(name, "A")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relists_and_dropped_watches_never_publish_a_partial_cluster() {
    let s = setup("relist").await;
    let m = Master::start(&s.args(&[])).await;
    let rec = &s.recorder;

    let z = rec
        .wait_zone("gw-a", "web on w1", |z| {
            a(z, "web.default") == ["192.0.2.1"]
        })
        .await;
    assert_eq!(rec.zone("gw-a").len(), 1, "one content at start");
    assert_eq!(
        a(&z, "local"),
        ["192.0.2.1"],
        "gw-a is in zone a: w1 is nearest"
    );
    assert!(
        a(&z, "cp").is_empty(),
        "control-plane nodes are never answers"
    );
    let zb = rec
        .wait_zone("gw-b", "web on w1", |z| {
            a(z, "web.default") == ["192.0.2.1"]
        })
        .await;
    assert_eq!(a(&zb, "local"), ["192.0.2.2"]);

    // A service moves: both gateways get a newer version, as a delta.
    let v1 = z.version();
    s.api.apply(slice("default", "web", &["w2"]));
    let z = rec
        .wait_zone("gw-a", "web moved to w2", |z| {
            a(z, "web.default") == ["192.0.2.2"]
        })
        .await;
    assert!(z.version().is_newer_than(v1));
    assert!(
        !rec.v2("gw-a", "delta").is_empty(),
        "the move went as a delta"
    );
    rec.wait_zone("gw-b", "web moved to w2", |z| {
        a(z, "web.default") == ["192.0.2.2"]
    })
    .await;

    // 410 Gone: every watcher relists. Nothing changed, so nothing is published; meanwhile a
    // new service appears and is in the relisted state.
    let plans = m.plans();
    s.api.compact();
    wait_until(Duration::from_secs(10), "all three relisted", || {
        ["nodes", "services", "endpointslices"]
            .iter()
            .all(|r| s.api.list_requests(r) == 2)
    })
    .await;
    wait_until(Duration::from_secs(10), "relists planned", || {
        let mm = m.metrics.lock().unwrap();
        mm.relists.values().all(|n| *n == 2) && mm.relists.len() == 3 && mm.plans > plans
    })
    .await;
    assert_eq!(
        rec.last_zone("gw-a").unwrap().version(),
        z.version(),
        "a relist of the same state published a new version"
    );

    // Changes around a compaction (one of them a deletion the watchers never see as an
    // event) are all in the relisted state.
    s.api.apply(node("w9", "192.0.2.9", "b", true));
    rec.wait_zone("gw-a", "w9 appears", |z| a(z, "w9") == ["192.0.2.9"])
        .await;
    s.api.apply(service("default", "api", 30090));
    s.api.compact();
    s.api.delete("Node", "", "w9");
    s.api.apply(slice("default", "api", &["w1"]));
    let z = rec
        .wait_zone("gw-a", "api on w1", |z| {
            a(z, "api.default") == ["192.0.2.1"]
        })
        .await;
    assert_eq!(a(&z, "web.default"), ["192.0.2.2"]);
    rec.wait_zone("gw-a", "w9 gone", |z| a(z, "w9").is_empty())
        .await;

    // A dropped connection re-watches without a relist.
    let lists = s.api.list_requests("nodes");
    let watches = s.api.watch_requests("nodes");
    s.api.drop_watches();
    wait_until(Duration::from_secs(10), "re-watch", || {
        s.api.watch_requests("nodes") > watches
    })
    .await;
    s.api.apply(node("w3", "192.0.2.3", "a", true));
    rec.wait_zone("gw-a", "w3 appears", |z| a(z, "w3") == ["192.0.2.3"])
        .await;
    assert_eq!(
        s.api.list_requests("nodes"),
        lists,
        "dropped connection caused a relist"
    );

    // NotReady nodes are never answers.
    s.api.apply(node("w1", "192.0.2.1", "a", false));
    let z = rec
        .wait_zone("gw-a", "w1 gone", |z| a(z, "w1").is_empty())
        .await;
    assert_eq!(a(&z, "local"), ["192.0.2.3"]);
    assert_eq!(a(&z, "api.default"), Vec::<String>::new());

    // Invariants over everything gw-a ever held: versions only grow (RFC 1982), every
    // version changed the content, and no content lacked what was there before and after
    // (w2 and web were present from start to end).
    let all = rec.zone("gw-a");
    for pair in all.windows(2) {
        assert!(pair[1].version().is_newer_than(pair[0].version()));
        assert_ne!(
            pair[1].digest(),
            pair[0].digest(),
            "identical content republished"
        );
    }
    for z in &all {
        assert_eq!(a(z, "w2"), ["192.0.2.2"], "{:?} lacks w2", z.version());
        assert!(
            !a(z, "web.default").is_empty(),
            "{:?} lacks web",
            z.version()
        );
    }
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_events_gives_one_publish_per_gateway() {
    let s = setup("burst").await;
    // A generous debounce so that the burst below certainly falls in one window.
    let m = Master::start(&s.args(&["--debounce", "300", "--max-delay", "3000"])).await;
    let rec = &s.recorder;
    rec.wait_zone("gw-a", "first zone", |_| true).await;
    for i in 0..30 {
        s.api.apply(service("shop", &format!("svc{i}"), 31000 + i));
        s.api.apply(slice("shop", &format!("svc{i}"), &["w2"]));
    }
    let z = rec
        .wait_zone("gw-a", "all 30 services", |z| {
            a(z, "svc29.shop") == ["192.0.2.2"]
        })
        .await;
    for i in 0..30 {
        assert_eq!(a(&z, &format!("svc{i}.shop")), ["192.0.2.2"]);
    }
    // The first event after a quiet goes out at once (issue 11, item 9: here a service
    // without endpoints, which changes no zone, or with them), the rest of the burst in one
    // step.
    for gw in ["gw-a", "gw-b"] {
        let n = rec.zone(gw).len();
        assert!(
            (2..=3).contains(&n),
            "{gw}: the burst was published in {} steps",
            n - 1
        );
    }
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_change_goes_out_without_waiting_for_the_debounce() {
    // Issue 11, item 9: with a long debounce, a change after a quiet is published at once;
    // one that follows it closely waits for the quiet.
    let s = setup("isolated").await;
    let m = Master::start(&s.args(&["--debounce", "600", "--max-delay", "3000"])).await;
    let rec = &s.recorder;
    rec.wait_zone("gw-a", "first zone", |_| true).await;
    // The quiet that makes the next change isolated (longer than the debounce).
    tokio::time::sleep(Duration::from_millis(700)).await;
    let t0 = Instant::now();
    s.api.apply(slice("default", "web", &["w2"]));
    let z = rec
        .wait_zone("gw-a", "web moved to w2", |z| {
            a(z, "web.default") == ["192.0.2.2"]
        })
        .await;
    let isolated = z.at.duration_since(t0);
    // A second change right after it is part of a burst: held until 600 ms of quiet.
    let t1 = Instant::now();
    s.api.apply(slice("default", "web", &["w1"]));
    let z = rec
        .wait_zone("gw-a", "web back on w1", |z| {
            a(z, "web.default") == ["192.0.2.1"]
        })
        .await;
    let burst = z.at.duration_since(t1);
    // A service created as its EndpointSlice first, then the Service (as the benchmark and
    // often Kubernetes do): the first event alone changes nothing, so the second is planned
    // at once too.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let t2 = Instant::now();
    s.api.apply(slice("default", "api", &["w1"]));
    s.api.apply(service("default", "api", 30090));
    let z = rec
        .wait_zone("gw-a", "api created", |z| {
            a(z, "api.default") == ["192.0.2.1"]
        })
        .await;
    let create = z.at.duration_since(t2);
    eprintln!(
        "isolated change published after {isolated:?}, the one after it {burst:?}, a \
         slice-then-service create after {create:?}"
    );
    assert!(
        create < Duration::from_millis(400),
        "a create waited {create:?} (debounce 600 ms)"
    );
    assert!(
        isolated < Duration::from_millis(400),
        "an isolated change waited {isolated:?} (debounce 600 ms)"
    );
    assert!(
        burst >= Duration::from_millis(500),
        "a change right after another went out after {burst:?}, not coalesced"
    );
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_delay_bounds_a_never_ending_burst() {
    let s = setup("maxdelay").await;
    let m = Master::start(&s.args(&["--debounce", "200", "--max-delay", "300"])).await;
    let rec = &s.recorder;
    rec.wait_zone("gw-a", "first zone", |_| true).await;
    // An event every 20 ms for 1.5 s never leaves 200 ms of quiet: only --max-delay publishes.
    let start = Instant::now();
    let mut i = 0u16;
    while start.elapsed() < Duration::from_millis(1500) {
        s.api.apply(service("shop", &format!("svc{i}"), 31000 + i));
        s.api.apply(slice("shop", &format!("svc{i}"), &["w2"]));
        i += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let during = rec
        .zone("gw-a")
        .iter()
        .filter(|z| z.at < start + Duration::from_millis(1500))
        .count();
    assert!(
        during >= 3,
        "only {during} publishes during 1.5 s of constant events with --max-delay 300"
    );
    let last = format!("svc{}.shop", i - 1);
    rec.wait_zone("gw-a", "the last service", |z| !a(z, &last).is_empty())
        .await;
    m.stop().await;
}

/// Each `P/gateways/gw-a/v2/...` message after `from`: (leaf, payload empty).
fn v2_after(rec: &Recorder, from: usize) -> Vec<(String, bool)> {
    let prefix = format!("{PREFIX}/gateways/gw-a/v2/");
    rec.seen.lock().unwrap()[from..]
        .iter()
        .filter_map(|x| {
            let leaf = x.topic.strip_prefix(&prefix)?;
            Some((leaf.to_string(), x.payload.is_empty()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_continue_across_restarts_from_the_statuses_alone() {
    let s = setup("restart").await;
    let m = Master::start(&s.args(&[])).await;
    let rec = &s.recorder;
    rec.wait_zone("gw-a", "web", |z| !a(z, "web.default").is_empty())
        .await;
    s.api.apply(slice("default", "web", &["w2"]));
    let z = rec
        .wait_zone("gw-a", "web on w2", |z| {
            a(z, "web.default") == ["192.0.2.2"]
        })
        .await;
    // A simulated agent reports what it holds.
    rec.report("gw-a", Some((z.version(), z.digest()))).await;
    wait_until(Duration::from_secs(10), "gw-a converged", || {
        m.metrics.lock().unwrap().gateways["gw-a"].converged()
    })
    .await;
    m.stop().await;
    let before = rec.seen.lock().unwrap().len();

    // Same cluster: the new master adopts the version the agent holds, sends the agent
    // nothing (no delta, no notice, no new version) and at most refreshes the retained
    // snapshot at that version.
    let m = Master::start(&s.args(&[])).await;
    wait_until(Duration::from_secs(10), "second master planned", || {
        m.metrics.lock().unwrap().ready
    })
    .await;
    wait_until(Duration::from_secs(10), "gw-a adopted", || {
        m.metrics.lock().unwrap().gateways["gw-a"].desired == Some(z.version().0)
    })
    .await;
    assert!(m.metrics.lock().unwrap().gateways["gw-a"].converged());
    let after = v2_after(rec, before);
    assert!(
        after.iter().all(|(leaf, _)| leaf != "delta"),
        "a delta or notice went to an agent holding the desired content: {after:?}"
    );
    assert_eq!(rec.last_zone("gw-a").unwrap().version(), z.version());
    let read = m.metrics.lock().unwrap().start_status_bytes;
    assert!(read > 0, "the start read the retained status");

    // A change continues past that version.
    s.api.apply(slice("default", "web", &["w1"]));
    let z2 = rec
        .wait_zone("gw-a", "web back on w1", |z| {
            a(z, "web.default") == ["192.0.2.1"]
        })
        .await;
    assert!(z2.version().is_newer_than(z.version()));
    rec.report("gw-a", Some((z2.version(), z2.digest()))).await;
    wait_until(
        Duration::from_secs(10),
        "gw-a converged on the change",
        || m.metrics.lock().unwrap().gateways["gw-a"].converged(),
    )
    .await;
    m.stop().await;

    // A master started while the cluster changed (the agent still reports the older
    // content): a newer version, as a snapshot and a notice.
    s.api.apply(slice("default", "web", &["w2"]));
    let before = rec.seen.lock().unwrap().len();
    let m = Master::start(&s.args(&[])).await;
    let z3 = rec
        .wait_zone("gw-a", "web on w2 again", |z| {
            a(z, "web.default") == ["192.0.2.2"]
        })
        .await;
    assert!(z3.version().is_newer_than(z2.version()));
    assert!(v2_after(rec, before).iter().any(|(l, _)| l == "part/0"));
    m.stop().await;

    // The broker lost the retained zone, and the agent reports a version far ahead (an
    // older master's, a lie): the next version is newer than it, never one the agent would
    // take for old.
    for k in 0..2 {
        rec.publish_retained(&format!("{PREFIX}/gateways/gw-a/v2/part/{k}"), b"")
            .await;
    }
    rec.publish_retained(&format!("{PREFIX}/gateways/gw-a/v2/tail"), b"")
        .await;
    let ahead = Version(z3.version().0.wrapping_add(1 << 40));
    rec.report("gw-a", Some((ahead, Digest(0x1234)))).await;
    let before = rec.seen.lock().unwrap().len();
    let m = Master::start(&s.args(&[])).await;
    wait_until(
        Duration::from_secs(10),
        "a snapshot past the agent's version",
        || {
            let prefix = format!("{PREFIX}/gateways/gw-a/v2/");
            let seen = rec.seen.lock().unwrap()[before..].to_vec();
            let seen: Vec<Seen> = seen
                .into_iter()
                .filter(|x| x.topic.starts_with(&prefix))
                .collect();
            follow(&prefix, &seen)
                .last()
                .is_some_and(|z| z.version().is_newer_than(ahead))
        },
    )
    .await;
    assert!(!m.metrics.lock().unwrap().gateways["gw-a"].converged());
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_to_publish_latency() {
    let s = setup("latency").await;
    let m = Master::start(&s.args(&[])).await;
    let rec = &s.recorder;
    rec.wait_zone("gw-a", "first zone", |_| true).await;
    let mut lat = Vec::new();
    for i in 0..50u16 {
        let node = if i % 2 == 0 { "w2" } else { "w1" };
        let want = if i % 2 == 0 { "192.0.2.2" } else { "192.0.2.1" };
        // Each change isolated (a quiet longer than the debounce before it): published at
        // once, without waiting for the debounce (issue 11, item 9).
        tokio::time::sleep(Duration::from_millis(40)).await;
        let t0 = Instant::now();
        s.api.apply(slice("default", "web", &[node]));
        let z = rec
            .wait_zone("gw-a", "moved", |z| a(z, "web.default") == [want])
            .await;
        lat.push(z.at.duration_since(t0));
    }
    lat.sort();
    eprintln!(
        "event -> MQTT delivery (debounce 20 ms, isolated changes), {} changes: p50 {:?}, p99 {:?}, max {:?}",
        lat.len(),
        lat[lat.len() / 2],
        lat[lat.len() * 99 / 100],
        lat[lat.len() - 1]
    );
    // The work only (no debounce wait): well under the paper's 5 s, even on a busy CI
    // machine; and under the 20 ms debounce an isolated change no longer waits out.
    assert!(lat[lat.len() / 2] < Duration::from_millis(500), "{lat:?}");
    assert!(
        lat[lat.len() / 4] < Duration::from_millis(20),
        "isolated changes waited for the debounce: {lat:?}"
    );
    let h = m.metrics.lock().unwrap().event_to_publish.count();
    assert!(h >= 50, "event_to_publish histogram has {h} observations");
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_the_planner_refuses_are_skipped_and_counted() {
    let s = setup("bad-input").await;
    let m = Master::start(&s.args(&[])).await;
    let rec = &s.recorder;
    rec.wait_zone("gw-a", "first zone", |_| true).await;
    // An InternalIP that is not an IP: logged and counted; the rest goes on being served.
    s.api.apply(node("w7", "not-an-ip", "a", true));
    s.api.apply(node("w8", "192.0.2.8", "a", true));
    let z = rec
        .wait_zone("gw-a", "w8 appears", |z| a(z, "w8") == ["192.0.2.8"])
        .await;
    assert!(a(&z, "w7").is_empty());
    assert_eq!(a(&z, "web.default"), ["192.0.2.1"]);
    assert!(m.metrics.lock().unwrap().input_errors >= 1);
    m.stop().await;
}
