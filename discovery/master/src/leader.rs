//! Leader election through a `coordination.k8s.io/v1` Lease, so that of several replicas
//! exactly one publishes.
//!
//! Layout:
//! - [`Elector`]: the decision logic, a pure state machine. It is fed the lease record read
//!   from the API server and the (monotonic) time of the read, and says what to write
//!   ([`Action`]); the caller reports whether the write succeeded. No I/O, no clock of its own:
//!   unit-tested with made-up instants.
//! - [`spawn`]: the thin driver. Every `retry` it gets the Lease, asks the [`Elector`], creates
//!   or replaces the Lease (optimistic concurrency: a replace carries the resourceVersion it
//!   read, so two candidates cannot both win), and publishes the instant until which this
//!   replica may publish ([`Leadership`]). On shutdown it releases the Lease.
//! - [`Leadership`]: what the controller holds. [`Leadership::is_leader`] compares that instant
//!   with the current time at the moment of each publish, so a deposed leader stops at its
//!   deadline even when the driver is stuck in a request.
//! - [`API_CALLS`]: every Kubernetes API call the master makes (the watchers' and this
//!   module's), the one list the RBAC manifests in `deploy/` are checked against.
//!
//! Safety argument (times on each replica's own monotonic clock; clocks need not agree on the
//! time of day, only run at about the same rate):
//! - the leader may publish until `t_sent + renew_deadline`, where `t_sent` is when it sent
//!   (more exactly: when it started the read before) its last successful write;
//! - a candidate takes over only after it has seen the same lease record (same
//!   resourceVersion, another holder) unchanged for the record's `leaseDurationSeconds`,
//!   counted from `t_answer - retry`, where `t_answer` is when the answer of its first read of
//!   that record arrived. The leader's write was committed before that answer, so
//!   `t_sent < t_answer`, and the leader stops at `t_sent + renew_deadline <
//!   t_answer + renew_deadline`; the candidate starts at `t_answer - retry + lease_duration`;
//! - `retry < lease_duration - renew_deadline` (checked at start), so the old leader has stopped
//!   publishing at least `lease_duration - renew_deadline - retry` (3 s by default) before the
//!   new one can start, whatever the request latency.
//!
//! Counting from one retry before the first sight (client-go counts from the sight itself) is
//! what makes the takeover fit in the lease duration: the candidate reads every `retry`, so it
//! first sees the leader's last write at most one retry after it was made, and it wakes for the
//! takeover at the instant the wait ends ([`Elector::acquire_at`]), not at its next round.
//! When the leader dies, the other takes over within `lease_duration` of the leader's last
//! successful write, so within `lease_duration` of its death.
//!
//! A new leader reads the retained payloads and statuses before it publishes (the controller
//! does that), so serials continue from the old leader's.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::PostParams;
use kube::Api;
use tokio::sync::watch;

/// One kind of Kubernetes API request the master makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiCall {
    /// API group (`""` for the core group).
    pub group: &'static str,
    /// Resource plural.
    pub resource: &'static str,
    /// RBAC verb.
    pub verb: &'static str,
    /// Namespaced to the master's own namespace (a Role), or across the cluster (ClusterRole).
    pub namespaced: bool,
}

const fn call(
    group: &'static str,
    resource: &'static str,
    verb: &'static str,
    namespaced: bool,
) -> ApiCall {
    ApiCall {
        group,
        resource,
        verb,
        namespaced,
    }
}

/// Every API call of the master: the watchers (`crate::watch`, list then watch on all
/// namespaces) and the leader election (get, create, update of one Lease in the lease
/// namespace). The RBAC in `deploy/` must allow each (checked by `tests/manifests.rs`), and
/// the leader test checks that the master makes no request outside this list.
pub const API_CALLS: &[ApiCall] = &[
    call("", "nodes", "list", false),
    call("", "nodes", "watch", false),
    call("", "services", "list", false),
    call("", "services", "watch", false),
    call("discovery.k8s.io", "endpointslices", "list", false),
    call("discovery.k8s.io", "endpointslices", "watch", false),
    call("coordination.k8s.io", "leases", "get", true),
    call("coordination.k8s.io", "leases", "create", true),
    call("coordination.k8s.io", "leases", "update", true),
];

