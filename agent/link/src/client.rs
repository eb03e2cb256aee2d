//! The agent's MQTT client: one blocking connection driven by the thread that owns it, with
//! rumqttc's MQTT 3.1.1 packet codec (`rumqttc::mqttbytes::v4`) and rustls driven by hand.
//!
//! Why not rumqttc's `Client`: its sync client runs a tokio runtime, a channel and the async
//! event loop underneath, ~90 KB of a 1 MiB MIPS binary (docs/cross.md), for what the agent
//! does from one thread anyway: connect, subscribe, receive, acknowledge, publish its status,
//! ping. The master keeps rumqttc's tokio `AsyncClient`.
//!
//! [`Client::connect`] makes the TCP connection (each resolved address in turn, a timeout
//! for each), the TLS handshake (server certificate and host name verified by
//! [`crate::tls`]'s configuration) and the CONNECT/CONNACK exchange, all within
//! [`Settings::connect_timeout`]. [`Client::poll`] waits up to a given time for the next
//! packet, acknowledges QoS 1 publishes as they arrive and keeps the connection alive
//! ([`KeepAlive`]). [`Client::publish`], [`Client::subscribe`] and [`Client::unsubscribe`]
//! write at once; a write that fails closes the connection and the next [`Client::poll`]
//! returns the error, so the caller handles every failure in one place.
//!
//! Incoming packets are bounded: a packet whose header announces more than
//! [`Settings::max_packet`] bytes ends the connection before its body is read.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rumqttc::mqttbytes::v4::{
    ConnAck, Connect, ConnectReturnCode, LastWill, Login, Packet, PubAck, Publish, Subscribe,
    SubscribeFilter, SubscribeReasonCode, Unsubscribe,
};
use rumqttc::mqttbytes::QoS;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection};

/// What a connection needs; made by [`crate::LinkOptions::client`].
#[derive(Debug, Clone)]
pub struct Settings {
    /// Broker host name or address (also the name the server certificate must carry).
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// TLS configuration; `None` for `mqtt://`.
    pub tls: Option<Arc<ClientConfig>>,
    /// Client id.
    pub client_id: String,
    /// Keepalive interval (at least 1 s).
    pub keep_alive: Duration,
    /// Clean session flag.
    pub clean_session: bool,
    /// Username and password.
    pub login: Option<(String, String)>,
    /// The last will: topic, payload (QoS 1, retained).
    pub will: Option<(String, Vec<u8>)>,
    /// Largest packet accepted or sent, in bytes.
    pub max_packet: usize,
    /// Limit on TCP connect, TLS handshake and CONNACK together, and on each later write.
    pub connect_timeout: Duration,
}

/// Why a connection failed or ended.
#[derive(Debug)]
pub enum Error {
    /// Name resolution, TCP connect, read or write failed.
    Io(io::Error),
    /// The host name resolved to no address.
    NoAddress,
    /// The broker's host is not a valid TLS server name.
    BadServerName(String),
    /// TLS failed (certificate, name, alert, ...).
    Tls(rustls::Error),
    /// The broker closed the connection.
    Closed,
    /// No CONNACK, no PINGRESP or a stuck write within the limit.
    Timeout(&'static str),
    /// The broker refused the connection (CONNACK return code).
    Refused(ConnectReturnCode),
    /// A packet over [`Settings::max_packet`] (announced size).
    TooLarge {
        /// Announced packet size.
        size: usize,
        /// Our limit.
        max: usize,
    },
    /// A malformed packet, or one a broker must not send.
    Protocol(String),
    /// Not connected (a publish or poll without a connection).
    NotConnected,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "I/O error: {e}"),
            Error::NoAddress => write!(f, "the broker's host name resolved to no address"),
            Error::BadServerName(h) => write!(f, "{h:?} is not a valid TLS server name"),
            Error::Tls(e) => write!(f, "TLS: {e}"),
            Error::Closed => write!(f, "connection closed by the broker"),
            Error::Timeout(what) => write!(f, "timed out: {what}"),
            Error::Refused(code) => {
                let why = match code {
                    ConnectReturnCode::RefusedProtocolVersion => "unacceptable protocol version",
                    ConnectReturnCode::BadClientId => "client id rejected",
                    ConnectReturnCode::ServiceUnavailable => "service unavailable",
                    ConnectReturnCode::BadUserNamePassword => "bad user name or password",
                    ConnectReturnCode::NotAuthorized => "not authorized",
                    ConnectReturnCode::Success => "success",
                };
                write!(f, "connection refused by the broker: {why}")
            }
            Error::TooLarge { size, max } => write!(
                f,
                "the broker sent a packet of {size} bytes, over this client's limit of {max} \
                 bytes (a retained message too large: set the broker's max_packet_size to \
                 {max} so it refuses such publishes)"
            ),
            Error::Protocol(what) => write!(f, "MQTT protocol error: {what}"),
            Error::NotConnected => write!(f, "not connected"),
        }
    }
}

