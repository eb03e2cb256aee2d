//! The gateways' view of the workers (branch autonomy, issue 14): what each gateway's status
//! says in its `reach` field ([`sdwan_link::status::Reach`]), turned into metrics an operator reads as
//! a reachability matrix (gateway x worker) and log lines on changes.
//!
//! Scale: 2,000 gateways x 500 workers must not make a million series. Per gateway: how many
//! workers it probes, how many it sees down, its probe RTT summary (3 quantiles). Per pair:
//! one series only while a gateway reports that worker down. Per worker: how many gateways see
//! it down (a worker down for many gateways is a worker or central-site problem, one gateway
//! seeing many down is that branch's link).
//!
//! Bounds: statuses are followed only for the topology's gateways (the controller drops the
//! rest), a status lists at most [`sdwan_link::status::MAX_REACH_DOWN`] names
//! (`Status::from_json` refuses more), and a name becomes a label only when it is a node of
//! the cluster ([`ReachView::set_workers`]); other names are only counted
//! (`sdwan_gateway_workers_down_unknown`). Pure: no I/O, the controller logs what
//! [`ReachView::status`] returns.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use sdwan_link::status::Reach;

/// What one gateway's last status said of the workers.
#[derive(Debug, Clone, PartialEq, Eq)]
struct GatewayReach {
    /// Workers it probes.
    workers: u32,
    /// Names it lists as down (at most 32: the status door's bound).
    down: BTreeSet<String>,
    /// Down workers beyond the names listed.
    more: u32,
    /// Probe RTT `[p50, p90, max]` in ms to the workers seen up.
    rtt_ms: Option<[u32; 3]>,
}

impl GatewayReach {
    fn down_total(&self) -> u64 {
        self.down.len() as u64 + u64::from(self.more)
    }
}

/// Every gateway's reach, and the cluster's node names (which names may become labels).
#[derive(Debug, Default)]
pub struct ReachView {
    gateways: BTreeMap<String, GatewayReach>,
    /// The cluster's node names, once listed (`None` before: no name is a label yet).
    known: Option<BTreeSet<String>>,
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl ReachView {
    /// The cluster's node names (the master's snapshot). Cheap when nothing changed.
    pub fn set_workers<'a>(&mut self, names: impl Iterator<Item = &'a String> + Clone) {
        if self
            .known
            .as_ref()
            .is_some_and(|k| k.iter().eq(names.clone()))
        {
            return;
        }
        self.known = Some(names.cloned().collect());
    }

    fn is_known(&self, worker: &str) -> bool {
        self.known.as_ref().is_some_and(|k| k.contains(worker))
    }

    /// Notes gateway `gateway`'s status: its `reach` (`None`: the agent does not probe, is
    /// offline, or its status was deleted: the gateway leaves the matrix). Returns the log
    /// lines of what changed: one per worker that went down or came up again for it.
    pub fn status(&mut self, gateway: &str, reach: Option<&Reach>) -> Vec<String> {
        let new = reach.map(|r| GatewayReach {
            workers: r.workers,
            down: r.down.iter().cloned().collect(),
            more: r.more,
            rtt_ms: r.rtt_ms,
        });
        let empty = BTreeSet::new();
        let old = self.gateways.get(gateway);
        let old_down = old.map_or(&empty, |o| &o.down);
        let new_down = new.as_ref().map_or(&empty, |n| &n.down);
        let mut lines = Vec::new();
        let of = |r: Option<&GatewayReach>| {
            r.map_or("no longer reported".to_string(), |r| {
                format!("{} of {} workers down", r.down_total(), r.workers)
            })
        };
        for w in new_down.difference(old_down) {
            let unknown = if self.known.is_some() && !self.is_known(w) {
                ", not a node of the cluster"
            } else {
                ""
            };
            let n = new.as_ref().expect("a name down comes from a reach");
            lines.push(format!(
                "gateway {gateway} sees worker {w:?} down ({} of {} workers{unknown})",
                n.down_total(),
                n.workers
            ));
        }
        for w in old_down.difference(new_down) {
            lines.push(format!(
                "gateway {gateway} sees worker {w:?} up again ({})",
                of(new.as_ref())
            ));
        }
        let more = |r: Option<&GatewayReach>| r.map_or(0, |r| r.more);
        if more(old) != more(new.as_ref()) {
            lines.push(format!(
                "gateway {gateway} sees {} more workers down than it names ({})",
                more(new.as_ref()),
                of(new.as_ref())
            ));
        }
        match new {
            Some(n) => {
                self.gateways.insert(gateway.to_string(), n);
            }
            None => {
                self.gateways.remove(gateway);
            }
        }
        lines
    }