/// Lease timing (client-go's names and defaults: 15 s, 10 s, 2 s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTiming {
    /// How long a candidate waits on an unchanged lease record of another holder before it
    /// takes over (written as `leaseDurationSeconds`).
    pub duration: Duration,
    /// How long after its last successful renewal the leader keeps publishing. Shorter than
    /// `duration`.
    pub renew_deadline: Duration,
    /// Time between attempts.
    pub retry: Duration,
}

impl Default for LeaseTiming {
    fn default() -> Self {
        LeaseTiming {
            duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry: Duration::from_secs(2),
        }
    }
}

impl LeaseTiming {
    /// `retry < renew_deadline < duration` and `retry < duration - renew_deadline` (see the
    /// safety argument in the module's documentation), or a text naming the flags.
    pub fn check(&self) -> Result<(), String> {
        if self.renew_deadline >= self.duration {
            return Err("--renew-deadline must be shorter than --lease-duration".into());
        }
        if self.retry.is_zero() || self.retry >= self.renew_deadline {
            return Err("--retry-period must be above 0 and shorter than --renew-deadline".into());
        }
        if self.retry >= self.duration - self.renew_deadline {
            return Err(
                "--retry-period must be shorter than --lease-duration minus --renew-deadline \
                 (the margin that keeps an old and a new leader from overlapping)"
                    .into(),
            );
        }
        Ok(())
    }
}

/// The parts of a Lease the decision needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// `spec.holderIdentity` (`None` or empty: released).
    pub holder: Option<String>,
    /// `spec.leaseDurationSeconds` (the holder's, not ours).
    pub duration: Duration,
    /// `spec.leaseTransitions`.
    pub transitions: i32,
    /// `metadata.resourceVersion`: changes with every write, so it tells a renewal.
    pub resource_version: String,
}

impl Record {
    /// Reads a Lease object. A missing duration counts as 15 s.
    pub fn from_lease(lease: &Lease) -> Record {
        let spec = lease.spec.clone().unwrap_or_default();
        Record {
            holder: spec.holder_identity.filter(|h| !h.is_empty()),
            duration: Duration::from_secs(
                spec.lease_duration_seconds
                    .and_then(|s| u64::try_from(s).ok())
                    .unwrap_or(15),
            ),
            transitions: spec.lease_transitions.unwrap_or(0),
            resource_version: lease.metadata.resource_version.clone().unwrap_or_default(),
        }
    }
}

/// What to write after a read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// No Lease exists: create it, holding it.
    Create,
    /// The Lease is ours: write a new renew time.
    Renew,
    /// The Lease was released or its holder stopped renewing: replace it, holding it, with
    /// this transition count.
    Acquire {
        /// `leaseTransitions` to write.
        transitions: i32,
    },
    /// Another replica holds a live lease: do nothing now.
    Wait,
}

/// The decision logic (no I/O, time passed in).
#[derive(Debug, Clone)]
pub struct Elector {
    identity: String,
    timing: LeaseTiming,
    /// The last record seen with another holder, and when its wait started (one retry before
    /// the answer that first showed it).
    observed: Option<(Record, Instant)>,
    /// This replica may publish until then.
    leading_until: Option<Instant>,
}

impl Elector {
    /// A candidate named `identity` (unique per replica: the pod name).
    pub fn new(identity: &str, timing: LeaseTiming) -> Elector {
        Elector {
            identity: identity.to_string(),
            timing,
            observed: None,
            leading_until: None,
        }
    }

    /// This replica's identity.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The timing.
    pub fn timing(&self) -> LeaseTiming {
        self.timing
    }

