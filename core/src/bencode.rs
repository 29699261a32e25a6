//! Bencode (BEP 3), through the `bendy` crate.
//!
//! Decoding is strict and bounded: nesting deeper than [`MAX_DEPTH`] is an error (never a
//! stack overflow), integers must fit in an `i64` (never a silently wrong number), keys must
//! be sorted and unique and integers canonical. Because of that strictness, encoding a
//! decoded value gives back exactly the input bytes, which is what makes an info hash
//! computed from a re-encoded dictionary equal to the hash of the original bytes.

use bendy::decoding::{Decoder, Object};
use bendy::encoding::{Encoder, SingleItemEncoder};
use thiserror::Error;

/// Deepest nesting accepted. Real torrents and tracker responses nest four or five levels.
pub const MAX_DEPTH: usize = 64;
/// Most values one decode builds. A decoded value takes several times the memory of its
/// encoding when items are tiny (`i0e` is 3 bytes, its `Value` 32), so this, not the input
/// size, is what bounds memory. A torrent of 300,000 files needs about 2.4 million.
pub const MAX_ITEMS: usize = 4_000_000;

/// Why bytes are not one well-formed bencoded value.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BencodeError {
    /// The bytes are not bencode.
    #[error("malformed bencode: {0}")]
    Malformed(String),
    /// An integer too large for 64 bits.
    #[error("integer {0} does not fit in 64 bits")]
    IntegerOverflow(String),
    /// Bytes after the value.
    #[error("trailing bytes after the bencoded value")]
    TrailingBytes,
    /// No bytes at all.
    #[error("empty input")]
    Empty,
    /// More values than one decode may build ([`MAX_ITEMS`]).
    #[error("more than {MAX_ITEMS} values")]
    TooManyItems,
}

impl From<bendy::decoding::Error> for BencodeError {
    fn from(e: bendy::decoding::Error) -> Self {
        BencodeError::Malformed(e.to_string())
    }
}

/// A decoded value borrowing its byte strings from the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value<'a> {
    /// An integer.
    Int(i64),
    /// A byte string.
    Bytes(&'a [u8]),
    /// A list.
    List(Vec<Value<'a>>),
    /// Entries in key order (the decoder rejects unsorted or duplicate keys).
    Dict(Vec<(&'a [u8], Value<'a>)>),
}

impl<'a> Value<'a> {
    /// The integer, if this is one.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The byte string, if this is one.
    pub fn as_bytes(&self) -> Option<&'a [u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The byte string as UTF-8, if it is one.
    pub fn as_str(&self) -> Option<&'a str> {
        self.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
    }

    /// The list, if this is one.
    pub fn as_list(&self) -> Option<&[Value<'a>]> {
        match self {
            Value::List(l) => Some(l),
            _ => None,
        }
    }

    /// The dictionary's entries in key order, if this is one.
    pub fn as_dict(&self) -> Option<&[(&'a [u8], Value<'a>)]> {
        match self {
            Value::Dict(d) => Some(d),
            _ => None,
        }
    }

    /// The value under `key` when this is a dictionary.
    pub fn get(&self, key: &[u8]) -> Option<&Value<'a>> {
        let d = self.as_dict()?;
        d.binary_search_by(|(k, _)| (*k).cmp(key))
            .ok()
            .map(|i| &d[i].1)
    }

    /// A short name of the variant, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Int(_) => "integer",
            Value::Bytes(_) => "string",
            Value::List(_) => "list",
            Value::Dict(_) => "dictionary",
        }
    }
}

/// Decodes exactly one value spanning all of `buf`.
pub fn decode(buf: &[u8]) -> Result<Value<'_>, BencodeError> {
    let mut decoder = Decoder::new(buf).with_max_depth(MAX_DEPTH);
    let value = match decoder.next_object()? {
        Some(obj) => from_object(obj, &mut Budget::default())?,
        None => return Err(BencodeError::Empty),
    };
    match decoder.next_object() {
        Ok(None) => Ok(value),
        _ => Err(BencodeError::TrailingBytes),
    }
}

