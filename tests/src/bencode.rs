//! Just enough bencode (BEP 3) for the harness: parse a torrent keeping the byte span of each
//! value (the info hash is the SHA-1 of the info dict's raw bytes), and build torrents by hand,
//! including malformed or hostile ones. Independent of `tessera-core` on purpose: the tests
//! must not trust the code they test.

use std::collections::BTreeMap;
use std::ops::Range;

/// A bencoded value. Dictionary keys are kept sorted (BTreeMap), as the encoding requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Int(i64),
    Bytes(Vec<u8>),
    List(Vec<Value>),
    Dict(BTreeMap<Vec<u8>, Value>),
}

impl Value {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Value::Int(i) => out.extend_from_slice(format!("i{i}e").as_bytes()),
            Value::Bytes(b) => {
                out.extend_from_slice(format!("{}:", b.len()).as_bytes());
                out.extend_from_slice(b);
            }
            Value::List(items) => {
                out.push(b'l');
                items.iter().for_each(|v| v.encode_into(out));
                out.push(b'e');
            }
            Value::Dict(map) => {
                out.push(b'd');
                for (k, v) in map {
                    Value::Bytes(k.clone()).encode_into(out);
                    v.encode_into(out);
                }
                out.push(b'e');
            }
        }
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(map) => map.get(key.as_bytes()),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(l) => Some(l),
            _ => None,
        }
    }
}

/// Builds a byte string value.
pub fn bytes(b: impl AsRef<[u8]>) -> Value {
    Value::Bytes(b.as_ref().to_vec())
}

/// Builds a dictionary value from `(key, value)` pairs.
pub fn dict<'a>(pairs: impl IntoIterator<Item = (&'a str, Value)>) -> Value {
    Value::Dict(
        pairs
            .into_iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v))
            .collect(),
    )
}

/// A parse failure: what went wrong and at which byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub at: usize,
    pub what: &'static str,
}

/// Parses one value that must span all of `input`.
pub fn decode(input: &[u8]) -> Result<Value, Error> {
    let mut p = Parser {
        input,
        pos: 0,
        spans: Vec::new(),
    };
    let v = p.value(0)?;
    if p.pos != input.len() {
        return Err(Error {
            at: p.pos,
            what: "trailing bytes",
        });
    }
    Ok(v)
}

/// The raw byte range of the value under top-level dictionary key `key` (e.g. `info`).
pub fn top_level_span(input: &[u8], key: &str) -> Result<Option<Range<usize>>, Error> {
    let mut p = Parser {
        input,
        pos: 0,
        spans: Vec::new(),
    };
    p.value(0)?;
    Ok(p.spans
        .into_iter()
        .find(|(k, _)| k == key.as_bytes())
        .map(|(_, r)| r))
}

struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
    /// `(key, span of its value)` for the top-level dictionary.
    spans: Vec<(Vec<u8>, Range<usize>)>,
}

impl Parser<'_> {
    const MAX_DEPTH: usize = 64;

    fn err(&self, what: &'static str) -> Error {
        Error { at: self.pos, what }
    }

    fn peek(&self) -> Result<u8, Error> {
        self.input
            .get(self.pos)
            .copied()
            .ok_or_else(|| self.err("unexpected end"))
    }

    fn value(&mut self, depth: usize) -> Result<Value, Error> {
        if depth > Self::MAX_DEPTH {
            return Err(self.err("nesting too deep"));
        }
        match self.peek()? {
            b'i' => {
                self.pos += 1;
                let n = self.number(b'e')?;
                Ok(Value::Int(n))
            }
            b'l' => {
                self.pos += 1;
                let mut items = Vec::new();
                while self.peek()? != b'e' {
                    items.push(self.value(depth + 1)?);
                }
                self.pos += 1;
                Ok(Value::List(items))
            }
            b'd' => {
                self.pos += 1;
                let mut map = BTreeMap::new();
                while self.peek()? != b'e' {
                    let key = self.string()?;
                    let start = self.pos;
                    let v = self.value(depth + 1)?;
                    if depth == 0 {
                        self.spans.push((key.clone(), start..self.pos));
                    }
                    map.insert(key, v);
                }
                self.pos += 1;
                Ok(Value::Dict(map))
            }
            b'0'..=b'9' => Ok(Value::Bytes(self.string()?)),
            _ => Err(self.err("unexpected byte")),
        }
    }

    fn number(&mut self, end: u8) -> Result<i64, Error> {
        let start = self.pos;
        while self.peek()? != end {
            self.pos += 1;
        }
        let text = std::str::from_utf8(&self.input[start..self.pos])
            .map_err(|_| self.err("number is not ASCII"))?;
        let n = text.parse().map_err(|_| self.err("bad number"))?;
        self.pos += 1;
        Ok(n)
    }

    fn string(&mut self) -> Result<Vec<u8>, Error> {
        let len = self.number(b':')?;
        let len = usize::try_from(len).map_err(|_| self.err("negative length"))?;
        let end = self
            .pos
            .checked_add(len)
            .filter(|&e| e <= self.input.len())
            .ok_or_else(|| self.err("string runs past the end"))?;
        let s = self.input[self.pos..end].to_vec();
        self.pos = end;
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_span() {
        let v = dict([
            ("announce", bytes("http://x/announce")),
            (
                "info",
                dict([("length", Value::Int(5)), ("name", bytes("a b"))]),
            ),
        ]);
        let enc = v.encode();
        assert_eq!(decode(&enc).unwrap(), v);
        let span = top_level_span(&enc, "info").unwrap().unwrap();
        assert_eq!(&enc[span], b"d6:lengthi5e4:name3:a be");
    }

    #[test]
    fn rejects_truncated_and_trailing() {
        assert!(decode(b"d4:name").is_err());
        assert!(decode(b"5:abc").is_err());
        assert!(decode(b"i1ei2e").is_err());
    }
}
