//! The UDP socket under a QUIC endpoint. One socket carries every connection of an
//! endpoint, so its kernel receive buffer must absorb a burst from all of them: with the
//! usual 208 KiB default, 1,000 agents that send in the same millisecond overflow it, the
//! kernel drops datagrams (`RcvbufErrors` in /proc/net/snmp), and QUIC's loss recovery turns
//! each drop into hundreds of milliseconds of delay.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

/// Kernel buffer asked for on endpoint sockets (receive and send). Linux caps it at
/// `net.core.rmem_max` / `wmem_max`.
pub const UDP_BUFFER_BYTES: usize = 4 << 20;

/// A bound endpoint socket and the buffer sizes the kernel actually granted.
pub struct EndpointSocket {
    pub socket: std::net::UdpSocket,
    pub recv_buffer: usize,
    pub send_buffer: usize,
}

/// Bind `addr` and ask for `buffer_bytes` of receive and send buffer. A smaller grant is
/// not an error (check [`EndpointSocket::recv_buffer`] and log it); a failed bind is.
pub fn bind_endpoint_socket(addr: SocketAddr, buffer_bytes: usize) -> io::Result<EndpointSocket> {
    let socket = std::net::UdpSocket::bind(addr)?;
    let state = quinn::udp::UdpSocketState::new((&socket).into())?;
    // Best effort: the kernel clamps to its maximum rather than fail, and a socket with
    // the default buffer still works (slower under bursts), so errors here are not fatal.
    let _ = state.set_recv_buffer_size((&socket).into(), buffer_bytes);
    let _ = state.set_send_buffer_size((&socket).into(), buffer_bytes);
    let recv_buffer = state.recv_buffer_size((&socket).into()).unwrap_or(0);
    let send_buffer = state.send_buffer_size((&socket).into()).unwrap_or(0);
    Ok(EndpointSocket { socket, recv_buffer, send_buffer })
}

/// A QUIC endpoint (server when `server` is given) on a socket from [`bind_endpoint_socket`].
pub fn endpoint_on(socket: std::net::UdpSocket, server: Option<quinn::ServerConfig>) -> io::Result<quinn::Endpoint> {
    quinn::Endpoint::new(quinn::EndpointConfig::default(), server, socket, Arc::new(quinn::TokioRuntime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_socket_gets_a_bigger_buffer_than_the_default_when_the_kernel_allows() {
        let s = bind_endpoint_socket("127.0.0.1:0".parse().expect("an address"), 1 << 20).expect("bind on loopback");
        let default = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind on loopback");
        let state = quinn::udp::UdpSocketState::new((&default).into()).expect("socket state");
        let base = state.recv_buffer_size((&default).into()).expect("default buffer size");
        let max = std::fs::read_to_string("/proc/sys/net/core/rmem_max").ok().and_then(|t| t.trim().parse::<usize>().ok());
        match max {
            // Linux doubles what is asked (bookkeeping), capped at twice rmem_max.
            Some(max) if max >= 1 << 20 => assert!(s.recv_buffer >= 1 << 20, "asked 1 MiB, got {} (default {base})", s.recv_buffer),
            _ => assert!(s.recv_buffer >= base, "got {} below the default {base}", s.recv_buffer),
        }
    }
}
