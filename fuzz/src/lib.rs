//! Helpers shared by the fuzz targets.
//!
//! Streaming targets read their input as a small header that says where to cut the stream,
//! then the stream itself, so that seed files are the real bytes behind a short prefix:
//!
//! ```text
//! [n: u8] [n × u16 big-endian chunk lengths] [stream ...]
//! ```
//!
//! `n` is taken modulo 32. The stream is fed in chunks of those lengths (cut to what is
//! left; zero-length chunks are fed too, as empty reads), then whatever remains as one last
//! chunk. An input too short for its header is read as a header with fewer lengths.

/// Most cut points one input can ask for.
pub const MAX_SPLITS: usize = 32;

/// Splits `data` into its header's chunk lengths and the stream.
pub fn take_splits(data: &[u8]) -> (Vec<usize>, &[u8]) {
    let Some((&n, mut rest)) = data.split_first() else {
        return (Vec::new(), data);
    };
    let mut lens = Vec::new();
    for _ in 0..usize::from(n) % MAX_SPLITS {
        let Some((pair, tail)) = rest.split_first_chunk::<2>() else {
            break;
        };
        lens.push(usize::from(u16::from_be_bytes(*pair)));
        rest = tail;
    }
    (lens, rest)
}

/// `stream` cut at the given chunk lengths; the concatenation of the result is `stream`.
pub fn chunks<'a>(stream: &'a [u8], lens: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::with_capacity(lens.len() + 1);
    let mut rest = stream;
    for &len in lens {
        let (head, tail) = rest.split_at(len.min(rest.len()));
        out.push(head);
        rest = tail;
    }
    out.push(rest);
    out
}

/// The header for a stream fed whole (for writing seed files).
pub const NO_SPLITS: [u8; 1] = [0];
