//! Loopback source addresses: which to spread a fleet over, and sockets
//! bound to one of them before connecting.
//!
//! Invariant: a bound socket leaves its port to `connect`
//! (`IP_BIND_ADDRESS_NO_PORT`), so churn through bound sockets can reuse
//! ports per 4-tuple instead of running out of them.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;

use tokio::net::TcpSocket;

use super::args::{LoadError, out_of_range};
use crate::client::ws_dial::{Target, socket_for};

/// Connections per loopback source address when `--source-ips` is not given.
/// The default ephemeral range (32768-60999) has ~28k ports, and Linux's
/// `connect` searches the even half (~14k) first: past that, every connect scans
/// it, and handshakes measured at 19k connections from one address took
/// seconds (p90 1.4 s) instead of milliseconds. 10k per address stays clear.
const PORTS_PER_SOURCE_IP: u64 = 10_000;

/// The loopback source addresses to bind: none when one address will do.
pub(super) fn source_ips(
    target: SocketAddr,
    asked: Option<u32>,
    connections: u64,
) -> Result<Vec<IpAddr>, LoadError> {
    let loopback_v4 = matches!(target.ip(), IpAddr::V4(v4) if v4.is_loopback());
    let n = match asked {
        Some(0) => return Err(out_of_range("source-ips", "must be at least 1")),
        Some(n) if !loopback_v4 => {
            if n > 1 {
                return Err(LoadError::SourceIpsNeedLoopback(target));
            }
            return Ok(Vec::new());
        }
        Some(n) => n,
        None if !loopback_v4 => return Ok(Vec::new()),
        None => connections.div_ceil(PORTS_PER_SOURCE_IP).max(1) as u32,
    };
    // 127.0.0.1 .. 127.255.255.254 are all local on Linux's lo.
    const MAX: u32 = (1 << 24) - 2;
    if n > MAX {
        return Err(out_of_range("source-ips", format!("must be at most {MAX}")));
    }
    if n == 1 && asked.is_none() {
        return Ok(Vec::new());
    }
    let base = u32::from(Ipv4Addr::new(127, 0, 0, 1));
    Ok((0..n)
        .map(|i| IpAddr::V4(Ipv4Addr::from(base + i)))
        .collect())
}

/// A socket for `target`, bound to `local` first when given.
pub(super) fn socket_from(target: &Target, local: Option<IpAddr>) -> io::Result<TcpSocket> {
    let socket = socket_for(target)?;
    if let Some(ip) = local {
        if ip.is_ipv4() {
            // Best effort: without it the port is picked at bind time, which
            // works too, only with fewer ports (no TIME_WAIT reuse).
            let _ = bind_address_no_port(&socket);
        }
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    Ok(socket)
}

/// Sets `IP_BIND_ADDRESS_NO_PORT`: binding a source address then leaves the port
/// to `connect`, which picks it per 4-tuple and may reuse ports in TIME_WAIT on
/// loopback. Churn through bound sockets would otherwise run out of ports.
/// Neither socket2 nor rustix offers this option, hence the one `unsafe`.
fn bind_address_no_port(socket: &TcpSocket) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: the descriptor belongs to `socket`, which outlives the call; the
    // option value points at a live c_int whose size is passed alongside.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_ips_spread_large_fleets_over_loopback() {
        let lo: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert!(source_ips(lo, None, 1000).unwrap().is_empty());
        let ips = source_ips(lo, None, 100_000).unwrap();
        assert_eq!(ips.len(), 10);
        assert_eq!(ips[3], IpAddr::V4(Ipv4Addr::new(127, 0, 0, 4)));
        assert_eq!(
            source_ips(lo, Some(300), 1).unwrap()[299],
            IpAddr::V4(Ipv4Addr::new(127, 0, 1, 44))
        );
        let remote: SocketAddr = "10.0.0.1:1".parse().unwrap();
        assert!(source_ips(remote, Some(2), 1).is_err());
    }

    #[tokio::test]
    async fn a_bound_socket_connects_from_its_source_address() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = Target::plain(listener.local_addr().unwrap());
        let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
        let socket = socket_from(&target, Some(ip)).unwrap();
        let stream = socket.connect(target.addr).await.unwrap();
        assert_eq!(stream.local_addr().unwrap().ip(), ip);
    }
}