/// Decodes the bencoded dictionary at the start of `buf` and returns it with the bytes that
/// follow it (a `ut_metadata` data message puts raw bytes after its dictionary). The
/// dictionary is checked as strictly as by [`decode`].
pub fn decode_dict_prefix(buf: &[u8]) -> Result<(Value<'_>, &[u8]), BencodeError> {
    let mut decoder = Decoder::new(buf).with_max_depth(MAX_DEPTH);
    let raw = match decoder.next_object()? {
        Some(Object::Dict(dict)) => dict.into_raw()?,
        Some(_) => return Err(BencodeError::Malformed("not a dictionary".into())),
        None => return Err(BencodeError::Empty),
    };
    let rest = buf.get(raw.len()..).unwrap_or(&[]);
    Ok((decode(raw)?, rest))
}

/// Parses an integer token as bendy hands it over (already checked for canonical digits).
pub(crate) fn parse_int(digits: &str) -> Result<i64, BencodeError> {
    digits
        .parse::<i64>()
        .map_err(|_| BencodeError::IntegerOverflow(digits.to_owned()))
}

/// How many more values a decode may build.
#[derive(Debug)]
pub(crate) struct Budget(usize);

impl Default for Budget {
    fn default() -> Self {
        Budget(MAX_ITEMS)
    }
}

pub(crate) fn from_object<'a>(
    obj: Object<'_, 'a>,
    budget: &mut Budget,
) -> Result<Value<'a>, BencodeError> {
    budget.0 = budget.0.checked_sub(1).ok_or(BencodeError::TooManyItems)?;
    Ok(match obj {
        Object::Integer(digits) => Value::Int(parse_int(digits)?),
        Object::Bytes(b) => Value::Bytes(b),
        Object::List(mut list) => {
            let mut items = Vec::new();
            while let Some(item) = list.next_object()? {
                items.push(from_object(item, budget)?);
            }
            Value::List(items)
        }
        Object::Dict(mut dict) => {
            let mut entries = Vec::new();
            while let Some((k, v)) = dict.next_pair()? {
                entries.push((k, from_object(v, budget)?));
            }
            Value::Dict(entries)
        }
    })
}

/// Canonical encoding of `value`. Dictionaries are written in sorted key order whatever
/// order they hold; duplicate keys keep the first.
pub fn encode(value: &Value<'_>) -> Vec<u8> {
    let mut enc = Encoder::new().with_max_depth(usize::MAX);
    // Encoding into memory only fails for a depth beyond the limit, which is unlimited here.
    match enc
        .emit_with(|e| emit(e, value))
        .and_then(|()| enc.get_output())
    {
        Ok(out) => out,
        Err(e) => unreachable!("in-memory bencode encoding cannot fail: {e}"),
    }
}

fn emit(e: SingleItemEncoder<'_>, value: &Value<'_>) -> Result<(), bendy::encoding::Error> {
    match value {
        Value::Int(i) => e.emit_int(*i),
        Value::Bytes(b) => e.emit_bytes(b),
        Value::List(items) => e.emit_list(|l| {
            for item in items {
                l.emit_with(|e| emit(e, item))?;
            }
            Ok(())
        }),
        Value::Dict(entries) => {
            let mut sorted: Vec<&(&[u8], Value<'_>)> = entries.iter().collect();
            sorted.sort_by(|a, b| a.0.cmp(b.0));
            sorted.dedup_by(|a, b| a.0 == b.0);
            e.emit_dict(|mut d| {
                for (k, v) in sorted {
                    d.emit_pair_with(k, |e| emit(e, v))?;
                }
                Ok(())
            })
        }
    }
}

/// Builds dictionaries for encoding without caring about key order.
#[derive(Debug, Default, Clone)]
pub struct DictBuilder<'a> {
    entries: Vec<(&'a [u8], Value<'a>)>,
}

impl<'a> DictBuilder<'a> {
    /// An empty dictionary.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an entry (keys are sorted by `build`).
    pub fn insert(mut self, key: &'a [u8], value: Value<'a>) -> Self {
        self.entries.push((key, value));
        self
    }