    /// Decides after a read of the lease whose answer arrived at `now` (`None`: there is
    /// none).
    pub fn decide(&mut self, now: Instant, lease: Option<&Record>) -> Action {
        let Some(r) = lease else {
            self.observed = None;
            return Action::Create;
        };
        match r.holder.as_deref() {
            Some(h) if h == self.identity => {
                self.observed = None;
                // Ours: nobody else has written it since (they would have changed the
                // holder), and the replace fails if someone does meanwhile.
                Action::Renew
            }
            None => {
                self.observed = None;
                Action::Acquire {
                    transitions: r.transitions.saturating_add(1),
                }
            }
            Some(_) => {
                // Another holder: whatever we thought, we are not leading.
                self.leading_until = None;
                let since = match &self.observed {
                    Some((seen, at)) if seen == r => *at,
                    _ => {
                        let at = now.checked_sub(self.timing.retry).unwrap_or(now);
                        self.observed = Some((r.clone(), at));
                        at
                    }
                };
                if now.saturating_duration_since(since) >= self.wait_for(r) {
                    Action::Acquire {
                        transitions: r.transitions.saturating_add(1),
                    }
                } else {
                    Action::Wait
                }
            }
        }
    }

    /// How long a record of another holder is waited out: the longer of the holder's duration
    /// and ours, so a holder configured with a longer one is not cut short, nor is ours by a
    /// record rounded to seconds.
    fn wait_for(&self, r: &Record) -> Duration {
        r.duration.max(self.timing.duration)
    }

    /// When the lease of another holder runs out, if one is being waited out: the driver
    /// reads again at that instant rather than at its next round.
    pub fn acquire_at(&self) -> Option<Instant> {
        let (r, since) = self.observed.as_ref()?;
        Some(*since + self.wait_for(r))
    }

    /// The write decided on after the read at `read_at` succeeded: leading until
    /// `read_at + renew_deadline`.
    pub fn succeeded(&mut self, read_at: Instant) {
        self.observed = None;
        self.leading_until = Some(read_at + self.timing.renew_deadline);
    }

    /// The read or the write failed (conflict, error, timeout): nothing changes, and a
    /// leader's time runs out at its deadline unless a later renewal succeeds.
    pub fn failed(&mut self) {}

    /// Gives up leadership at once (shutdown).
    pub fn resign(&mut self) {
        self.leading_until = None;
    }

    /// Until when this replica may publish, if it leads.
    pub fn deadline(&self) -> Option<Instant> {
        self.leading_until
    }

    /// Leading at `now`.
    pub fn is_leader(&self, now: Instant) -> bool {
        self.leading_until.is_some_and(|d| now < d)
    }
}

/// What the controller sees: always leading (no election), or leading until a deadline the
/// election driver moves.
#[derive(Debug, Clone)]
pub struct Leadership {
    deadline: Option<watch::Receiver<Option<Instant>>>,
}

impl Leadership {
    /// No election: this replica always leads.
    pub fn always() -> Leadership {
        Leadership { deadline: None }
    }

    /// Follows an election's deadline.
    pub fn elected(deadline: watch::Receiver<Option<Instant>>) -> Leadership {
        Leadership {
            deadline: Some(deadline),
        }
    }

    /// Leader election is on.
    pub fn elects(&self) -> bool {
        self.deadline.is_some()
    }

    /// Leading at `now`.
    pub fn is_leader(&self, now: Instant) -> bool {
        match &self.deadline {
            None => true,
            Some(rx) => rx.borrow().is_some_and(|d| now < d),
        }
    }

    /// The deadline, while leading under an election.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline.as_ref().and_then(|rx| *rx.borrow())
    }

    /// Resolves when the deadline changes (never without an election, or once the driver
    /// stopped).
    pub async fn changed(&mut self) {
        match &mut self.deadline {
            Some(rx) => {
                if rx.changed().await.is_err() {
                    std::future::pending::<()>().await
                }
            }
            None => std::future::pending::<()>().await,
        }
    }
}

