//! The smoltcp/TAP driver (cargo feature `smoltcp`): the same core answering DNS through
//! smoltcp's own Ethernet/ARP/IPv4/UDP stack on a TAP device, without the OS network stack.
//! For gateways without a usable OS stack, and as proof that the core needs no OS.
//!
//! - [`TapSettings`]: the `--tap`, `--tap-address`, `--tap-gateway`, `--tap-port` settings
//!   (parsed in every build; without the feature they are refused with a clear error).
//! - [`open`]: opens the TAP device (before root is dropped) into a [`Tap`].
//! - `Tap::poll`: one step of the driver with the time passed in: `Interface::poll`, then
//!   every waiting datagram answered with `store::answer` (v1 or v2) on the zone in use.
//!   Buffers are allocated once in [`open`]; nothing is allocated per query. The TAP device
//!   side (`TapDevice`, `read`/`write` on the `/dev/net/tun` fd into fixed buffers) is ours:
//!   smoltcp's `TunTapInterface` allocates per frame.
//! - [`serve`]: the loop (poll, wait on the device's fd until the next deadline), alongside
//!   the socket servers, returning the first fatal error of either.
//!
//! MQTT still runs over the OS stack: only DNS goes through smoltcp.

use std::fmt;
use std::io;
use std::net::Ipv4Addr;

/// DNS port the TAP driver serves when `--tap-port` is not given.
pub const DEFAULT_TAP_PORT: u16 = 53;

/// The TAP settings as given (none of them means: no TAP driver).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TapSettings {
    /// `tap`: the TAP interface's name (it must exist, e.g. `ip tuntap add mode tap name tap0`).
    pub ifname: Option<String>,
    /// `tap-address`: the agent's own IPv4 address and prefix length on the TAP link.
    pub address: Option<(Ipv4Addr, u8)>,
    /// `tap-gateway`: default IPv4 route, for clients beyond the TAP link.
    pub gateway: Option<Ipv4Addr>,
    /// `tap-port`: UDP port served (default [`DEFAULT_TAP_PORT`]).
    pub port: Option<u16>,
}

impl TapSettings {
    /// Sets `key` (`tap`, `tap-address`, `tap-gateway` or `tap-port`) from `value`; the error is the reason.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        if !cfg!(feature = "smoltcp") {
            return Err(
                "this sdwan-agent was built without the smoltcp feature (cargo build --features smoltcp)"
                    .into(),
            );
        }
        match key {
            "tap" => {
                // Linux interface names: 1..=15 bytes, no '/', no whitespace.
                if value.is_empty()
                    || value.len() > 15
                    || value.contains(|c: char| c == '/' || c.is_whitespace())
                {
                    return Err("expected an interface name of 1 to 15 characters".into());
                }
                self.ifname = Some(value.to_string());
            }
            "tap-address" => {
                let parsed = value.split_once('/').and_then(|(ip, len)| {
                    let ip: Ipv4Addr = ip.parse().ok()?;
                    let len: u8 = len.parse().ok().filter(|l| (1..=32).contains(l))?;
                    Some((ip, len))
                });
                self.address = Some(parsed.ok_or("expected IPv4/PREFIX, e.g. 10.99.0.2/24")?);
            }
            "tap-gateway" => {
                let ip: Ipv4Addr = value
                    .parse()
                    .map_err(|_| "expected an IPv4 address, e.g. 10.99.0.1")?;
                self.gateway = Some(ip);
            }
            "tap-port" => {
                let port: u16 = value
                    .parse()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or("expected a port, 1 to 65535")?;
                self.port = Some(port);
            }
            _ => return Err(format!("not a TAP setting: {key}")),
        }
        Ok(())
    }

    /// True when any TAP setting is given.
    pub fn is_set(&self) -> bool {
        *self != TapSettings::default()
    }
}

