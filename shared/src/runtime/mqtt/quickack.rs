//! Acknowledging what the broker sends at once, so a broker that keeps Nagle's algorithm on
//! does not hold the next event back (Linux; elsewhere this does nothing).
//!
//! Why: Mosquitto on its defaults (`set_tcp_nodelay false`) holds a small packet back while an
//! earlier small packet it sent is not yet acknowledged at the TCP level. Lantern answers some
//! packets with nothing: a PUBACK for a flag it published, say. Its kernel then delays the TCP
//! acknowledgement, hoping to send it with data, and the broker's next event waits with it
//! until the broker's tail-loss probe fires (about 17 ms on the benchmark's machine) or the
//! delayed acknowledgement does (40 ms or more). Captured on the loopback, at 1,000 events a
//! second, that wait was 611 of the 619 events slower than 8 ms; Lantern itself took 1-3 ms.
//!
//! How: `TCP_QUICKACK` sends an acknowledgement the kernel is holding back, now. The option is
//! not sticky (the kernel goes back to delaying), so it is set again after each read from the
//! network. The socket also gets TCP_NODELAY, here and not through rumqttc, because alone (where
//! the socket is not found, or off Linux) it made a broker with Nagle on slower, not faster.
//!
//! rumqttc opens its socket itself and gives no way to reach it (a socket connector is an open
//! upstream pull request, bytebeamio/rumqtt#1032), so the socket is found among the process's
//! open descriptors: the TCP sockets to the broker's port that appeared since the last attempt
//! to connect began. Should another link of the same process connect to the same broker at that
//! moment, both sockets are taken; acknowledging at once on a sibling's socket is harmless, and
//! so is the option on a descriptor that has since closed or been reused (the call fails or only
//! flushes an acknowledgement). The calls are plain system calls on a descriptor number, never a
//! claim to own it.

use std::collections::HashSet;

/// The sockets the process had open before a connection attempt (their inode numbers).
#[derive(Debug, Default)]
pub(super) struct Before(HashSet<u64>);

/// The link's socket(s), once connected; empty when not found or not on Linux.
#[derive(Debug, Default)]
pub(super) struct QuickAck {
    fds: Vec<i32>,
}

impl Before {
    /// The sockets open now.
    pub(super) fn now() -> Before {
        Before(sockets().map(|(_, inode)| inode).collect())
    }
}

impl QuickAck {
    /// The TCP sockets connected to `port` that were not open `before`.
    pub(super) fn found(before: &Before, port: u16) -> QuickAck {
        let fds: Vec<i32> =
            sockets().filter(|(fd, inode)| !before.0.contains(inode) && peer_port(*fd) == Some(port)).map(|(fd, _)| fd).collect();
        if fds.is_empty() && cfg!(target_os = "linux") {
            tracing::warn!("the MQTT socket was not found in /proc/self/fd; TCP acknowledgements stay delayed, and a broker that keeps Nagle's algorithm on may hold events back by tens of milliseconds");
        }
        for fd in &fds {
            set_tcp(*fd, Tcp::NoDelay);
        }
        QuickAck { fds }
    }

    /// Sends any TCP acknowledgement the kernel is holding back for the broker.
    pub(super) fn now(&self) {
        for fd in &self.fds {
            set_tcp(*fd, Tcp::QuickAck);
        }
    }
}

/// Open socket descriptors and their inode numbers, from `/proc/self/fd`.
#[cfg(target_os = "linux")]
fn sockets() -> impl Iterator<Item = (i32, u64)> {
    let entries = std::fs::read_dir("/proc/self/fd").into_iter().flatten().flatten();
    entries.filter_map(|e| {
        let fd: i32 = e.file_name().to_str()?.parse().ok()?;
        let target = std::fs::read_link(e.path()).ok()?;
        let inode = target.to_str()?.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()?;
        Some((fd, inode))
    })
}

#[cfg(not(target_os = "linux"))]
fn sockets() -> impl Iterator<Item = (i32, u64)> {
    std::iter::empty()
}

/// The remote port of a TCP socket over IPv4 or IPv6.
#[cfg(target_os = "linux")]
fn peer_port(fd: i32) -> Option<u16> {
    let mut kind: libc::c_int = 0;
    let mut kind_len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `kind_len` bytes into `kind`, one c_int.
    let rc = unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, libc::SO_TYPE, (&mut kind as *mut libc::c_int).cast(), &mut kind_len) };
    if rc != 0 || kind != libc::SOCK_STREAM {
        return None;
    }
    // SAFETY: getpeername writes at most `len` bytes into `addr`, a zeroed sockaddr_storage
    // (plain data), and reads nothing else; a stale descriptor only makes it fail.
    let (addr, rc) = unsafe {
        let mut addr: libc::sockaddr_storage = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        let rc = libc::getpeername(fd, (&mut addr as *mut libc::sockaddr_storage).cast(), &mut len);
        (addr, rc)
    };
    if rc != 0 {
        return None;
    }
    match i32::from(addr.ss_family) {
        // SAFETY: the family says which layout the kernel wrote; both fit in sockaddr_storage.
        libc::AF_INET => Some(u16::from_be(unsafe { &*(&addr as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() }.sin_port)),
        libc::AF_INET6 => Some(u16::from_be(unsafe { &*(&addr as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() }.sin6_port)),
        _ => None,
    }
}

#[cfg(not(target_os = "linux"))]
fn peer_port(_fd: i32) -> Option<u16> {
    None
}

/// The TCP options set here.
#[derive(Debug, Clone, Copy)]
enum Tcp {
    NoDelay,
    QuickAck,
}

/// Turns on a TCP option of `fd`.
#[cfg(target_os = "linux")]
fn set_tcp(fd: i32, option: Tcp) {
    let option = match option {
        Tcp::NoDelay => libc::TCP_NODELAY,
        Tcp::QuickAck => libc::TCP_QUICKACK,
    };
    let on: libc::c_int = 1;
    // SAFETY: setsockopt reads `size_of::<c_int>()` bytes from `on`; a stale descriptor only
    // makes it fail, which changes nothing.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            option,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn set_tcp(_fd: i32, _option: Tcp) {}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn finds_only_the_socket_opened_since_and_connected_to_the_port() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let other = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let earlier = std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let before = Before::now();
        let ours = std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let _elsewhere = std::net::TcpStream::connect(other.local_addr().expect("addr")).expect("connect");
        let found = QuickAck::found(&before, port);
        use std::os::fd::AsRawFd;
        assert_eq!(found.fds, vec![ours.as_raw_fd()]);
        assert!(ours.nodelay().expect("nodelay"), "TCP_NODELAY goes with the quick acknowledgements");
        assert!(!earlier.nodelay().expect("nodelay"));
        found.now(); // must not fail on a live socket
    }
}