impl std::error::Error for Error {}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::UnexpectedEof => Error::Closed,
            _ => Error::Io(e),
        }
    }
}

impl From<rustls::Error> for Error {
    fn from(e: rustls::Error) -> Self {
        Error::Tls(e)
    }
}

/// What [`Client::poll`] hands to the caller.
#[derive(Debug)]
pub enum Incoming {
    /// A message on a subscribed topic (already acknowledged when QoS 1).
    Publish(Publish),
    /// A subscription answer; `refused` when the broker refused at least one filter.
    SubAck {
        /// At least one filter refused.
        refused: bool,
    },
    /// An unsubscription was confirmed.
    UnsubAck,
}

/// When to ping and when to give up on the broker: the MQTT keepalive rule as a pure state
/// machine on the caller's clock. A PINGREQ is due once nothing was sent for `interval`; the
/// connection is dead when a PINGRESP has not come within `interval` of the PINGREQ.
#[derive(Debug, Clone, Copy)]
pub struct KeepAlive {
    interval: Duration,
    last_sent: Instant,
    ping_sent: Option<Instant>,
}

impl KeepAlive {
    /// A keepalive for a connection that just sent its CONNECT at `now`.
    pub fn new(interval: Duration, now: Instant) -> KeepAlive {
        KeepAlive {
            interval,
            last_sent: now,
            ping_sent: None,
        }
    }

    /// A packet was sent at `now`.
    pub fn sent(&mut self, now: Instant) {
        self.last_sent = now;
    }

    /// A PINGRESP came.
    pub fn pong(&mut self) {
        self.ping_sent = None;
    }

    /// Whether a PINGREQ must go out at `now` (then call [`KeepAlive::pinged`]), or `Err` when
    /// the last one went unanswered for a whole interval.
    pub fn due(&self, now: Instant) -> Result<bool, Error> {
        match self.ping_sent {
            Some(t) if now.saturating_duration_since(t) >= self.interval => {
                Err(Error::Timeout("no PINGRESP within the keepalive interval"))
            }
            Some(_) => Ok(false),
            None => Ok(now.saturating_duration_since(self.last_sent) >= self.interval),
        }
    }

    /// A PINGREQ was sent at `now`.
    pub fn pinged(&mut self, now: Instant) {
        self.ping_sent = Some(now);
        self.last_sent = now;
    }

    /// The next instant at which [`KeepAlive::due`] may change its answer.
    pub fn next_event(&self) -> Instant {
        match self.ping_sent {
            Some(t) => t + self.interval,
            None => self.last_sent + self.interval,
        }
    }
}

/// The byte stream under MQTT: plain TCP, or TLS driven by hand over it.
enum Stream {
    Plain(TcpStream),
    Tls(Box<ClientConnection>, TcpStream),
}