/// Why the TAP driver cannot start or stopped.
#[derive(Debug)]
pub enum TapError {
    /// A TAP setting is given but `--tap` or `--tap-address` is missing.
    Incomplete(&'static str),
    /// This build has no smoltcp driver (the `smoltcp` cargo feature is off).
    NotBuilt,
    /// The TAP device cannot be opened (missing, or no CAP_NET_ADMIN).
    Open {
        /// The interface name.
        ifname: String,
        /// The OS error.
        error: io::Error,
    },
    /// Reading, writing or waiting on the TAP device failed.
    Device {
        /// The interface name.
        ifname: String,
        /// The OS error.
        error: io::Error,
    },
    /// A smoltcp setting was refused (e.g. the gateway is not on the TAP link's subnet).
    Setup(String),
}

impl fmt::Display for TapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TapError::Incomplete(what) => write!(f, "TAP driver: {what}"),
            TapError::NotBuilt => {
                write!(
                    f,
                    "--tap: this sdwan-agent was built without the smoltcp feature"
                )
            }
            TapError::Open { ifname, error } => {
                write!(f, "cannot open TAP device {ifname}: {error}")?;
                if error.kind() == io::ErrorKind::PermissionDenied {
                    write!(
                        f,
                        " (needs root or CAP_NET_ADMIN, or a TAP device owned by this user)"
                    )?;
                }
                Ok(())
            }
            TapError::Device { ifname, error } => write!(f, "TAP device {ifname}: {error}"),
            TapError::Setup(what) => write!(f, "TAP driver: {what}"),
        }
    }
}

impl std::error::Error for TapError {}

#[cfg(feature = "smoltcp")]
pub use driver::{open, serve, Tap};

#[cfg(not(feature = "smoltcp"))]
pub use off::{open, serve, Tap};

#[cfg(not(feature = "smoltcp"))]
mod off {
    use super::*;
    use crate::server::Running;
    use crate::store::ZoneStore;

    /// The TAP driver of a build without the `smoltcp` feature: never exists.
    #[derive(Debug)]
    pub enum Tap {}

    /// Without the feature: `Ok(None)` when no TAP setting is given, else [`TapError::NotBuilt`].
    pub fn open(settings: &TapSettings) -> Result<Option<Tap>, TapError> {
        if settings.is_set() {
            Err(TapError::NotBuilt)
        } else {
            Ok(None)
        }
    }

    /// Never called: there is no [`Tap`] to serve.
    pub fn serve(
        tap: Tap,
        _store: std::sync::Arc<ZoneStore>,
        _sockets: Option<Running>,
    ) -> crate::Error {
        match tap {}
    }
}

#[cfg(feature = "smoltcp")]
mod driver {
    use super::*;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
    use std::sync::{mpsc, Arc};