    /// Appends the Prometheus text of the matrix.
    pub fn render(&self, o: &mut String) {
        let gauge = |o: &mut String, name: &str, help: &str| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} gauge");
        };
        gauge(
            o,
            "sdwan_gateway_workers_probed",
            "workers the gateway probes (its status' reach)",
        );
        for (g, r) in &self.gateways {
            let _ = writeln!(
                o,
                "sdwan_gateway_workers_probed{{gateway=\"{}\"}} {}",
                esc(g),
                r.workers
            );
        }
        gauge(
            o,
            "sdwan_gateway_workers_down",
            "workers the gateway sees down (named or not)",
        );
        for (g, r) in &self.gateways {
            let _ = writeln!(
                o,
                "sdwan_gateway_workers_down{{gateway=\"{}\"}} {}",
                esc(g),
                r.down_total()
            );
        }
        gauge(
            o,
            "sdwan_gateway_workers_down_unknown",
            "names the gateway lists as down that are no node of the cluster",
        );
        for (g, r) in &self.gateways {
            let n = r.down.iter().filter(|w| !self.is_known(w)).count();
            let _ = writeln!(
                o,
                "sdwan_gateway_workers_down_unknown{{gateway=\"{}\"}} {n}",
                esc(g)
            );
        }
        gauge(
            o,
            "sdwan_gateway_worker_down",
            "1 for each (gateway, worker) pair the gateway reports down; absent when up",
        );
        let mut by_worker: BTreeMap<&str, u32> = BTreeMap::new();
        for (g, r) in &self.gateways {
            for w in r.down.iter().filter(|w| self.is_known(w)) {
                *by_worker.entry(w).or_default() += 1;
                let _ = writeln!(
                    o,
                    "sdwan_gateway_worker_down{{gateway=\"{}\",worker=\"{}\"}} 1",
                    esc(g),
                    esc(w)
                );
            }
        }
        gauge(
            o,
            "sdwan_worker_down_gateways",
            "gateways that see the worker down (only workers seen down by one or more)",
        );
        for (w, n) in by_worker {
            let _ = writeln!(o, "sdwan_worker_down_gateways{{worker=\"{}\"}} {n}", esc(w));
        }
        gauge(
            o,
            "sdwan_gateway_probe_rtt_ms",
            "round-trip time of the gateway's probes to the workers it sees up, milliseconds",
        );
        for (g, r) in &self.gateways {
            if let Some(q) = r.rtt_ms {
                for (label, v) in ["0.5", "0.9", "1"].iter().zip(q) {
                    let _ = writeln!(
                        o,
                        "sdwan_gateway_probe_rtt_ms{{gateway=\"{}\",quantile=\"{label}\"}} {v}",
                        esc(g)
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reach(workers: u32, down: &[&str], more: u32, rtt: Option<[u32; 3]>) -> Reach {
        Reach {
            workers,
            down: down.iter().map(|s| s.to_string()).collect(),
            more,
            rtt_ms: rtt,
        }
    }

    /// One step: a gateway's status (its reach), the log lines it must give, the metric lines
    /// the text must then hold and must not hold.
    struct Step {
        gateway: &'static str,
        reach: Option<Reach>,
        logs: &'static [&'static str],
        has: &'static [&'static str],
        lacks: &'static [&'static str],
    }

    fn run(known: &[&str], steps: Vec<Step>) {
        let mut v = ReachView::default();
        let names: Vec<String> = known.iter().map(|s| s.to_string()).collect();
        v.set_workers(names.iter());
        for (i, s) in steps.into_iter().enumerate() {
            let logs = v.status(s.gateway, s.reach.as_ref());
            assert_eq!(logs, s.logs, "step {i}: log lines");
            let mut o = String::new();
            v.render(&mut o);
            for h in s.has {
                assert!(
                    o.contains(&format!("{h}\n")),
                    "step {i}: want {h:?} in\n{o}"
                );
            }
            for l in s.lacks {
                assert!(!o.contains(l), "step {i}: {l:?} must not be in\n{o}");
            }
        }
    }

    #[test]
    fn a_worker_down_for_one_gateway_is_one_pair_and_logged_on_changes_only() {
        let w = &["w1", "w2", "w3"];
        let down = Some(reach(3, &["w1"], 0, Some([2, 5, 9])));
        run(
            w,
            vec![
                Step {
                    gateway: "g1",
                    reach: Some(reach(3, &[], 0, Some([1, 2, 3]))),
                    logs: &[],
                    has: &[
                        "sdwan_gateway_workers_probed{gateway=\"g1\"} 3",
                        "sdwan_gateway_workers_down{gateway=\"g1\"} 0",
                        "sdwan_gateway_probe_rtt_ms{gateway=\"g1\",quantile=\"0.5\"} 1",
                        "sdwan_gateway_probe_rtt_ms{gateway=\"g1\",quantile=\"1\"} 3",
                    ],
                    lacks: &["sdwan_gateway_worker_down{", "sdwan_worker_down_gateways{"],
                },
                Step {
                    gateway: "g1",
                    reach: down.clone(),
                    logs: &["gateway g1 sees worker \"w1\" down (1 of 3 workers)"],
                    has: &[
                        "sdwan_gateway_workers_down{gateway=\"g1\"} 1",
                        "sdwan_gateway_worker_down{gateway=\"g1\",worker=\"w1\"} 1",
                        "sdwan_worker_down_gateways{worker=\"w1\"} 1",
                        "sdwan_gateway_probe_rtt_ms{gateway=\"g1\",quantile=\"0.9\"} 5",
                    ],
                    lacks: &["worker=\"w2\""],
                },
                // The same view again (a status for another reason): no log line.
                Step {
                    gateway: "g1",
                    reach: down,
                    logs: &[],
                    has: &["sdwan_gateway_worker_down{gateway=\"g1\",worker=\"w1\"} 1"],
                    lacks: &[],
                },
                Step {
                    gateway: "g1",
                    reach: Some(reach(3, &[], 0, Some([1, 2, 3]))),
                    logs: &["gateway g1 sees worker \"w1\" up again (0 of 3 workers down)"],
                    has: &["sdwan_gateway_workers_down{gateway=\"g1\"} 0"],
                    lacks: &["sdwan_gateway_worker_down{", "sdwan_worker_down_gateways{"],
                },
            ],
        );
    }

    #[test]
    fn a_worker_down_for_many_gateways_stands_out() {
        run(
            &["w1", "w2", "w3"],
            vec![
                Step {
                    gateway: "g1",
                    reach: Some(reach(3, &["w2"], 0, None)),
                    logs: &["gateway g1 sees worker \"w2\" down (1 of 3 workers)"],
                    has: &["sdwan_worker_down_gateways{worker=\"w2\"} 1"],
                    lacks: &["sdwan_gateway_probe_rtt_ms{"],
                },
                Step {
                    gateway: "g2",
                    reach: Some(reach(3, &["w2", "w3"], 0, Some([4, 4, 4]))),
                    logs: &[
                        "gateway g2 sees worker \"w2\" down (2 of 3 workers)",
                        "gateway g2 sees worker \"w3\" down (2 of 3 workers)",
                    ],
                    has: &[
                        "sdwan_worker_down_gateways{worker=\"w2\"} 2",
                        "sdwan_worker_down_gateways{worker=\"w3\"} 1",
                        "sdwan_gateway_worker_down{gateway=\"g2\",worker=\"w3\"} 1",
                    ],
                    lacks: &[],
                },
                // g2 goes offline (its last will carries no reach): it leaves the matrix.
                Step {
                    gateway: "g2",
                    reach: None,
                    logs: &[
                        "gateway g2 sees worker \"w2\" up again (no longer reported)",
                        "gateway g2 sees worker \"w3\" up again (no longer reported)",
                    ],
                    has: &["sdwan_worker_down_gateways{worker=\"w2\"} 1"],
                    lacks: &["gateway=\"g2\"", "worker=\"w3\""],
                },
            ],
        );
    }

    #[test]
    fn names_that_are_no_node_of_the_cluster_are_counted_not_labels() {
        run(
            &["w1"],
            vec![
                Step {
                    gateway: "g1",
                    reach: Some(reach(500, &["w1", "zz-made-up"], 7, None)),
                    logs: &[
                        "gateway g1 sees worker \"w1\" down (9 of 500 workers)",
                        "gateway g1 sees worker \"zz-made-up\" down (9 of 500 workers, not a \
                         node of the cluster)",
                        "gateway g1 sees 7 more workers down than it names (9 of 500 workers \
                         down)",
                    ],
                    has: &[
                        "sdwan_gateway_workers_down{gateway=\"g1\"} 9",
                        "sdwan_gateway_workers_down_unknown{gateway=\"g1\"} 1",
                        "sdwan_gateway_worker_down{gateway=\"g1\",worker=\"w1\"} 1",
                    ],
                    lacks: &["zz-made-up"],
                },
                // A name with quotes and a newline is escaped in the log (Debug) and, once
                // a node, in the labels.
                Step {
                    gateway: "g\"1",
                    reach: Some(reach(1, &["a\"\nb"], 0, None)),
                    logs: &[
                        "gateway g\"1 sees worker \"a\\\"\\nb\" down (1 of 1 workers, not a \
                             node of the cluster)",
                    ],
                    has: &["sdwan_gateway_workers_down_unknown{gateway=\"g\\\"1\"} 1"],
                    lacks: &[],
                },
            ],
        );
    }

    #[test]
    fn before_the_cluster_is_listed_no_name_is_a_label_and_after_it_the_known_ones_are() {
        let mut v = ReachView::default();
        let logs = v.status("g1", Some(&reach(3, &["w1"], 0, None)));
        assert_eq!(
            logs,
            ["gateway g1 sees worker \"w1\" down (1 of 3 workers)"]
        );
        let mut o = String::new();
        v.render(&mut o);
        assert!(!o.contains("sdwan_gateway_worker_down{"), "{o}");
        assert!(
            o.contains("sdwan_gateway_workers_down{gateway=\"g1\"} 1\n"),
            "{o}"
        );
        let names = ["w1".to_string(), "w2".to_string()];
        v.set_workers(names.iter());
        let mut o = String::new();
        v.render(&mut o);
        assert!(
            o.contains("sdwan_gateway_worker_down{gateway=\"g1\",worker=\"w1\"} 1\n"),
            "{o}"
        );
        // w1 deleted from the cluster: the pair goes, the count stays.
        v.set_workers(names[1..].iter());
        let mut o = String::new();
        v.render(&mut o);
        assert!(!o.contains("worker=\"w1\""), "{o}");
        assert!(
            o.contains("sdwan_gateway_workers_down_unknown{gateway=\"g1\"} 1\n"),
            "{o}"
        );
    }
}