impl fmt::Debug for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stream::Plain(_) => "Plain",
            Stream::Tls(..) => "Tls",
        })
    }
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) | Stream::Tls(_, s) => s,
        }
    }

    /// Reads some bytes into `buf`, waiting at most until the socket's read timeout.
    /// `Ok(None)`: the timeout passed with nothing read; `Ok(Some(0))`: TLS records came, no
    /// plaintext yet.
    fn read_some(&mut self, buf: &mut BytesMut) -> Result<Option<usize>, Error> {
        let mut tmp = [0u8; 4096];
        match self {
            Stream::Plain(s) => match s.read(&mut tmp) {
                Ok(0) => Err(Error::Closed),
                Ok(n) => {
                    buf.extend_from_slice(&tmp[..n]);
                    Ok(Some(n))
                }
                Err(e) if timed_out(&e) => Ok(None),
                Err(e) => Err(e.into()),
            },
            Stream::Tls(tls, s) => {
                // Plaintext already decrypted first; else one read of TLS records from the
                // socket (`Ok(Some(0))` when they held no plaintext yet, so that the caller
                // sees its deadline even while a record trickles in).
                let mut read_socket = true;
                loop {
                    match tls.reader().read(&mut tmp) {
                        Ok(0) => return Err(Error::Closed),
                        Ok(n) => {
                            buf.extend_from_slice(&tmp[..n]);
                            return Ok(Some(n));
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) => return Err(e.into()),
                    }
                    if !std::mem::take(&mut read_socket) {
                        return Ok(Some(0));
                    }
                    match tls.read_tls(s) {
                        Ok(0) => return Err(Error::Closed),
                        Ok(_) => {}
                        Err(e) if timed_out(&e) => return Ok(None),
                        Err(e) => return Err(e.into()),
                    }
                    let state = tls.process_new_packets();
                    // An alert to send (or a key update answer) goes out even on error.
                    while tls.wants_write() {
                        tls.write_tls(s)?;
                    }
                    state?;
                }
            }
        }
    }

    fn write_all(&mut self, bytes: &[u8]) -> Result<(), Error> {
        match self {
            Stream::Plain(s) => s.write_all(bytes).map_err(write_error),
            Stream::Tls(tls, s) => {
                tls.writer().write_all(bytes)?;
                while tls.wants_write() {
                    tls.write_tls(s).map_err(write_error)?;
                }
                Ok(())
            }
        }
    }
}

