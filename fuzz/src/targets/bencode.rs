//! Bencode decoding: never panics, and whatever is accepted is canonical: encoding the
//! decoded value gives back exactly the input (which is what makes info hashes computed
//! from re-encoded dictionaries right).

use tessera_core::bencode;

/// The target's body: one input.
pub fn run(data: &[u8]) {
    if let Ok(value) = bencode::decode(data) {
        let encoded = bencode::encode(&value);
        assert!(encoded == data, "accepted bencode is not canonical");
        assert_eq!(bencode::decode(&encoded).as_ref(), Ok(&value));
    }
}