    /// The dictionary, its keys sorted as bencode requires.
    pub fn build(mut self) -> Value<'a> {
        self.entries.sort_by(|a, b| a.0.cmp(b.0));
        Value::Dict(self.entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decodes_the_four_kinds() {
        assert_eq!(decode(b"i-42e"), Ok(Value::Int(-42)));
        assert_eq!(decode(b"4:spam"), Ok(Value::Bytes(b"spam")));
        assert_eq!(
            decode(b"l4:spami1ee"),
            Ok(Value::List(vec![Value::Bytes(b"spam"), Value::Int(1)]))
        );
        let d = decode(b"d3:cow3:moo4:spam4:eggse").unwrap();
        assert_eq!(d.get(b"cow").and_then(Value::as_str), Some("moo"));
        assert_eq!(d.get(b"spam").and_then(Value::as_bytes), Some(&b"eggs"[..]));
        assert_eq!(d.get(b"nope"), None);
    }

    #[test]
    fn integer_overflow_is_an_error_not_a_wrong_number() {
        assert!(matches!(
            decode(b"i99999999999999999999999e"),
            Err(BencodeError::IntegerOverflow(_))
        ));
        assert_eq!(decode(b"i9223372036854775807e"), Ok(Value::Int(i64::MAX)));
        assert_eq!(decode(b"i-9223372036854775808e"), Ok(Value::Int(i64::MIN)));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let mut deep = vec![b'l'; 200_000];
        deep.extend(vec![b'e'; 200_000]);
        assert!(matches!(decode(&deep), Err(BencodeError::Malformed(_))));
        let ok = [vec![b'l'; MAX_DEPTH - 1], vec![b'e'; MAX_DEPTH - 1]].concat();
        assert!(decode(&ok).is_ok());
    }

    #[test]
    fn item_count_is_bounded() {
        let mut many = b"l".to_vec();
        for _ in 0..=MAX_ITEMS {
            many.extend_from_slice(b"i0e");
        }
        many.push(b'e');
        assert_eq!(decode(&many), Err(BencodeError::TooManyItems));
    }

    #[test]
    fn non_canonical_and_trailing_input_rejected() {
        for bad in [
            &b"i03e"[..],
            b"i-0e",
            b"ie",
            b"d1:b0:1:a0:e",
            b"d1:a0:1:a0:e",
            b"4:abc",
            b"i1ei2e",
            b"",
            b"x",
        ] {
            assert!(
                decode(bad).is_err(),
                "{:?} accepted",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn dictionary_prefix_and_the_bytes_after_it() {
        let (v, rest) = decode_dict_prefix(b"d1:ai1ee\x00raw bytes").unwrap();
        assert_eq!(v.get(b"a"), Some(&Value::Int(1)));
        assert_eq!(rest, b"\x00raw bytes");
        let (_, rest) = decode_dict_prefix(b"d1:ali1eee").unwrap();
        assert!(rest.is_empty());
        assert_eq!(decode_dict_prefix(b""), Err(BencodeError::Empty));
        for bad in [&b"i1e"[..], b"le", b"d1:a", b"d1:b0:1:a0:e", b"d1:ai01ee"] {
            assert!(decode_dict_prefix(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn builder_sorts_keys() {
        let v = DictBuilder::new()
            .insert(b"z", Value::Int(1))
            .insert(b"a", Value::Int(2))
            .build();
        assert_eq!(encode(&v), b"d1:ai2e1:zi1ee");
    }

    fn arb_value() -> impl Strategy<Value = Value<'static>> {
        let leaf = prop_oneof![
            any::<i64>().prop_map(Value::Int),
            proptest::collection::vec(any::<u8>(), 0..16)
                .prop_map(|v| Value::Bytes(Box::leak(v.into_boxed_slice()))),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::List),
                proptest::collection::btree_map(
                    proptest::collection::vec(any::<u8>(), 0..8),
                    inner,
                    0..8
                )
                .prop_map(|m| Value::Dict(
                    m.into_iter()
                        .map(|(k, v)| (&*Box::leak(k.into_boxed_slice()), v))
                        .collect()
                )),
            ]
        })
    }

    proptest! {
        #[test]
        fn round_trips(v in arb_value()) {
            let bytes = encode(&v);
            let back = decode(&bytes).unwrap();
            prop_assert_eq!(&back, &v);
            prop_assert_eq!(encode(&back), bytes);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            if let Ok(v) = decode(&bytes) {
                // Whatever is accepted is canonical.
                prop_assert_eq!(encode(&v), bytes);
            }
        }

        #[test]
        fn dictionary_prefix_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            if let Ok((v, rest)) = decode_dict_prefix(&bytes) {
                let mut again = encode(&v);
                again.extend_from_slice(rest);
                prop_assert_eq!(again, bytes);
            }
        }

        #[test]
        fn mutated_valid_input_never_panics(v in arb_value(), pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
            let mut bytes = encode(&v);
            let i = pos.index(bytes.len());
            bytes[i] = byte;
            let _ = decode(&bytes);
        }
    }
}