/// Where the Lease lives and who we are.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    /// Lease name.
    pub name: String,
    /// Lease namespace.
    pub namespace: String,
    /// This replica's identity.
    pub identity: String,
    /// Timing.
    pub timing: LeaseTiming,
}

/// The running election; [`Election::release`] on shutdown.
#[derive(Debug)]
pub struct Election {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Election {
    /// Stops the driver; if this replica holds the Lease, releases it (empty holder, 1 s
    /// duration) so another replica takes over at its next attempt instead of after the lease
    /// duration. Call after the controller stopped publishing.
    pub async fn release(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.task).await;
    }
}

impl Drop for Election {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lease_object(cfg: &LeaseConfig, rv: Option<String>, transitions: i32, acquire: bool) -> Lease {
    let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
    Lease {
        metadata: ObjectMeta {
            name: Some(cfg.name.clone()),
            namespace: Some(cfg.namespace.clone()),
            resource_version: rv,
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(cfg.identity.clone()),
            // Whole seconds, rounded up: never shorter than the duration in use.
            lease_duration_seconds: Some(
                i32::try_from(cfg.timing.duration.as_millis().div_ceil(1000).max(1))
                    .unwrap_or(i32::MAX),
            ),
            acquire_time: acquire.then(|| now.clone()),
            renew_time: Some(now),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }),
    }
}

/// One read-decide-write round. Errors are texts for the log.
async fn attempt(
    api: &Api<Lease>,
    cfg: &LeaseConfig,
    elector: &mut Elector,
) -> Result<Action, String> {
    let read_at = Instant::now();
    let current = api
        .get_opt(&cfg.name)
        .await
        .map_err(|e| format!("get: {e}"))?;
    let record = current.as_ref().map(Record::from_lease);
    let action = elector.decide(Instant::now(), record.as_ref());
    let pp = PostParams::default();
    let result = match &action {
        Action::Wait => return Ok(action),
        Action::Create => api
            .create(&pp, &lease_object(cfg, None, 0, true))
            .await
            .map(|_| ()),
        Action::Renew => {
            let lease = current.unwrap_or_default();
            let mut new = lease_object(
                cfg,
                lease.metadata.resource_version.clone(),
                record.as_ref().map_or(0, |r| r.transitions),
                false,
            );
            if let (Some(spec), Some(old)) = (new.spec.as_mut(), lease.spec) {
                spec.acquire_time = old.acquire_time;
            }
            api.replace(&cfg.name, &pp, &new).await.map(|_| ())
        }
        Action::Acquire { transitions } => {
            let rv = current.and_then(|l| l.metadata.resource_version);
            api.replace(&cfg.name, &pp, &lease_object(cfg, rv, *transitions, true))
                .await
                .map(|_| ())
        }
    };
    match result {
        Ok(()) => {
            elector.succeeded(read_at);
            Ok(action)
        }
        Err(e) => {
            elector.failed();
            Err(format!("{action:?}: {e}"))
        }
    }
}

/// Gives the Lease up if we hold it.
async fn release(api: &Api<Lease>, cfg: &LeaseConfig) -> Result<bool, String> {
    let Some(lease) = api
        .get_opt(&cfg.name)
        .await
        .map_err(|e| format!("get: {e}"))?
    else {
        return Ok(false);
    };
    let r = Record::from_lease(&lease);
    if r.holder.as_deref() != Some(cfg.identity.as_str()) {
        return Ok(false);
    }
    let mut new = lease.clone();
    let spec = new.spec.get_or_insert_with(LeaseSpec::default);
    spec.holder_identity = None;
    spec.lease_duration_seconds = Some(1);
    spec.renew_time = Some(MicroTime(k8s_openapi::jiff::Timestamp::now()));
    api.replace(&cfg.name, &PostParams::default(), &new)
        .await
        .map_err(|e| format!("replace: {e}"))?;
    Ok(true)
}