fn timed_out(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

fn write_error(e: io::Error) -> Error {
    if timed_out(&e) {
        Error::Timeout("writing to the broker")
    } else {
        e.into()
    }
}

/// An open connection.
#[derive(Debug)]
struct Conn {
    stream: Stream,
    rbuf: BytesMut,
    wbuf: BytesMut,
    keep_alive: KeepAlive,
    next_pkid: u16,
}

/// The agent's MQTT client. Not connected until [`Client::connect`] succeeds.
#[derive(Debug)]
pub struct Client {
    settings: Settings,
    conn: Option<Conn>,
    /// Why the connection closed during a write, for the next [`Client::poll`].
    failed: Option<Error>,
}

impl Client {
    /// A client with these settings, not connected.
    pub fn new(settings: Settings) -> Client {
        Client {
            settings,
            conn: None,
            failed: None,
        }
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Whether a connection is up.
    pub fn is_connected(&self) -> bool {
        self.conn.is_some()
    }

    /// Drops the connection, if any (no DISCONNECT: the broker publishes the last will).
    pub fn close(&mut self) {
        self.conn = None;
        self.failed = None;
    }

    /// Connects: TCP, TLS, CONNECT and its CONNACK, all within
    /// [`Settings::connect_timeout`]. Returns the CONNACK's session-present flag.
    pub fn connect(&mut self) -> Result<bool, Error> {
        self.close();
        let s = &self.settings;
        let deadline = Instant::now() + s.connect_timeout;
        let tcp = tcp_connect(&s.host, s.port, s.connect_timeout)?;
        tcp.set_nodelay(true)?;
        let stream = match &s.tls {
            None => Stream::Plain(tcp),
            Some(config) => {
                let name = ServerName::try_from(s.host.clone())
                    .map_err(|_| Error::BadServerName(s.host.clone()))?;
                let mut tls = Box::new(ClientConnection::new(config.clone(), name)?);
                let mut tcp = tcp;
                while tls.is_handshaking() {
                    set_timeouts(&tcp, deadline, "TLS handshake")?;
                    match tls.complete_io(&mut tcp) {
                        Ok(_) => {}
                        Err(e) if timed_out(&e) => {
                            return Err(Error::Timeout("TLS handshake"));
                        }
                        Err(e) => return Err(tls_io_error(e)),
                    }
                }
                Stream::Tls(tls, tcp)
            }
        };
        let mut connect = Connect::new(s.client_id.clone());
        connect.keep_alive = u16::try_from(s.keep_alive.as_secs().max(1)).unwrap_or(u16::MAX);
        connect.clean_session = s.clean_session;
        connect.login = s.login.as_ref().map(|(u, p)| Login::new(u, p));
        connect.last_will = s
            .will
            .as_ref()
            .map(|(topic, payload)| LastWill::new(topic, payload.clone(), QoS::AtLeastOnce, true));
        let mut conn = Conn {
            stream,
            rbuf: BytesMut::with_capacity(4096),
            wbuf: BytesMut::with_capacity(1024),
            keep_alive: KeepAlive::new(s.keep_alive, Instant::now()),
            next_pkid: 0,
        };
        set_timeouts(conn.stream.tcp(), deadline, "CONNACK")?;
        send(&mut conn, &Packet::Connect(connect), s.max_packet)?;
        let ack: ConnAck = loop {
            set_timeouts(conn.stream.tcp(), deadline, "CONNACK")?;
            if let Some(p) = read_packet(&mut conn.rbuf, s.max_packet)? {
                match p {
                    Packet::ConnAck(ack) => break ack,
                    other => {
                        return Err(Error::Protocol(format!(
                            "expected CONNACK, got {}",
                            name_of(&other)
                        )))
                    }
                }
            }
            if conn.stream.read_some(&mut conn.rbuf)?.is_none() {
                return Err(Error::Timeout("CONNACK"));
            }
        };
        if ack.code != ConnectReturnCode::Success {
            return Err(Error::Refused(ack.code));
        }
        // Later writes are bounded too: a broker that stops reading cannot hang the agent.
        conn.stream
            .tcp()
            .set_write_timeout(Some(s.connect_timeout.max(Duration::from_secs(1))))?;
        self.conn = Some(conn);
        Ok(ack.session_present)
    }

    /// Waits at most `timeout` for the next packet the caller needs to see. `Ok(None)`: the
    /// time passed. Pings when due; acknowledges QoS 1 publishes; an error closes the
    /// connection (including one from an earlier failed write).
    pub fn poll(&mut self, timeout: Duration) -> Result<Option<Incoming>, Error> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        let max = self.settings.max_packet;
        let Some(conn) = self.conn.as_mut() else {
            return Err(Error::NotConnected);
        };
        let deadline = Instant::now() + timeout;
        let result = poll_conn(conn, deadline, max);
        if result.is_err() {
            self.conn = None;
        }
        result
    }

    /// Publishes with QoS 1 (the PUBACK is not waited for: the status is published again on
    /// every connect).
    pub fn publish(&mut self, topic: &str, payload: &[u8], retain: bool) {
        self.write_with(|pkid| {
            let mut p = Publish::new(topic, QoS::AtLeastOnce, payload);
            p.retain = retain;
            p.pkid = pkid;
            Packet::Publish(p)
        });
    }

    /// Subscribes to `topics` with QoS 1, in one SUBSCRIBE.
    pub fn subscribe(&mut self, topics: &[String]) {
        if topics.is_empty() {
            return;
        }
        self.write_with(|pkid| {
            let mut s = Subscribe::new_many(
                topics
                    .iter()
                    .map(|t| SubscribeFilter::new(t.clone(), QoS::AtLeastOnce)),
            );
            s.pkid = pkid;
            Packet::Subscribe(s)
        });
    }

    /// Unsubscribes from `topic`.
    pub fn unsubscribe(&mut self, topic: &str) {
        self.write_with(|pkid| {
            let mut u = Unsubscribe::new(topic);
            u.pkid = pkid;
            Packet::Unsubscribe(u)
        });
    }

    fn write_with(&mut self, packet: impl FnOnce(u16) -> Packet) {
        let max = self.settings.max_packet;
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        conn.next_pkid = conn.next_pkid.checked_add(1).unwrap_or(1);
        let packet = packet(conn.next_pkid);
        if let Err(e) = send(conn, &packet, max) {
            self.conn = None;
            self.failed = Some(e);
        }
    }
}

/// Resolves `host` and connects to each address in turn, `timeout` for each.
fn tcp_connect(host: &str, port: u16, timeout: Duration) -> Result<TcpStream, Error> {
    let mut last = None;
    for addr in (host, port).to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(last.map_or(Error::NoAddress, Error::from))
}

/// Sets the socket's read and write timeouts to what is left until `deadline`.
fn set_timeouts(tcp: &TcpStream, deadline: Instant, what: &'static str) -> Result<(), Error> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(Error::Timeout(what));
    }
    tcp.set_read_timeout(Some(left))?;
    tcp.set_write_timeout(Some(left))?;
    Ok(())
}

