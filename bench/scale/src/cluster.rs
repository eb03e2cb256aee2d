//! plan-bench's synthetic cluster (bench/plan/synthetic.rs, the same seeded draws in the same
//! order as bench/plan/main.rs) loaded into the fake API server, and its topology: gateways
//! `gw-NNNNN`, each in a random zone, 30 % with a `near` list of two workers; plus the real
//! agents' gateways `gw-agent-N`.

use sdwan_fake_apiserver::FakeApiServer;
use sdwan_testsupport::Rng;

use crate::synthetic::{node, replicas, service, slice, ZONES};

/// The cluster and the state the changes start from.
#[derive(Debug)]
pub struct Cluster {
    pub nodes: usize,
    /// Per worker: dual-stack.
    pub v6: Vec<bool>,
    /// Per service: namespace, name, number of ports.
    pub services: Vec<(String, String, usize)>,
    /// Per service: the workers with a ready endpoint.
    pub hosts: Vec<Vec<usize>>,
    pub gateways: Vec<String>,
    pub agents: Vec<String>,
    pub topology: String,
    pub rng: Rng,
}

pub fn worker(i: usize) -> String {
    format!("worker{i:04}")
}

/// The address the synthetic cluster gives worker `i` (bench/plan/synthetic.rs).
pub fn worker_v4(i: usize) -> String {
    format!("10.{}.{}.{}", 1 + i / 65536, (i / 256) % 256, i % 256)
}

impl Cluster {
    /// plan-bench's cluster for `seed`, then `agents` more gateways for the real agents.
    pub fn new(services: usize, nodes: usize, gateways: usize, agents: usize, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let v6: Vec<bool> = (0..nodes).map(|_| rng.chance(5)).collect();
        let mut svcs = Vec::new();
        let mut hosts = Vec::new();
        for s in 0..services {
            let ns = format!("team-{:02}", s % 50);
            let name = format!("svc-{s:05}");
            let ports = 1 + usize::from(rng.chance(30));
            hosts.push(replicas(&mut rng, nodes));
            svcs.push((ns, name, ports));
        }
        let mut topology = String::new();
        let mut ids = Vec::new();
        for g in 0..gateways {
            let id = format!("gw-{g:05}");
            topology.push_str(&format!(
                "[[gateway]]\nid = \"{id}\"\nzone = \"zone-{:02}\"\n",
                rng.below(ZONES)
            ));
            if rng.chance(30) {
                topology.push_str(&format!(
                    "near = [\"{}\", \"{}\"]\n",
                    worker(rng.below(nodes)),
                    worker(rng.below(nodes))
                ));
            }
            ids.push(id);
        }
        let agent_ids: Vec<String> = (0..agents).map(|a| format!("gw-agent-{a}")).collect();
        for (a, id) in agent_ids.iter().enumerate() {
            topology.push_str(&format!(
                "[[gateway]]\nid = \"{id}\"\nzone = \"zone-{:02}\"\n",
                a % ZONES
            ));
        }
        Cluster {
            nodes,
            v6,
            services: svcs,
            hosts,
            gateways: ids,
            agents: agent_ids,
            topology,
            rng,
        }
    }

    pub fn workers(&self) -> Vec<String> {
        (0..self.nodes).map(worker).collect()
    }

    /// Every node, service and EndpointSlice into the API server, in their real JSON shapes.
    pub fn load(&self, api: &FakeApiServer) {
        for (i, v6) in self.v6.iter().enumerate() {
            api.apply(json(&node(i, *v6, true)));
        }
        for (s, ((ns, name, ports), hosts)) in self.services.iter().zip(&self.hosts).enumerate() {
            api.apply(json(&service(ns, name, *ports, s)));
            api.apply(json(&slice(ns, name, hosts)));
        }
    }

    /// A service on 1-3 workers (not a DaemonSet), chosen at random.
    pub fn pick_small_service(&mut self) -> usize {
        loop {
            let s = self.rng.below(self.services.len());
            if self.hosts[s].len() < self.nodes.min(4) {
                return s;
            }
        }
    }

    /// Endpoints move: service `s`'s endpoints go to as many other workers. Returns the new hosts.
    pub fn move_endpoints(&mut self, api: &FakeApiServer, s: usize) -> Vec<usize> {
        let old = self.hosts[s].clone();
        let mut new = Vec::new();
        while new.len() < old.len() {
            let w = self.rng.below(self.nodes);
            if !old.contains(&w) && !new.contains(&w) {
                new.push(w);
            }
        }
        new.sort_unstable();
        self.set_hosts(api, s, new.clone());
        new
    }

    /// A replica is added: service `s` gains an endpoint on one more worker. Returns it.
    pub fn add_replica(&mut self, api: &FakeApiServer, s: usize) -> usize {
        let w = loop {
            let w = self.rng.below(self.nodes);
            if !self.hosts[s].contains(&w) {
                break w;
            }
        };
        let mut h = self.hosts[s].clone();
        h.push(w);
        h.sort_unstable();
        self.set_hosts(api, s, h);
        w
    }

    fn set_hosts(&mut self, api: &FakeApiServer, s: usize, hosts: Vec<usize>) {
        let (ns, name, _) = &self.services[s];
        api.apply(json(&slice(ns, name, &hosts)));
        self.hosts[s] = hosts;
    }

    /// Worker `i` goes NotReady (its Ready condition `Unknown`, as when its kubelet stops).
    pub fn not_ready(&self, api: &FakeApiServer, i: usize) {
        api.apply(json(&node(i, self.v6[i], false)));
    }
}

fn json<T: k8s_openapi::serde::Serialize>(object: &T) -> serde_json::Value {
    serde_json::to_value(object).expect("a Kubernetes object serialises")
}
