//! The split header of the streaming targets (see the crate docs): where to cut a stream
//! into the reads it is fed in.

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
