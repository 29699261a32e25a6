//! Making a `.torrent`: encoding what `create` gathered into the bencoded file.

use crate::bencode::{self, DictBuilder, Value};

/// What `create` needs to build a `.torrent`. Hashing the data is the caller's job (it is
/// disk work); this only encodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTorrent {
    /// The torrent's name (the single file's name, or the top directory's).
    pub name: String,
    /// Empty for a single-file torrent; otherwise each file's path below `name` and length.
    pub files: Vec<(Vec<String>, u64)>,
    /// Length of the single file when `files` is empty.
    pub length: u64,
    /// Bytes per piece.
    pub piece_length: u32,
    /// The SHA-1 of every piece, in order.
    pub pieces: Vec<[u8; 20]>,
    /// The private flag (BEP 27): no DHT or PEX.
    pub private: bool,
    /// Tracker tiers (BEP 12).
    pub trackers: Vec<Vec<String>>,
    /// Free text.
    pub comment: Option<String>,
    /// The program that made it.
    pub created_by: Option<String>,
    /// Seconds since the Unix epoch.
    pub creation_date: Option<i64>,
}

impl NewTorrent {
    /// The bencoded `.torrent` file. `Metainfo::from_bytes` of the result succeeds and
    /// gives back the same fields.
    ///
    /// This only encodes: a `NewTorrent` that `from_bytes` would reject (an unsafe name or
    /// path, a hash count that does not match, no data at all) encodes to a torrent that
    /// `from_bytes` rejects.
    ///
    /// Lengths above `i64::MAX` cannot be written in bencode as this crate reads it and are
    /// written as `i64::MAX` (no real torrent comes near). Empty tiers are left out.
    pub fn encode(&self) -> Vec<u8> {
        let pieces: Vec<u8> = self.pieces.concat();
        let mut info = DictBuilder::new()
            .insert(b"name", Value::Bytes(self.name.as_bytes()))
            .insert(b"piece length", Value::Int(i64::from(self.piece_length)))
            .insert(b"pieces", Value::Bytes(&pieces));
        info = if self.files.is_empty() {
            info.insert(b"length", length_value(self.length))
        } else {
            let files = self
                .files
                .iter()
                .map(|(path, len)| {
                    let path = path.iter().map(|c| Value::Bytes(c.as_bytes())).collect();
                    DictBuilder::new()
                        .insert(b"length", length_value(*len))
                        .insert(b"path", Value::List(path))
                        .build()
                })
                .collect();
            info.insert(b"files", Value::List(files))
        };
        if self.private {
            info = info.insert(b"private", Value::Int(1));
        }

        let mut top = DictBuilder::new().insert(b"info", info.build());
        if let Some(first) = self.trackers.iter().flatten().next() {
            top = top.insert(b"announce", Value::Bytes(first.as_bytes()));
        }
        if self.trackers.iter().map(Vec::len).sum::<usize>() > 1 {
            let tiers = self
                .trackers
                .iter()
                .filter(|tier| !tier.is_empty())
                .map(|tier| Value::List(tier.iter().map(|u| Value::Bytes(u.as_bytes())).collect()))
                .collect();
            top = top.insert(b"announce-list", Value::List(tiers));
        }
        if let Some(comment) = &self.comment {
            top = top.insert(b"comment", Value::Bytes(comment.as_bytes()));
        }
        if let Some(created_by) = &self.created_by {
            top = top.insert(b"created by", Value::Bytes(created_by.as_bytes()));
        }
        if let Some(date) = self.creation_date {
            top = top.insert(b"creation date", Value::Int(date));
        }
        bencode::encode(&top.build())
    }
}

fn length_value(len: u64) -> Value<'static> {
    Value::Int(i64::try_from(len).unwrap_or(i64::MAX))
}
