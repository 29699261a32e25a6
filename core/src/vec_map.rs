//! A small ordered map stored as two sorted vectors: the keys, and the values in the same
//! order.
//!
//! For the maps on the core's per-message path (a torrent's peers, a session's connection
//! routes, disk operations in flight) that hold tens of entries keyed by ids the session
//! hands out in increasing order. Compared with a `BTreeMap` a lookup is a binary search over
//! one contiguous array of keys, iteration walks contiguous memory, and appending the
//! largest key (the usual insert) is O(1); inserting elsewhere or removing is O(n) moves of
//! keys and values, cheap at these sizes (box large values). Iteration is in key order,
//! exactly as a `BTreeMap`'s, so replacing one by the other changes no behaviour.

use std::fmt;

#[derive(Clone)]
pub(crate) struct VecMap<K, V> {
    keys: Vec<K>,
    vals: Vec<V>,
    /// Where the last key looked up mutably was: the same key tends to be looked up many
    /// times in a row (every message of one connection).
    hint: usize,
}

impl<K, V> Default for VecMap<K, V> {
    fn default() -> Self {
        VecMap {
            keys: Vec::new(),
            vals: Vec::new(),
            hint: 0,
        }
    }
}

impl<K: fmt::Debug, V: fmt::Debug> fmt::Debug for VecMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.keys.iter().zip(&self.vals))
            .finish()
    }
}

impl<K: Ord + Copy, V> VecMap<K, V> {
    pub fn new() -> Self {
        Self::default()
    }

    /// The index of `key`, or where it would be inserted. Keys are mostly appended in
    /// increasing order, so the last one is tried first.
    #[inline]
    fn find(&self, key: &K) -> Result<usize, usize> {
        if self.keys.get(self.hint) == Some(key) {
            return Ok(self.hint);
        }
        match self.keys.last() {
            None => Err(0),
            Some(last) if key > last => Err(self.keys.len()),
            Some(last) if key == last => Ok(self.keys.len() - 1),
            Some(_) => self.keys.binary_search(key),
        }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    #[inline]
    pub fn get(&self, key: &K) -> Option<&V> {
        self.find(key).ok().map(|i| &self.vals[i])
    }

    #[inline]
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        match self.find(key) {
            Ok(i) => {
                self.hint = i;
                Some(&mut self.vals[i])
            }
            Err(_) => None,
        }
    }

    #[inline]
    pub fn contains_key(&self, key: &K) -> bool {
        self.find(key).is_ok()
    }

    /// Inserts or replaces; returns the value replaced.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self.find(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.vals[i], value)),
            Err(i) => {
                self.keys.insert(i, key);
                self.vals.insert(i, value);
                None
            }
        }
    }

    pub fn remove(&mut self, key: &K) -> Option<V> {
        let i = self.find(key).ok()?;
        self.keys.remove(i);
        Some(self.vals.remove(i))
    }

    /// Keys in increasing order.
    pub fn keys(&self) -> impl Iterator<Item = &K> + '_ {
        self.keys.iter()
    }

    pub fn values(&self) -> impl Iterator<Item = &V> + '_ {
        self.vals.iter()
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut V> + '_ {
        self.vals.iter_mut()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> + '_ {
        self.keys.iter().zip(self.vals.iter())
    }

    /// Appends every key, in order, to `out` (a reusable buffer for loops that mutate the
    /// map's owner while walking its keys).
    pub fn keys_into(&self, out: &mut Vec<K>) {
        out.extend_from_slice(&self.keys);
    }
}

impl<'a, K: Ord + Copy, V> IntoIterator for &'a mut VecMap<K, V> {
    type Item = (&'a K, &'a mut V);
    type IntoIter = std::iter::Zip<std::slice::Iter<'a, K>, std::slice::IterMut<'a, V>>;

    fn into_iter(self) -> Self::IntoIter {
        self.keys.iter().zip(self.vals.iter_mut())
    }
}

impl<'a, K: Ord + Copy, V> IntoIterator for &'a VecMap<K, V> {
    type Item = (&'a K, &'a V);
    type IntoIter = std::iter::Zip<std::slice::Iter<'a, K>, std::slice::Iter<'a, V>>;

    fn into_iter(self) -> Self::IntoIter {
        self.keys.iter().zip(self.vals.iter())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::{any, prop_assert_eq, proptest};

    use super::VecMap;

    proptest! {
        /// Any sequence of inserts and removes leaves the same map as a `BTreeMap`.
        #[test]
        fn behaves_as_a_btree_map(ops in proptest::collection::vec((any::<bool>(), 0u8..40, any::<u16>()), 0..200)) {
            let mut v = VecMap::new();
            let mut b = BTreeMap::new();
            for (insert, k, val) in ops {
                if insert {
                    prop_assert_eq!(v.insert(k, val), b.insert(k, val));
                } else {
                    prop_assert_eq!(v.remove(&k), b.remove(&k));
                }
                prop_assert_eq!(v.len(), b.len());
                prop_assert_eq!(v.get(&k), b.get(&k));
                prop_assert_eq!(v.contains_key(&k), b.contains_key(&k));
            }
            let a: Vec<(u8, u16)> = v.iter().map(|(k, x)| (*k, *x)).collect();
            let c: Vec<(u8, u16)> = b.iter().map(|(k, x)| (*k, *x)).collect();
            prop_assert_eq!(a, c);
        }
    }
}
