//! The prober's I/O: one thread, non-blocking TCP connects (socket2) waited on with
//! `poll(2)`, each with a deadline; no thread per worker, at most
//! [`Params::max_in_flight`](super::Params::max_in_flight) sockets. It follows the zone in
//! the store (the probe targets of its slots), feeds [`Prober`], and publishes the bitmap
//! into the [`BranchView`] the answer path reads. A connected probe is closed with a reset
//! (linger 0), so probing leaves no TIME_WAIT sockets behind.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{info, warn};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::{
    layout, service_layout, service_targets, targets, BranchView, Input, Output, Params, Prober,
    ServiceTargets, MAX_PAIRS,
};
use crate::store::ZoneStore;

/// How often the zone in the store and the broker's absence are looked at.
pub const CHECK_EVERY: Duration = Duration::from_millis(50);

/// How often the RTT summary of the status may change without a worker going down or up.
pub const REACH_EVERY: Duration = Duration::from_secs(60);

/// The least wait for due probes: they start in batches (at most this late).
pub const SLACK: Duration = Duration::from_millis(10);

/// Where the probe port comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortChoice {
    /// The zone's `probe` field (the workers' nginx port); no probing without one.
    Zone,
    /// `--probe-port N`.
    Fixed(u16),
    /// `--probe-port service`: each service's NodePort on each of its candidates
    /// ([`service_targets`]).
    Services,
}

/// The driver's settings.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// The port.
    pub port: PortChoice,
    /// The prober's timing.
    pub params: Params,
    /// Answers are stale after this long without the broker (`None`: never).
    pub stale_after: Option<Duration>,
}

struct Flight {
    socket: Socket,
    target: SocketAddr,
    started: Instant,
}

/// Starts the probe thread.
pub fn spawn(
    settings: Settings,
    store: Arc<ZoneStore>,
    view: Arc<BranchView>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("probe".into())
        .spawn(move || run(settings, &store, &view))
}