/// rustls hands its own errors back inside `io::Error`; take them out again.
fn tls_io_error(e: io::Error) -> Error {
    if e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>()) {
        let inner = e.into_inner().expect("checked above");
        match inner.downcast::<rustls::Error>() {
            Ok(tls) => Error::Tls(*tls),
            Err(other) => Error::Io(io::Error::other(other)),
        }
    } else {
        e.into()
    }
}

fn send(conn: &mut Conn, packet: &Packet, max: usize) -> Result<(), Error> {
    conn.wbuf.clear();
    packet
        .write(&mut conn.wbuf, max)
        .map_err(|e| Error::Protocol(format!("cannot encode {}: {e}", name_of(packet))))?;
    conn.stream.write_all(&conn.wbuf)?;
    conn.keep_alive.sent(Instant::now());
    Ok(())
}

/// The checked door for the broker's bytes: the next whole packet in `buf` (taken out of it),
/// if there is one; an error for a malformed one or one over `max` bytes (known from its
/// header, before its body arrives). Fuzzed (`fuzz/fuzz_targets/mqtt_packet.rs`).
pub fn read_packet(buf: &mut BytesMut, max: usize) -> Result<Option<Packet>, Error> {
    if buf.is_empty() {
        return Ok(None);
    }
    match Packet::read(buf, max) {
        Ok(p) => Ok(Some(p)),
        Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => Ok(None),
        Err(rumqttc::mqttbytes::Error::PayloadSizeLimitExceeded(size)) => {
            Err(Error::TooLarge { size, max })
        }
        Err(e) => Err(Error::Protocol(e.to_string())),
    }
}