    use log::{debug, info};
    use sdwan_agent_core::Transport;
    use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet, SocketStorage};
    use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
    use smoltcp::socket::udp;
    use smoltcp::time::Instant;
    use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr, Ipv4Cidr};

    use crate::server::udp::{ANSWER_MAX, QUERY_MAX};
    use crate::server::Running;
    use crate::store::{answer, ZoneStore};

    /// Datagrams each way the UDP socket can hold between two polls.
    const SLOTS: usize = 32;

    /// An open TAP device with smoltcp's interface and one UDP socket on it.
    pub struct Tap {
        ifname: String,
        device: TapDevice,
        iface: Interface,
        sockets: SocketSet<'static>,
        udp: SocketHandle,
        out: Vec<u8>,
        start: std::time::Instant,
    }

    impl fmt::Debug for Tap {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("Tap")
                .field("ifname", &self.ifname)
                .finish_non_exhaustive()
        }
    }

    /// Opens the TAP device named in `settings` and sets up smoltcp on it: the agent's address,
    /// the optional default route, a UDP socket on the port. `Ok(None)` when no TAP setting is
    /// given. Every buffer the driver uses is allocated here.
    pub fn open(settings: &TapSettings) -> Result<Option<Tap>, TapError> {
        if !settings.is_set() {
            return Ok(None);
        }
        let ifname = settings.ifname.clone().ok_or(TapError::Incomplete(
            "--tap-address and the others need --tap IFNAME",
        ))?;
        let (ip, prefix) = settings.address.ok_or(TapError::Incomplete(
            "--tap needs --tap-address IPv4/PREFIX, the agent's own address",
        ))?;
        let port = settings.port.unwrap_or(DEFAULT_TAP_PORT);
        let mut device = TapDevice::open(&ifname).map_err(|error| TapError::Open {
            ifname: ifname.clone(),
            error,
        })?;
        // A locally administered MAC derived from the address: stable across restarts, so the
        // neighbours' ARP caches stay right.
        let o = ip.octets();
        let mac = EthernetAddress([0x02, 0x53, o[0], o[1], o[2], o[3]]);
        let mut config = Config::new(HardwareAddress::Ethernet(mac));
        config.random_seed = u64::from(u32::from(ip)) ^ 0x5d4e_5f00_0053;
        let start = std::time::Instant::now();
        let mut iface = Interface::new(config, &mut device, Instant::ZERO);
        let cidr = Ipv4Cidr::new(ip, prefix);
        iface.update_ip_addrs(|addrs| {
            // The list is empty, so there is room.
            let _ = addrs.push(IpCidr::Ipv4(cidr));
        });
        if let Some(gw) = settings.gateway {
            if !cidr.contains_addr(&gw) {
                return Err(TapError::Setup(format!(
                    "--tap-gateway {gw} is not on the TAP link {ip}/{prefix}"
                )));
            }
            iface
                .routes_mut()
                .add_default_ipv4_route(gw)
                .map_err(|_| TapError::Setup("no room for the default route".into()))?;
        }
        let buffer = || {
            udp::PacketBuffer::new(
                vec![udp::PacketMetadata::EMPTY; SLOTS],
                vec![0u8; SLOTS * QUERY_MAX],
            )
        };
        let mut socket = udp::Socket::new(buffer(), buffer());
        socket
            .bind(port)
            .map_err(|e| TapError::Setup(format!("cannot bind UDP port {port}: {e}")))?;
        let mut sockets = SocketSet::new(Vec::from([SocketStorage::EMPTY]));
        let udp = sockets.add(socket);
        let mtu = device.capabilities().max_transmission_unit;
        info!(
            "TAP {ifname}: smoltcp on {ip}/{prefix} (MAC {mac}, MTU {mtu}), DNS on udp port {port}"
        );
        Ok(Some(Tap {
            ifname,
            device,
            iface,
            sockets,
            udp,
            out: vec![0u8; ANSWER_MAX],
            start,
        }))
    }

    impl Tap {
        /// The interface name.
        pub fn ifname(&self) -> &str {
            &self.ifname
        }

        /// One step at time `now`: smoltcp takes in what the device has and sends what is due,
        /// then every waiting query is answered from `store`'s current zone, and what that
        /// queued is sent. Returns how many queries were answered. Allocates nothing.
        pub fn poll(&mut self, now: Instant, store: &ZoneStore) -> usize {
            self.iface.poll(now, &mut self.device, &mut self.sockets);
            let socket = self.sockets.get_mut::<udp::Socket>(self.udp);
            let mut answered = 0;
            if socket.can_recv() {
                let zone = store.load();
                while socket.can_send() {
                    let (query, meta) = match socket.recv() {
                        Ok(x) => x,
                        Err(_) => break, // nothing left
                    };
                    let result = answer(zone.as_deref(), query, &mut self.out, Transport::Udp);
                    let Ok(k) = result else {
                        continue; // not a query worth an answer: send nothing
                    };
                    // Reply from the address the query was sent to.
                    let mut reply = udp::UdpMetadata::from(meta.endpoint);
                    reply.local_address = meta.local_address;
                    match socket.send_slice(&self.out[..k], reply) {
                        Ok(()) => answered += 1,
                        Err(e) => debug!(
                            "TAP {}: answer to {} dropped: {e}",
                            self.ifname, meta.endpoint
                        ),
                    }
                }
            }
            if answered > 0 {
                self.iface.poll(now, &mut self.device, &mut self.sockets);
            }
            answered
        }

        /// How long until [`Tap::poll`] is due again at the latest (`None`: only when the
        /// device has something).
        pub fn delay(&mut self, now: Instant) -> Option<smoltcp::time::Duration> {
            self.iface.poll_delay(now, &self.sockets)
        }

        /// Waits until the device has a frame to read or `delay` (`None`: no limit) passed.
        /// Returns the first read or write error the device met since the last call, if any.
        pub fn wait(&mut self, delay: Option<smoltcp::time::Duration>) -> io::Result<()> {
            if let Some(e) = self.device.error.take() {
                return Err(e);
            }
            let mut pfd = libc::pollfd {
                fd: self.device.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = delay.map_or(-1, |d| d.total_millis().min(60_000) as libc::c_int);
            // SAFETY: one valid pollfd for the duration of the call.
            if unsafe { libc::poll(&mut pfd, 1, ms) } < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        }

        /// Monotonic time since [`open`], as smoltcp counts it.
        pub fn now(&self) -> Instant {
            Instant::from_micros(self.start.elapsed().as_micros() as i64)
        }

        /// Serves until the device fails, or until `stop` holds an error (checked at least
        /// every [`STOP_CHECK`]): poll, then wait on the device's fd until the next deadline.
        fn run(
            &mut self,
            store: &ZoneStore,
            stop: Option<&mpsc::Receiver<io::Error>>,
        ) -> crate::Error {
            loop {
                let now = self.now();
                self.poll(now, store);
                let mut delay = self.delay(now);
                if let Some(stop) = stop {
                    if let Ok(e) = stop.try_recv() {
                        return crate::Error::Server(e);
                    }
                    delay = Some(delay.map_or(STOP_CHECK, |d| d.min(STOP_CHECK)));
                }
                if let Err(error) = self.wait(delay) {
                    if error.kind() == io::ErrorKind::Interrupted {
                        continue;
                    }
                    return crate::Error::Tap(TapError::Device {
                        ifname: self.ifname.clone(),
                        error,
                    });
                }
            }
        }
    }

    /// The TAP device as a smoltcp [`Device`]: frames read into and written from two buffers
    /// allocated at open (smoltcp's own `TunTapInterface` allocates a buffer per frame and
    /// panics on a device error; this one does neither). A read or write error other than
    /// "nothing to read" is kept and reported by [`Tap::wait`].
    struct TapDevice {
        fd: OwnedFd,
        /// The Ethernet MTU: the interface's IP MTU plus the 14-byte Ethernet header.
        mtu: usize,
        rx: Vec<u8>,
        tx: Vec<u8>,
        error: Option<io::Error>,
    }

    impl TapDevice {
        /// Attaches to the existing TAP interface `ifname` (non-blocking, no packet info).
        fn open(ifname: &str) -> io::Result<TapDevice> {
            // TUNSETIFF would create a missing device (as root): refuse a name that is not there.
            let cname = std::ffi::CString::new(ifname)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in the name"))?;
            // SAFETY: a valid C string.
            if unsafe { libc::if_nametoindex(cname.as_ptr()) } == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("no such interface (create it: ip tuntap add mode tap name {ifname})"),
                ));
            }
            // SAFETY: plain syscall; the result is checked.
            let raw = unsafe {
                libc::open(
                    c"/dev/net/tun".as_ptr(),
                    libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
                )
            };
            if raw < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: a fresh fd we own.
            let fd = unsafe { OwnedFd::from_raw_fd(raw) };
            let mut ifr = ifreq(ifname)?;
            ifr.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short;
            // SAFETY: `ifr` is a valid ifreq that outlives the call.
            if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF as _, &mut ifr) } < 0 {
                return Err(io::Error::last_os_error());
            }
            let mtu = interface_mtu(ifname)? + 14;
            Ok(TapDevice {
                fd,
                mtu,
                rx: vec![0u8; mtu],
                tx: vec![0u8; mtu],
                error: None,
            })
        }
    }

    /// An `ifreq` naming `ifname`, the rest zero.
    fn ifreq(ifname: &str) -> io::Result<libc::ifreq> {
        // SAFETY: all-zero bytes are a valid ifreq.
        let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
        if ifname.len() >= ifr.ifr_name.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "interface name too long",
            ));
        }
        for (d, s) in ifr.ifr_name.iter_mut().zip(ifname.bytes()) {
            *d = s as libc::c_char;
        }
        Ok(ifr)
    }

    /// The IP MTU of interface `ifname` (SIOCGIFMTU).
    fn interface_mtu(ifname: &str) -> io::Result<usize> {
        // SAFETY: plain syscall; the result is checked.
        let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh fd we own.
        let sock = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut ifr = ifreq(ifname)?;
        // SAFETY: `ifr` is a valid ifreq that outlives the call.
        if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFMTU as _, &mut ifr) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: SIOCGIFMTU filled in the mtu member.
        let mtu = unsafe { ifr.ifr_ifru.ifru_mtu };
        Ok(usize::try_from(mtu).unwrap_or(1500).clamp(576, 65535))
    }

    impl Device for TapDevice {
        type RxToken<'a> = RxToken<'a>;
        type TxToken<'a> = TxToken<'a>;

        fn receive(&mut self, _now: Instant) -> Option<(RxToken<'_>, TxToken<'_>)> {
            let fd = self.fd.as_raw_fd();
            // SAFETY: reads at most `rx.len()` bytes into `rx`.
            let n = unsafe { libc::read(fd, self.rx.as_mut_ptr().cast(), self.rx.len()) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if !matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) {
                    self.error.get_or_insert(e);
                }
                return None;
            }
            let rx = RxToken {
                frame: &self.rx[..n as usize],
            };
            let tx = TxToken {
                fd,
                buf: &mut self.tx,
                error: &mut self.error,
            };
            Some((rx, tx))
        }

        fn transmit(&mut self, _now: Instant) -> Option<TxToken<'_>> {
            Some(TxToken {
                fd: self.fd.as_raw_fd(),
                buf: &mut self.tx,
                error: &mut self.error,
            })
        }

        fn capabilities(&self) -> DeviceCapabilities {
            let mut caps = DeviceCapabilities::default();
            caps.medium = Medium::Ethernet;
            caps.max_transmission_unit = self.mtu;
            caps
        }
    }

    /// A received frame, borrowed from the device's receive buffer.
    struct RxToken<'a> {
        frame: &'a [u8],
    }

    impl phy::RxToken for RxToken<'_> {
        fn consume<R, F>(self, f: F) -> R
        where
            F: FnOnce(&[u8]) -> R,
        {
            f(self.frame)
        }
    }

    /// A frame to send, built in the device's transmit buffer.
    struct TxToken<'a> {
        fd: RawFd,
        buf: &'a mut Vec<u8>,
        error: &'a mut Option<io::Error>,
    }

    impl phy::TxToken for TxToken<'_> {
        fn consume<R, F>(self, len: usize, f: F) -> R
        where
            F: FnOnce(&mut [u8]) -> R,
        {
            // smoltcp never asks for more than the MTU; the buffer is that large.
            let len = len.min(self.buf.len());
            let frame = &mut self.buf[..len];
            let result = f(frame);
            // SAFETY: writes `len` initialised bytes of `buf`.
            let n = unsafe { libc::write(self.fd, frame.as_ptr().cast(), len) };
            if n < 0 {
                let e = io::Error::last_os_error();
                // A full queue drops the frame, as a congested link would.
                let dropped = matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) || e.raw_os_error() == Some(libc::ENOBUFS);
                if !dropped {
                    self.error.get_or_insert(e);
                }
            }
            result
        }
    }

    /// How often the driver looks whether the socket servers beside it stopped.
    pub const STOP_CHECK: smoltcp::time::Duration = smoltcp::time::Duration::from_secs(1);

    /// Runs the driver on this thread (smoltcp's TAP device cannot move to another) until it
    /// fails; with `sockets` (the socket servers running beside it), until either fails.
    /// Returns that error.
    pub fn serve(mut tap: Tap, store: Arc<ZoneStore>, sockets: Option<Running>) -> crate::Error {
        let stop = match sockets {
            None => None,
            Some(sockets) => {
                let (tx, rx) = mpsc::channel();
                let spawned = std::thread::Builder::new()
                    .name("servers".into())
                    .spawn(move || {
                        let _ = tx.send(sockets.wait());
                    });
                if let Err(e) = spawned {
                    return crate::Error::Server(e);
                }
                Some(rx)
            }
        };
        tap.run(&store, stop.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use crate::cli::{parse, Command};

    fn run(args: &[&str]) -> Result<crate::config::Config, String> {
        match parse(args.iter().copied()) {
            Ok(Command::Run(c)) => Ok(*c),
            Ok(other) => Err(format!("{other:?}")),
            Err(e) => Err(e.to_string()),
        }
    }

    #[cfg(not(feature = "smoltcp"))]
    #[test]
    fn without_the_feature_tap_flags_are_refused() {
        for flag in ["--tap", "--tap-address", "--tap-gateway", "--tap-port"] {
            let err = run(&[flag, "x"]).unwrap_err();
            assert!(
                err.contains("built without the smoltcp feature"),
                "{flag}: {err}"
            );
        }
    }

    #[cfg(feature = "smoltcp")]
    #[test]
    fn tap_flags() {
        let c = run(&["--tap", "tap0", "--tap-address", "10.99.0.2/24"]).unwrap();
        assert_eq!(c.tap.ifname.as_deref(), Some("tap0"));
        assert_eq!(c.tap.address, Some(([10, 99, 0, 2].into(), 24)));
        assert!(c.listen.is_empty(), "--tap without --listen: TAP only");
        let c = run(&[
            "--tap",
            "tap0",
            "--listen",
            "127.0.0.1:53",
            "--tap-port",
            "5300",
        ])
        .unwrap();
        assert_eq!(c.listen.len(), 1);
        assert_eq!(c.tap.port, Some(5300));
        let bad: &[(&[&str], &str)] = &[
            (&["--tap", ""], "interface name"),
            (&["--tap", "a-very-long-interface"], "interface name"),
            (&["--tap-address", "10.99.0.2"], "IPv4/PREFIX"),
            (&["--tap-address", "10.99.0.2/33"], "IPv4/PREFIX"),
            (&["--tap-address", "fd00::2/64"], "IPv4/PREFIX"),
            (&["--tap-gateway", "gw"], "IPv4 address"),
            (&["--tap-port", "0"], "1 to 65535"),
        ];
        for (args, want) in bad {
            let err = run(args).unwrap_err();
            assert!(err.contains(want), "{args:?}: {err}");
        }
    }

    #[cfg(feature = "smoltcp")]
    #[test]
    fn worker_mode_refuses_tap() {
        let c = run(&[
            "--node-id",
            "w1",
            "--proxy-dir",
            "/nonexistent",
            "--broker",
            "mqtt://127.0.0.1:1",
            "--tap",
            "tap0",
        ])
        .unwrap();
        let err = crate::run_worker(&c).unwrap_err().to_string();
        assert!(err.contains("--tap belong to a gateway agent"), "{err}");
    }

    #[cfg(feature = "smoltcp")]
    #[test]
    fn incomplete_or_missing_tap_is_a_clear_error() {
        let c = run(&["--tap", "tap0"]).unwrap();
        let err = super::open(&c.tap).unwrap_err().to_string();
        assert!(err.contains("--tap needs --tap-address"), "{err}");
        let c = run(&["--tap-address", "10.99.0.2/24"]).unwrap();
        let err = super::open(&c.tap).unwrap_err().to_string();
        assert!(err.contains("need --tap IFNAME"), "{err}");
    }
}
