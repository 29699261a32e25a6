//! Ctrl-C (SIGINT) and SIGTERM as bytes on a socket that any event loop can wait on
//! (signal-hook's self-pipe). What a signal means is the driver's business
//! ([`crate::Driver::request_shutdown`]): the first asks for a clean stop, the second
//! ends the run at once.

use std::io::{self, Read};
use std::os::unix::net::UnixStream;

/// Starts catching SIGINT and SIGTERM. Returns the non-blocking end to read them from
/// with [`take`]; the runtime registers it with its event loop.
pub fn pipe() -> io::Result<UnixStream> {
    let (read, write) = UnixStream::pair()?;
    read.set_nonblocking(true)?;
    write.set_nonblocking(true)?;
    signal_hook::low_level::pipe::register(signal_hook::consts::SIGINT, write.try_clone()?)?;
    signal_hook::low_level::pipe::register(signal_hook::consts::SIGTERM, write)?;
    Ok(read)
}

/// How many signals arrived since the last call (one byte each); `WouldBlock` when none.
pub fn take(mut pipe: impl Read) -> io::Result<usize> {
    let mut buf = [0u8; 16];
    let mut n = 0;
    loop {
        match pipe.read(&mut buf) {
            Ok(0) => return Ok(n),
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && n > 0 => return Ok(n),
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn take_counts_bytes_and_would_block_when_empty() {
        let (mut w, r) = UnixStream::pair().unwrap();
        r.set_nonblocking(true).unwrap();
        assert_eq!(take(&r).unwrap_err().kind(), io::ErrorKind::WouldBlock);
        w.write_all(&[0; 20]).unwrap();
        assert_eq!(take(&r).unwrap(), 20);
        assert_eq!(take(&r).unwrap_err().kind(), io::ErrorKind::WouldBlock);
    }
}
