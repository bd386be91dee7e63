//! Picking loopback ports for processes this process is about to start.

use std::collections::HashSet;
use std::io;
use std::net::TcpListener;
use std::sync::Mutex;

/// Ports already handed out by [`unused_loopback_port`] in this process.
static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A loopback port that is free now and that this process has not handed
/// out before.
///
/// The port is released before it is returned (the child process binds it),
/// so the kernel may offer the same port again on the next call; without the
/// record, two nodes of one test cluster sometimes got the same address.
pub fn unused_loopback_port() -> io::Result<u16> {
    for _ in 0..256 {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
        if handed_out.get_or_insert_with(HashSet::new).insert(port) {
            return Ok(port);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AddrNotAvailable,
        "no loopback port left that this process has not already handed out",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_never_handed_out_twice() {
        let ports: Vec<u16> = (0..200).map(|_| unused_loopback_port().unwrap()).collect();
        let distinct: HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len());
    }
}
