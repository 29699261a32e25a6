//! Identifiers: protocol ones (info hash, peer id) and the handles the core gives out.

use std::fmt;

/// The SHA-1 of a torrent's bencoded `info` dictionary (BEP 3).
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InfoHash(pub [u8; 20]);

/// A peer's 20-byte self-chosen identity (BEP 3, BEP 20 for the conventional prefix).
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerId(pub [u8; 20]);

/// Lower-case hexadecimal of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

impl InfoHash {
    /// Parses 40 hexadecimal digits.
    pub fn from_hex(s: &str) -> Option<InfoHash> {
        let s = s.as_bytes();
        if s.len() != 40 {
            return None;
        }
        let mut out = [0u8; 20];
        for (i, pair) in s.chunks(2).enumerate() {
            let hi = (pair[0] as char).to_digit(16)?;
            let lo = (pair[1] as char).to_digit(16)?;
            out[i] = u8::try_from(hi * 16 + lo).ok()?;
        }
        Some(InfoHash(out))
    }
}

impl fmt::Display for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

impl fmt::Debug for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InfoHash({})", hex(&self.0))
    }
}

impl PeerId {
    /// The client prefix in Azureus style (`-XX0000-`), if the id has one.
    pub fn client(&self) -> Option<&str> {
        let id = &self.0;
        if id[0] == b'-' && id[7] == b'-' {
            std::str::from_utf8(&id[1..7]).ok()
        } else {
            None
        }
    }
}

impl fmt::Display for PeerId {
    /// Printable bytes as they are, the rest as `.`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &b in &self.0 {
            let c = if b.is_ascii_graphic() { b as char } else { '.' };
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerId({self})")
    }
}

macro_rules! handle {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
        pub struct $name(pub u64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}#{}", stringify!($name), self.0)
            }
        }
    };
}

handle!(
    /// A connection (to a peer or a tracker) the core knows about. The core allocates these:
    /// for outbound connections in `Action::Connect`, for inbound ones in `Session::accept`.
    ConnId
);
handle!(
    /// A torrent added to a session.
    TorrentId
);
handle!(
    /// A disk operation asked for by an action, answered by `Input::Disk`.
    OpId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let h = InfoHash([0xab; 20]);
        assert_eq!(h.to_string(), "ab".repeat(20));
        assert_eq!(InfoHash::from_hex(&h.to_string()), Some(h));
        assert_eq!(InfoHash::from_hex("zz"), None);
        assert_eq!(InfoHash::from_hex(&"g".repeat(40)), None);
    }

    #[test]
    fn peer_id_client() {
        let mut id = [b'x'; 20];
        id[..8].copy_from_slice(b"-TQ0100-");
        assert_eq!(PeerId(id).client(), Some("TQ0100"));
        assert_eq!(PeerId([0; 20]).client(), None);
    }
}
