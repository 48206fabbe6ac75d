//! The kernel gives up on a client that acknowledges nothing.
//!
//! The write timeout only sees writes the service still has to make. An answer that fits in the
//! kernel's socket buffers (a 2 MB page does: Linux grows a send buffer up to 4 MiB) is written
//! at once; a client that then reads nothing leaves the connection idle on the service's side,
//! open until the keep-alive timeout while the unsent bytes sit in the kernel, charged to the
//! pod's memory. `TCP_USER_TIMEOUT` set to the write timeout makes the kernel abort such a
//! connection once data has waited that long unacknowledged, zero-window probes included (tried
//! on Linux 6.18: a peer that answers the probes with a zero window is aborted). The service
//! then sees the error on its next read and drops the connection. An idle connection with
//! nothing unsent is not affected (keep-alive probes are off), so the load balancer's reused
//! connections stay open.

use std::time::Duration;

use tokio::net::TcpStream;

/// Sets `TCP_USER_TIMEOUT` on an accepted connection. Best effort: a socket that refuses the
/// option still has the write timeout and the keep-alive timeout.
pub fn give_up_after(stream: &TcpStream, timeout: Duration) {
    #[cfg(target_os = "linux")]
    if let Err(error) = socket2::SockRef::from(stream).set_tcp_user_timeout(Some(timeout)) {
        tracing::debug!(%error, "TCP_USER_TIMEOUT not set");
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (stream, timeout);
}