/// Starts the election driver. The returned [`Leadership`] follows it.
pub fn spawn(client: kube::Client, cfg: LeaseConfig) -> (Election, Leadership) {
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    let (tx, rx) = watch::channel(None);
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let mut elector = Elector::new(&cfg.identity, cfg.timing);
        log::info!(
            "leader election: lease {}/{} as {:?} (duration {:?}, renew deadline {:?}, retry {:?})",
            cfg.namespace,
            cfg.name,
            cfg.identity,
            cfg.timing.duration,
            cfg.timing.renew_deadline,
            cfg.timing.retry
        );
        let mut was_leader = false;
        let mut last_error: Option<String> = None;
        loop {
            let started = Instant::now();
            // A hanging request must not hold up the loop past the deadline.
            let r =
                tokio::time::timeout(cfg.timing.renew_deadline, attempt(&api, &cfg, &mut elector))
                    .await
                    .unwrap_or_else(|_| {
                        elector.failed();
                        Err("timed out".into())
                    });
            match r {
                Ok(_) => last_error = None,
                Err(e) => {
                    if last_error.as_deref() != Some(e.as_str()) {
                        log::warn!("leader election: lease {}/{}: {e}", cfg.namespace, cfg.name);
                    }
                    last_error = Some(e);
                }
            }
            let now = Instant::now();
            let leader = elector.is_leader(now);
            if leader != was_leader {
                if leader {
                    log::info!("leader election: {} is the leader", cfg.identity);
                } else {
                    log::warn!(
                        "leader election: {} is no longer the leader (stopped publishing)",
                        cfg.identity
                    );
                }
                was_leader = leader;
            }
            tx.send_if_modified(|d| {
                let new = elector.deadline();
                let changed = *d != new;
                *d = new;
                changed
            });
            let mut wake = started + cfg.timing.retry;
            if let Some(d) = elector.deadline().filter(|d| *d > now) {
                // Wake at the deadline too, to log and tell the controller on time.
                wake = wake.min(d);
            }
            if let Some(a) = elector.acquire_at() {
                // And when the other holder's lease runs out, to take over on time.
                wake = wake.min(a.max(now));
            }
            let wake = tokio::time::Instant::from_std(wake);
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => {}
                _ = &mut stopped => break,
            }
        }
        elector.resign();
        let _ = tx.send(None);
        match release(&api, &cfg).await {
            Ok(true) => log::info!(
                "leader election: released lease {}/{}",
                cfg.namespace,
                cfg.name
            ),
            Ok(false) => {}
            Err(e) => log::warn!(
                "leader election: cannot release lease {}/{}: {e}",
                cfg.namespace,
                cfg.name
            ),
        }
    });
    (
        Election {
            stop: Some(stop),
            task,
        },
        Leadership::elected(rx),
    )
}

/// The namespace this pod runs in (the service account's namespace file), else `default`.
pub fn default_namespace() -> String {
    std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "default".into())
}

/// This replica's identity: `$POD_NAME`, else `$HOSTNAME`, else `/etc/hostname`, else
/// `sdwan-discovery-<pid>`.
pub fn default_identity() -> String {
    let env = |k: &str| std::env::var(k).ok().filter(|s| !s.trim().is_empty());
    env("POD_NAME")
        .or_else(|| env("HOSTNAME"))
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| format!("sdwan-discovery-{}", std::process::id()))
}