fn run(settings: Settings, store: &ZoneStore, view: &BranchView) {
    let start = Instant::now();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64
        ^ u64::from(std::process::id()) << 20;
    let mut prober = Prober::new(settings.params, seed ^ 0x9e37_79b9_7f4a_7c15);
    let timeout = settings.params.timeout;
    let mut flights: Vec<Flight> = Vec::new();
    let mut out = Vec::new();
    let mut names: Vec<String> = Vec::new();
    let mut current: Option<(u64, u64)> = None;
    let mut next_check = start;
    let mut reach_at = start;
    let mut fds: Vec<libc::pollfd> = Vec::new();
    let mut warned = false;
    let mut capped = false;
    let mut have_rtt = false;
    let mut rtt_at = start;
    let services = settings.port == PortChoice::Services;
    // Per-service probing: the prober's slots are these targets; log lines name them.
    let mut st = ServiceTargets::default();
    loop {
        let now = Instant::now();
        let t = now - start;
        let mut changed = false;
        if now >= next_check {
            next_check = now + CHECK_EVERY;
            view.update_stale(settings.stale_after);
            let served = store.load_full();
            let zone = served.as_deref().and_then(|s| s.v2());
            // The layouts the store computed at the swap (no hashing of the zone every
            // CHECK_EVERY); computed here for a store without a view.
            let l = zone.map(|z| {
                served
                    .as_deref()
                    .and_then(|s| s.layouts())
                    .unwrap_or_else(|| (layout(z), if services { service_layout(z) } else { 0 }))
            });
            if l != current {
                current = l;
                let port = match settings.port {
                    PortChoice::Fixed(p) => Some(p),
                    PortChoice::Zone => zone.and_then(|z| z.header()).and_then(|h| h.probe),
                    PortChoice::Services => None,
                };
                let (t_list, n_list) = match (zone, port) {
                    (Some(z), _) if services => {
                        st = service_targets(z, MAX_PAIRS);
                        if st.over_cap > 0 && !capped {
                            capped = true;
                            warn!(
                                "{} services not probed on their NodePort: more than {MAX_PAIRS} (service, worker) pairs; their answers follow whole-worker state only",
                                st.over_cap
                            );
                        }
                        (st.targets.clone(), st.names.clone())
                    }
                    (Some(z), Some(p)) => targets(z, p),
                    _ => (Vec::new(), Vec::new()),
                };
                let probed = t_list.iter().flatten().count();
                match port {
                    _ if services && probed > 0 => {
                        info!("probing {probed} (worker, service NodePort) targets")
                    }
                    Some(p) if probed > 0 => info!("probing {probed} workers on port {p}"),
                    None if zone.is_some() && !warned && !services => {
                        warned = true;
                        warn!("not probing: the zone has no probe port (see --probe-port)")
                    }
                    _ => {}
                }
                names = n_list;
                prober.handle(t, Input::Zone(t_list), &mut out);
                changed = true;
            }
        }
        // Results of connects that ended.
        if !fds.is_empty() {
            let mut keep = Vec::with_capacity(flights.len());
            for (f, p) in flights.drain(..).zip(fds.iter()) {
                let ended = p.revents != 0;
                let late = now.saturating_duration_since(f.started) >= timeout;
                if ended || late {
                    let ok = ended
                        && matches!(f.socket.take_error(), Ok(None))
                        && f.socket.peer_addr().is_ok();
                    let rtt = ok.then(|| now.saturating_duration_since(f.started));
                    let _ = f.socket.set_linger(Some(Duration::ZERO));
                    drop(f.socket);
                    prober.handle(
                        t,
                        Input::Result {
                            target: f.target,
                            rtt,
                        },
                        &mut out,
                    );
                } else {
                    keep.push(f);
                }
            }
            flights = keep;
        }
        prober.handle(t, Input::Tick, &mut out);
        let mut failed = Vec::new();
        while !out.is_empty() {
            for o in out.drain(..) {
                match o {
                    Output::Start { target, .. } => match connect(target) {
                        Ok(socket) => flights.push(Flight {
                            socket,
                            target,
                            started: Instant::now(),
                        }),
                        // Refused at once (a closed port on this host), no route, ...
                        Err(_) => failed.push(target),
                    },
                    Output::Down(slot) => {
                        changed = true;
                        let name = label(&st, &names, slot);
                        warn!("worker {name} unreachable from this branch: answers skip it");
                    }
                    Output::Up(slot) => {
                        changed = true;
                        let name = label(&st, &names, slot);
                        info!("worker {name} reachable again");
                    }
                }
            }
            for target in failed.drain(..) {
                prober.handle(t, Input::Result { target, rtt: None }, &mut out);
            }
        }
        if let Some((l, sl)) = current {
            // The bitmap when it changed, the RTTs (for --rtt-order) at most once a second.
            let rtt = changed || now.saturating_duration_since(rtt_at) >= Duration::from_secs(1);
            if services && (changed || rtt) {
                view.publish_services(l, sl, &prober, &st, rtt);
            } else if changed || rtt {
                view.publish(l, &prober, rtt);
            }
            if rtt {
                rtt_at = now;
            }
        }
        // The summary: at once when the down set changed (or the first RTTs came in),
        // else at most every REACH_EVERY for the RTTs.
        let first_rtt = !have_rtt && prober.has_rtt();
        if prober.probed() == 0 {
            // Not probing: no `reach` in the status.
            view.clear_reach();
        } else if changed || first_rtt || now.saturating_duration_since(reach_at) >= REACH_EVERY {
            let reach = prober.reach(&names);
            have_rtt = reach.rtt_ms.is_some();
            view.set_reach(reach, true);
            reach_at = now;
        }
        // Wait for a connect to end, a probe to be due, or the next check.
        let mut wake = next_check;
        // Due probes are started in batches at most every SLACK (fewer wake-ups; with the
        // connect bound reached, no spinning until a result frees a socket).
        if let Some(d) = prober.next_due() {
            wake = wake.min((start + d).max(now + SLACK));
        }
        for f in &flights {
            wake = wake.min(f.started + timeout);
        }
        fds.clear();
        fds.extend(flights.iter().map(|f| libc::pollfd {
            fd: f.socket.as_raw_fd(),
            events: libc::POLLOUT,
            revents: 0,
        }));
        let ms = wake
            .saturating_duration_since(Instant::now())
            .as_micros()
            .div_ceil(1000)
            .min(1000) as libc::c_int;
        // SAFETY: `fds` is a valid array of `fds.len()` pollfd structures for this call.
        #[allow(unsafe_code)]
        let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if r < 0 {
            fds.iter_mut().for_each(|p| p.revents = 0);
        }
    }
}

/// How the log names slot `slot`: the target's label with per-service probing, else the
/// worker's name.
fn label<'a>(st: &'a ServiceTargets, names: &'a [String], slot: u16) -> &'a str {
    st.labels
        .get(usize::from(slot))
        .or_else(|| names.get(usize::from(slot)))
        .map_or("", String::as_str)
}

/// A non-blocking connect to `target`, under way.
fn connect(target: SocketAddr) -> std::io::Result<Socket> {
    let s = Socket::new(
        Domain::for_address(target),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    s.set_nonblocking(true)?;
    match s.connect(&SockAddr::from(target)) {
        Ok(()) => Ok(s),
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(s),
        Err(e) => Err(e),
    }
}
