//! A loopback TCP relay in front of the broker that counts the bytes the broker sends through
//! it: the master connects through it, so what the master reads from the broker (TLS records
//! included) is measured exactly, whatever else the broker does meanwhile. It also notes how
//! much had been read, and when, at the moment the master had sent [`PUBLISHING`] bytes: its
//! TLS handshake, CONNECT and SUBSCRIBEs are far less, so that is its first publish (what it
//! read before publishing: the retained messages it subscribed to; what it reads afterwards
//! is mostly the broker's PUBACKs).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Bytes sent by the client after which it is publishing.
pub const PUBLISHING: u64 = 16 * 1024;

/// What went through the relay since the last [`Counters::reset`].
#[derive(Debug)]
pub struct Counters {
    /// Bytes from the broker to the client.
    pub down: AtomicU64,
    /// Bytes from the client to the broker.
    pub up: AtomicU64,
    /// `down` when `up` reached [`PUBLISHING`] (`u64::MAX` before).
    pub down_at_publish: AtomicU64,
    /// Microseconds since the last reset when `up` reached [`PUBLISHING`] (`u64::MAX` before).
    pub publish_at_us: AtomicU64,
    epoch: std::sync::Mutex<std::time::Instant>,
}

impl Counters {
    /// Starts counting again from zero, now.
    pub fn reset(&self) {
        *self.epoch.lock().unwrap() = std::time::Instant::now();
        self.down.store(0, Ordering::SeqCst);
        self.up.store(0, Ordering::SeqCst);
        self.down_at_publish.store(u64::MAX, Ordering::SeqCst);
        self.publish_at_us.store(u64::MAX, Ordering::SeqCst);
    }

    /// Bytes read before the first publish and when it came, if it did.
    pub fn first_publish(&self) -> Option<(u64, std::time::Duration)> {
        let d = self.down_at_publish.load(Ordering::SeqCst);
        let t = self.publish_at_us.load(Ordering::SeqCst);
        (d != u64::MAX && t != u64::MAX).then(|| (d, std::time::Duration::from_micros(t)))
    }

    fn sent(&self, n: u64) {
        let before = self.up.fetch_add(n, Ordering::SeqCst);
        if before < PUBLISHING && before + n >= PUBLISHING {
            let us = self.epoch.lock().unwrap().elapsed().as_micros() as u64;
            self.down_at_publish
                .store(self.down.load(Ordering::SeqCst), Ordering::SeqCst);
            self.publish_at_us.store(us, Ordering::SeqCst);
        }
    }
}

/// Listens on a free port of 127.0.0.1 and relays every connection to `upstream`, counting.
pub async fn start(upstream: SocketAddr) -> (SocketAddr, Arc<Counters>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("relay bind");
    let addr = listener.local_addr().unwrap();
    let down = Arc::new(Counters {
        down: AtomicU64::new(0),
        up: AtomicU64::new(0),
        down_at_publish: AtomicU64::new(0),
        publish_at_us: AtomicU64::new(0),
        epoch: std::sync::Mutex::new(std::time::Instant::now()),
    });
    down.reset();
    let counter = down.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let up_counter = counter.clone();
                let up = async move {
                    let mut buf = vec![0u8; 64 << 10];
                    while let Ok(n) = cr.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        up_counter.sent(n as u64);
                        if sw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = sw.shutdown().await;
                };
                let down = async move {
                    let mut buf = vec![0u8; 64 << 10];
                    while let Ok(n) = sr.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        counter.down.fetch_add(n as u64, Ordering::SeqCst);
                        if cw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = cw.shutdown().await;
                };
                tokio::join!(up, down);
            });
        }
    });
    (addr, down)
}