fn poll_conn(conn: &mut Conn, deadline: Instant, max: usize) -> Result<Option<Incoming>, Error> {
    loop {
        while let Some(p) = read_packet(&mut conn.rbuf, max)? {
            match p {
                Packet::Publish(p) => {
                    match p.qos {
                        QoS::AtMostOnce => {}
                        QoS::AtLeastOnce => {
                            send(conn, &Packet::PubAck(PubAck::new(p.pkid)), max)?;
                        }
                        // Every subscription is QoS 1: a broker may not send QoS 2.
                        QoS::ExactlyOnce => {
                            return Err(Error::Protocol(
                                "a QoS 2 PUBLISH on a QoS 1 subscription".into(),
                            ))
                        }
                    }
                    return Ok(Some(Incoming::Publish(p)));
                }
                Packet::SubAck(ack) => {
                    let refused = ack
                        .return_codes
                        .iter()
                        .any(|c| matches!(c, SubscribeReasonCode::Failure));
                    return Ok(Some(Incoming::SubAck { refused }));
                }
                Packet::UnsubAck(_) => return Ok(Some(Incoming::UnsubAck)),
                Packet::PingResp => conn.keep_alive.pong(),
                Packet::PubAck(_) => {}
                Packet::Disconnect => return Err(Error::Closed),
                other => {
                    return Err(Error::Protocol(format!(
                        "unexpected {} from the broker",
                        name_of(&other)
                    )))
                }
            }
        }
        let now = Instant::now();
        if conn.keep_alive.due(now)? {
            send(conn, &Packet::PingReq, max)?;
            conn.keep_alive.pinged(now);
        }
        if now >= deadline {
            return Ok(None);
        }
        let until = deadline.min(conn.keep_alive.next_event());
        let wait = until
            .saturating_duration_since(now)
            .max(Duration::from_millis(1));
        conn.stream.tcp().set_read_timeout(Some(wait))?;
        conn.stream.read_some(&mut conn.rbuf)?;
    }
}

fn name_of(p: &Packet) -> &'static str {
    match p {
        Packet::Connect(_) => "CONNECT",
        Packet::ConnAck(_) => "CONNACK",
        Packet::Publish(_) => "PUBLISH",
        Packet::PubAck(_) => "PUBACK",
        Packet::PubRec(_) => "PUBREC",
        Packet::PubRel(_) => "PUBREL",
        Packet::PubComp(_) => "PUBCOMP",
        Packet::Subscribe(_) => "SUBSCRIBE",
        Packet::SubAck(_) => "SUBACK",
        Packet::Unsubscribe(_) => "UNSUBSCRIBE",
        Packet::UnsubAck(_) => "UNSUBACK",
        Packet::PingReq => "PINGREQ",
        Packet::PingResp => "PINGRESP",
        Packet::Disconnect => "DISCONNECT",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepalive_pings_after_an_idle_interval_and_gives_up_without_an_answer() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut k = KeepAlive::new(30 * s, t0);
        assert!(!k.due(t0 + 29 * s).unwrap());
        k.sent(t0 + 20 * s);
        assert!(!k.due(t0 + 49 * s).unwrap());
        assert_eq!(k.next_event(), t0 + 50 * s);
        assert!(k.due(t0 + 50 * s).unwrap());
        k.pinged(t0 + 50 * s);
        assert!(!k.due(t0 + 79 * s).unwrap());
        assert!(matches!(k.due(t0 + 80 * s), Err(Error::Timeout(_))));
        k.pong();
        assert!(!k.due(t0 + 79 * s).unwrap());
        assert!(k.due(t0 + 80 * s).unwrap());
    }

    #[test]
    fn packets_over_the_limit_are_refused_from_their_header() {
        let mut buf = BytesMut::new();
        let p = Packet::Publish(Publish::new("t", QoS::AtMostOnce, vec![0u8; 5000]));
        p.write(&mut buf, 1 << 20).unwrap();
        // Only the header has arrived.
        buf.truncate(8);
        match read_packet(&mut buf, 1000) {
            Err(Error::TooLarge { size, max: 1000 }) => assert!(size > 5000, "{size}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn partial_packets_wait_for_more_bytes() {
        let mut whole = BytesMut::new();
        Packet::Publish(Publish::new("a/b", QoS::AtMostOnce, b"hello".to_vec()))
            .write(&mut whole, 1000)
            .unwrap();
        let mut buf = BytesMut::new();
        for (i, b) in whole.iter().enumerate() {
            assert!(read_packet(&mut buf, 1000).unwrap().is_none(), "at {i}");
            buf.extend_from_slice(&[*b]);
        }
        match read_packet(&mut buf, 1000).unwrap() {
            Some(Packet::Publish(p)) => assert_eq!(&p.payload[..], b"hello"),
            other => panic!("{other:?}"),
        }
        assert!(buf.is_empty());
    }
}