/// Running in a Kubernetes pod (the API server's service environment is set).
pub fn in_cluster() -> bool {
    std::env::var_os("KUBERNETES_SERVICE_HOST").is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: LeaseTiming = LeaseTiming {
        duration: Duration::from_secs(15),
        renew_deadline: Duration::from_secs(10),
        retry: Duration::from_secs(2),
    };

    fn rec(holder: Option<&str>, rv: u32) -> Record {
        Record {
            holder: holder.map(Into::into),
            duration: T.duration,
            transitions: 3,
            resource_version: rv.to_string(),
        }
    }

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn timing_flags_are_ordered() {
        assert!(T.check().is_ok());
        let mut t = T;
        t.renew_deadline = t.duration;
        assert!(t.check().unwrap_err().contains("--renew-deadline"));
        let mut t = T;
        t.retry = t.renew_deadline;
        assert!(t.check().unwrap_err().contains("--retry-period"));
        // The margin: 15 s - 10 s = 5 s must be more than the retry period.
        let mut t = T;
        t.retry = s(5);
        assert!(t.check().unwrap_err().contains("minus --renew-deadline"));
        t.retry = Duration::from_millis(4999);
        assert!(t.check().is_ok());
    }

    #[test]
    fn creates_a_missing_lease_and_leads_until_the_renew_deadline() {
        let t0 = Instant::now();
        let mut e = Elector::new("a", T);
        assert!(!e.is_leader(t0));
        assert_eq!(e.decide(t0, None), Action::Create);
        e.succeeded(t0);
        assert!(e.is_leader(t0 + s(9)));
        assert!(!e.is_leader(t0 + s(10)), "stops exactly at the deadline");
    }

    #[test]
    fn renewals_extend_and_failed_renewals_run_out_at_the_deadline() {
        let t0 = Instant::now();
        let mut e = Elector::new("a", T);
        assert_eq!(e.decide(t0, Some(&rec(Some("a"), 1))), Action::Renew);
        e.succeeded(t0);
        assert_eq!(e.decide(t0 + s(2), Some(&rec(Some("a"), 2))), Action::Renew);
        e.succeeded(t0 + s(2));
        assert_eq!(e.deadline(), Some(t0 + s(12)));
        // API server unreachable from now on: every attempt fails.
        for k in 2..6 {
            e.failed();
            assert!(e.is_leader(t0 + s(2 * k)));
        }
        assert!(!e.is_leader(t0 + s(12)));
    }

    /// The wait is counted from one retry (2 s) before the answer that first showed a
    /// record: the record was written at most one round of reads earlier.
    #[test]
    fn a_live_lease_of_another_holder_is_waited_out_for_its_duration() {
        let t0 = Instant::now() + s(100);
        let mut b = Elector::new("b", T);
        let held = rec(Some("a"), 7);
        assert_eq!(b.decide(t0, Some(&held)), Action::Wait);
        assert_eq!(b.acquire_at(), Some(t0 + s(13)));
        assert_eq!(b.decide(t0 + s(12), Some(&held)), Action::Wait);
        // The holder renewed (new resourceVersion): the wait starts over.
        let renewed = rec(Some("a"), 8);
        assert_eq!(b.decide(t0 + s(12), Some(&renewed)), Action::Wait);
        assert_eq!(b.acquire_at(), Some(t0 + s(25)));
        assert_eq!(
            b.decide(t0 + s(25) - Duration::from_millis(1), Some(&renewed)),
            Action::Wait
        );
        assert_eq!(
            b.decide(t0 + s(25), Some(&renewed)),
            Action::Acquire { transitions: 4 }
        );
        assert!(!b.is_leader(t0 + s(25)), "only once the write succeeded");
        b.succeeded(t0 + s(25));
        assert!(b.is_leader(t0 + s(25)));
        assert_eq!(b.acquire_at(), None);
    }

    #[test]
    fn the_longer_of_the_record_and_own_duration_is_waited() {
        let t0 = Instant::now() + s(100);
        let mut b = Elector::new("b", T);
        let mut short = rec(Some("a"), 7);
        short.duration = s(1);
        assert_eq!(b.decide(t0, Some(&short)), Action::Wait);
        assert_eq!(b.decide(t0 + s(12), Some(&short)), Action::Wait);
        let mut long = rec(Some("a"), 8);
        long.duration = s(60);
        assert_eq!(b.decide(t0 + s(15), Some(&long)), Action::Wait);
        assert_eq!(b.decide(t0 + s(72), Some(&long)), Action::Wait);
        assert_eq!(
            b.decide(t0 + s(73), Some(&long)),
            Action::Acquire { transitions: 4 }
        );
    }

    #[test]
    fn a_released_lease_is_taken_at_once() {
        let t0 = Instant::now();
        let mut b = Elector::new("b", T);
        assert_eq!(
            b.decide(t0, Some(&rec(None, 9))),
            Action::Acquire { transitions: 4 }
        );
    }

    #[test]
    fn seeing_another_holder_stops_publishing_at_once() {
        let t0 = Instant::now();
        let mut a = Elector::new("a", T);
        assert_eq!(a.decide(t0, None), Action::Create);
        a.succeeded(t0);
        assert!(a.is_leader(t0 + s(1)));
        assert_eq!(a.decide(t0 + s(2), Some(&rec(Some("b"), 5))), Action::Wait);
        assert!(!a.is_leader(t0 + s(2)));
        assert_eq!(a.deadline(), None);
    }

    /// Two replicas, the leader's renewals stop at `crash` (it dies or loses the API server):
    /// at no instant do both publish, and the other leads within the lease duration of the
    /// crash (plus the 100 ms step of this simulation). Both read every retry, and the
    /// standby also at the instant its wait ends, as the driver does.
    #[test]
    fn handover_never_overlaps() {
        let step = Duration::from_millis(100);
        for crash_ms in [0u64, 100, 700, 1900, 1999, 2000, 2001, 5300, 9999] {
            let t0 = Instant::now();
            let crash = t0 + s(20) + Duration::from_millis(crash_ms);
            // The shared "API server": the record and a resourceVersion counter.
            let mut lease: Option<Record> = None;
            let mut rv = 0u32;
            let mut a = Elector::new("a", T);
            let mut b = Elector::new("b", T);
            // A starts first, B 1.3 s later; each tries every 2 s.
            let mut next = [t0, t0 + Duration::from_millis(1300)];
            let mut b_leads_at = None;
            let end = crash + s(40);
            let mut now = t0;
            while now < end {
                for (i, e) in [&mut a, &mut b].into_iter().enumerate() {
                    if next[i] != now {
                        continue;
                    }
                    next[i] = now + T.retry;
                    if i == 0 && now >= crash {
                        continue;
                    }
                    let action = e.decide(now, lease.as_ref());
                    if let Some(at) = e.acquire_at() {
                        // The driver's wake-up at the end of the wait, on this 100 ms grid.
                        let mut t = now + step;
                        while t < at {
                            t += step;
                        }
                        next[i] = next[i].min(t);
                    }
                    let holder = match action {
                        Action::Wait => continue,
                        Action::Create | Action::Renew | Action::Acquire { .. } => {
                            e.identity().to_string()
                        }
                    };
                    rv += 1;
                    lease = Some(Record {
                        holder: Some(holder),
                        duration: T.duration,
                        transitions: 0,
                        resource_version: rv.to_string(),
                    });
                    e.succeeded(now);
                }
                let (al, bl) = (a.is_leader(now), b.is_leader(now));
                assert!(!(al && bl), "crash at +{crash_ms} ms: both lead at {now:?}");
                if bl && b_leads_at.is_none() {
                    b_leads_at = Some(now);
                }
                if now < crash {
                    assert!(al, "a leads while alive (+{crash_ms} ms)");
                }
                now += step;
            }
            let took = b_leads_at.expect("b took over").duration_since(crash);
            assert!(
                took <= T.duration + step,
                "crash at +{crash_ms} ms: b took over after {took:?}"
            );
            // The old leader had stopped publishing well before.
            assert!(!a.is_leader(crash + T.renew_deadline));
        }
    }
}
