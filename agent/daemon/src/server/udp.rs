//! The UDP server loop: one thread per socket, every buffer allocated once before the loop.
//!
//! On Linux it takes up to [`BATCH`] queries per `recvmmsg` (returning as soon as one is there),
//! answers them all on one load of the zone, and sends the answers with one `sendmmsg`: under
//! load that is two syscalls per batch instead of two per query. Elsewhere it falls back to
//! `recv_from`/`send_to`.

use std::io;
use std::net::UdpSocket;

use log::debug;
use sdwan_agent_core::Transport;

use crate::store::{answer, ZoneStore};

/// Queries taken per `recvmmsg`.
pub const BATCH: usize = 32;
/// Largest query read; longer datagrams are cut (and then usually answered FORMERR).
pub const QUERY_MAX: usize = 1500;
/// Largest UDP answer: the core never answers more than 1232 bytes over UDP (our EDNS size).
pub const ANSWER_MAX: usize = 1232;

/// Serves `socket` from `store` until a fatal socket error, which it returns.
/// Allocates only before the loop: nothing per query.
pub fn serve(socket: &UdpSocket, store: &ZoneStore) -> io::Error {
    imp::serve(socket, store)
}

/// True for errors a datagram socket reports about one earlier packet (ICMP port unreachable,
/// and the like): they say nothing about the socket itself.
fn transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
    ) || matches!(
        e.raw_os_error(),
        Some(libc::EHOSTUNREACH | libc::ENETUNREACH | libc::EPERM | libc::ENOBUFS | libc::ENOMEM)
    )
}

#[cfg(any(target_os = "linux", target_os = "android"))]
mod imp {
    use super::*;
    use std::mem::{size_of, zeroed};
    use std::os::fd::AsRawFd;
    use std::ptr::null_mut;

    /// `sendmmsg(2)` as the raw system call. musl's 64-bit `sendmmsg` is a loop of `sendmsg`
    /// (it will not write the padding of a caller's `msghdr`), which costs a system call per
    /// answer; our headers are zeroed, padding included, so the kernel's layout matches.
    ///
    /// # Safety
    /// `msgs` must point to `n` valid headers whose pointers are alive for the call.
    unsafe fn sendmmsg(fd: libc::c_int, msgs: *mut libc::mmsghdr, n: usize) -> isize {
        // SAFETY: forwarded from the caller.
        unsafe { libc::syscall(libc::SYS_sendmmsg, fd, msgs, n as libc::c_uint, 0) as isize }
    }

    pub(super) fn serve(socket: &UdpSocket, store: &ZoneStore) -> io::Error {
        let fd = socket.as_raw_fd();
        let mut queries = vec![0u8; BATCH * QUERY_MAX];
        let mut answers = vec![0u8; BATCH * ANSWER_MAX];
        // SAFETY: all-zero bytes are valid for these C structs.
        let mut addrs: Vec<libc::sockaddr_storage> = vec![unsafe { zeroed() }; BATCH];
        let mut rx_iov: Vec<libc::iovec> = Vec::with_capacity(BATCH);
        for chunk in queries.chunks_mut(QUERY_MAX) {
            rx_iov.push(libc::iovec {
                iov_base: chunk.as_mut_ptr().cast(),
                iov_len: QUERY_MAX,
            });
        }
        let mut tx_iov: Vec<libc::iovec> = vec![
            libc::iovec {
                iov_base: null_mut(),
                iov_len: 0
            };
            BATCH
        ];
        // SAFETY: as above.
        let mut rx: Vec<libc::mmsghdr> = vec![unsafe { zeroed() }; BATCH];
        // SAFETY: as above.
        let mut tx: Vec<libc::mmsghdr> = vec![unsafe { zeroed() }; BATCH];
        for i in 0..BATCH {
            rx[i].msg_hdr.msg_name = (&mut addrs[i] as *mut libc::sockaddr_storage).cast();
            rx[i].msg_hdr.msg_iov = &mut rx_iov[i];
            rx[i].msg_hdr.msg_iovlen = 1;
            tx[i].msg_hdr.msg_iov = &mut tx_iov[i];
            tx[i].msg_hdr.msg_iovlen = 1;
        }
        // Headers the kernel wrote in the last call: only those need their lengths reset.
        let mut used = BATCH;
        loop {
            for h in rx[..used].iter_mut() {
                h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                h.msg_hdr.msg_flags = 0;
                h.msg_len = 0;
            }
            // SAFETY: `rx` holds BATCH headers whose name and iovec pointers point into
            // `addrs` and `queries`, which outlive the call and are not otherwise borrowed.
            let n = unsafe {
                libc::recvmmsg(
                    fd,
                    rx.as_mut_ptr(),
                    BATCH as _,
                    libc::MSG_WAITFORONE as _,
                    null_mut(),
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if transient(&e) {
                    continue;
                }
                return e;
            }
            let n = n as usize;
            used = n;
            let mut m = 0;
            {
                let zone = store.load();
                for i in 0..n {
                    let len = (rx[i].msg_len as usize).min(QUERY_MAX);
                    let query = &queries[i * QUERY_MAX..i * QUERY_MAX + len];
                    let out = &mut answers[i * ANSWER_MAX..(i + 1) * ANSWER_MAX];
                    if let Ok(k) = answer(zone.as_deref(), query, out, Transport::Udp) {
                        tx_iov[m].iov_base = out.as_mut_ptr().cast();
                        tx_iov[m].iov_len = k;
                        tx[m].msg_hdr.msg_name = rx[i].msg_hdr.msg_name;
                        tx[m].msg_hdr.msg_namelen = rx[i].msg_hdr.msg_namelen;
                        m += 1;
                    }
                }
            }
            let mut sent = 0;
            while sent < m {
                // SAFETY: `tx[sent..m]` point into `answers` and `addrs`, alive and unborrowed.
                let r = unsafe { sendmmsg(fd, tx.as_mut_ptr().add(sent), m - sent) };
                if r < 0 {
                    let e = io::Error::last_os_error();
                    if e.kind() == io::ErrorKind::Interrupted {
                        continue;
                    }
                    if !transient(&e) {
                        return e;
                    }
                    debug!("udp send failed: {e}");
                    sent += 1; // this one cannot be sent; go on with the rest
                } else {
                    sent += r as usize;
                }
            }
        }
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
mod imp {
    use super::*;

    pub(super) fn serve(socket: &UdpSocket, store: &ZoneStore) -> io::Error {
        let mut query = vec![0u8; QUERY_MAX];
        let mut out = vec![0u8; ANSWER_MAX];
        loop {
            let (len, peer) = match socket.recv_from(&mut query) {
                Ok(x) => x,
                Err(e) if transient(&e) => continue,
                Err(e) => return e,
            };
            let zone = store.load();
            let Ok(k) = answer(zone.as_deref(), &query[..len], &mut out, Transport::Udp) else {
                continue;
            };
            drop(zone);
            if let Err(e) = socket.send_to(&out[..k], peer) {
                if !transient(&e) {
                    return e;
                }
                debug!("udp send to {peer} failed: {e}");
            }
        }
    }
}
