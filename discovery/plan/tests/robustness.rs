//! Bad input never crashes anything: seeded mutations of the bundled example cluster (values
//! replaced by other types, out-of-range numbers, odd strings, removed keys, truncated
//! bytes) are either refused with an error or planned into payloads the agent accepts.

mod common;

use common::agent_accepts;
use sdwan_plan::{plan, Snapshot, Topology};
use sdwan_testsupport::Rng;
use serde_json::{json, Value};

/// Every path to a value inside `v`.
fn paths(v: &Value, at: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    out.push(at.clone());
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                at.push(k.clone());
                paths(x, at, out);
                at.pop();
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                at.push(i.to_string());
                paths(x, at, out);
                at.pop();
            }
        }
        _ => {}
    }
}

fn get_mut<'a>(v: &'a mut Value, path: &[String]) -> &'a mut Value {
    path.iter().fold(v, |v, k| match v {
        Value::Object(m) => m.get_mut(k).unwrap(),
        Value::Array(a) => &mut a[k.parse::<usize>().unwrap()],
        _ => unreachable!(),
    })
}

fn odd_value(rng: &mut Rng) -> Value {
    let long = "x".repeat(300);
    let choices = [
        json!(null),
        json!(-1),
        json!(0),
        json!(65536),
        json!(4294967296u64),
        json!(1.5),
        json!(true),
        json!(""),
        json!("worker1"),
        json!("worker1.example.com"),
        json!("Local"),
        json!("local"),
        json!("a\"b\\c\n"),
        json!("UDP"),
        json!("SCTP"),
        json!("LoadBalancer"),
        json!("NodePort"),
        json!("False"),
        json!("false"),
        json!("::1"),
        json!("10.0.0.999"),
        json!(long),
        json!([]),
        json!({}),
        json!(["worker2"]),
    ];
    choices[rng.below(choices.len())].clone()
}

#[test]
fn mutated_clusters_are_refused_or_planned_validly() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples");
    let original: Value =
        serde_json::from_slice(&std::fs::read(format!("{root}/cluster.json")).unwrap()).unwrap();
    let topology =
        Topology::from_toml(&std::fs::read_to_string(format!("{root}/topology.toml")).unwrap())
            .unwrap();
    let mut all = Vec::new();
    paths(&original, &mut Vec::new(), &mut all);
    let mut rng = Rng::new(4);
    let (mut ok, mut refused) = (0, 0);
    for round in 0..500 {
        let mut v = original.clone();
        for _ in 0..1 + rng.below(4) {
            let path = &all[rng.below(all.len())];
            if path.is_empty() {
                continue;
            }
            // The path may have gone with an earlier mutation.
            let (parent, last) = path.split_at(path.len() - 1);
            let exists = {
                let mut cur = Some(&v);
                for k in path {
                    cur = cur.and_then(|c| match c {
                        Value::Object(m) => m.get(k),
                        Value::Array(a) => k.parse::<usize>().ok().and_then(|i| a.get(i)),
                        _ => None,
                    });
                }
                cur.is_some()
            };
            if !exists {
                continue;
            }
            let p = get_mut(&mut v, parent);
            match (rng.below(3), p) {
                (0, Value::Object(m)) => {
                    m.remove(&last[0]);
                }
                (_, p) => *get_mut(p, last) = odd_value(&mut rng),
            }
        }
        let mut bytes = serde_json::to_vec(&v).unwrap();
        if rng.below(10) == 0 {
            bytes.truncate(rng.below(bytes.len()));
        }
        match Snapshot::from_kubectl_json(&bytes) {
            Err(e) => {
                assert!(!e.to_string().is_empty());
                refused += 1;
            }
            Ok(s) => {
                ok += 1;
                let p = plan(&s, &topology);
                for (id, z) in &p.gateways {
                    let payload = z.render(id, 1);
                    agent_accepts(&payload).unwrap_or_else(|e| panic!("round {round}: {id}: {e}"));
                }
                for (n, c) in &p.nodes {
                    let payload = c.render(n, 1);
                    serde_json::from_slice::<Value>(&payload)
                        .unwrap_or_else(|e| panic!("round {round}: proxy {n}: {e}"));
                }
            }
        }
    }
    eprintln!("ok {ok}, refused {refused}");
    // Both outcomes were exercised.
    assert!(ok > 50 && refused > 50, "ok {ok}, refused {refused}");
}
