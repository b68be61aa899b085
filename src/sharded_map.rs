//! A hash map split into many small tables, for maps that hold up to hundreds of thousands of
//! entries under a lock that every request takes.
//!
//! A single table grows by moving all of its entries at once, and with entries inserted and
//! removed all the time it also rehashes them from time to time (removals leave tombstones
//! that use up its room). With 100,000 requests waiting for labels, each of those moves took
//! 10 to 35 ms with the label wait's lock held, and every request of the endpoint stalled for
//! it (docs/benchmarks.md, "The logged path taken apart, and a stall in the wait for labels").
//! Split over [`SHARDS`] tables, one move is a [`SHARDS`]th of the entries. The per-caller
//! rate limits count their callers in one too.

use std::borrow::Borrow;
use std::collections::hash_map::{Entry, VacantEntry};
use std::collections::HashMap;
use std::hash::Hash;

/// Tables a map is split over: a rehash moves at most about `len / SHARDS` entries.
pub(crate) const SHARDS: usize = 256;

/// One of a [`ShardedMap`]'s tables.
pub(crate) type Table<K, V> = HashMap<K, V, ahash::RandomState>;

/// A hash map of [`SHARDS`] tables; a key's table is chosen by a hash of its own, seeded
/// apart from the tables' (so the keys of one table still spread over all its buckets), and
/// both keyed per process as `ahash` does (keys may be chosen by callers).
pub(crate) struct ShardedMap<K, V> {
    choose: ahash::RandomState,
    /// Empty until the first insert: every endpoint has a label wait, and one without
    /// monitoring never puts anything in it.
    tables: Vec<Table<K, V>>,
    len: usize,
}

impl<K, V> Default for ShardedMap<K, V> {
    fn default() -> Self {
        Self {
            choose: ahash::RandomState::new(),
            tables: Vec::new(),
            len: 0,
        }
    }
}

impl<K: Hash + Eq, V> ShardedMap<K, V> {
    /// The place of `key`'s table among the tables.
    fn index_of<Q: Hash + ?Sized>(&self, key: &Q) -> usize {
        // SHARDS is a power of two: the low bits of the choosing hash pick the table.
        self.choose.hash_one(key) as usize & (SHARDS - 1)
    }

    /// [`ShardedMap::index_of`], the tables made first if there are none yet.
    fn index_making_tables(&mut self, key: &K) -> usize {
        if self.tables.is_empty() {
            let hashing = ahash::RandomState::new();
            self.tables = (0..SHARDS)
                .map(|_| HashMap::with_hasher(hashing.clone()))
                .collect();
        }
        self.index_of(key)
    }

    /// `key`'s table; none before the first insert.
    fn table_of<Q: Hash + ?Sized>(&self, key: &Q) -> Option<&Table<K, V>> {
        self.tables.get(self.index_of(key))
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The map's tables, for a caller that frees a large map a table at a time rather than
    /// all of its entries at once.
    pub(crate) fn into_tables(self) -> Vec<Table<K, V>> {
        self.tables
    }

    pub(crate) fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.table_of(key)?.get(key)
    }

    pub(crate) fn get_key_value<Q>(&self, key: &Q) -> Option<(&K, &V)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.table_of(key)?.get_key_value(key)
    }

    pub(crate) fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let t = self.index_of(key);
        self.tables.get_mut(t)?.get_mut(key)
    }

    pub(crate) fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let t = self.index_of(key);
        let removed = self.tables.get_mut(t)?.remove(key);
        if removed.is_some() {
            self.len -= 1;
        }
        removed
    }

    /// The value of `key`, inserted from `make` when it has none.
    pub(crate) fn get_or_insert_with(&mut self, key: K, make: impl FnOnce() -> V) -> &mut V {
        let t = self.index_making_tables(&key);
        match self.tables[t].entry(key) {
            Entry::Occupied(o) => o.into_mut(),
            Entry::Vacant(v) => {
                let value = v.insert(make());
                self.len += 1;
                value
            }
        }
    }

    /// Room for `key` when it has no value yet (one lookup for the check and the insert);
    /// `None` when it has one.
    pub(crate) fn vacant(&mut self, key: K) -> Option<Vacant<'_, K, V>> {
        let t = self.index_making_tables(&key);
        match self.tables[t].entry(key) {
            Entry::Occupied(_) => None,
            Entry::Vacant(entry) => Some(Vacant {
                entry,
                len: &mut self.len,
            }),
        }
    }

    /// The largest capacity of one table (about seven eighths of its buckets): what its next
    /// rehash would move, at most.
    #[cfg(test)]
    fn largest_capacity(&self) -> usize {
        self.tables.iter().map(HashMap::capacity).max().unwrap_or(0)
    }
}

/// A key without a value, ready to take one ([`ShardedMap::vacant`]).
pub(crate) struct Vacant<'a, K, V> {
    entry: VacantEntry<'a, K, V>,
    len: &'a mut usize,
}

impl<'a, K, V> Vacant<'a, K, V> {
    pub(crate) fn insert(self, value: V) -> &'a mut V {
        let value = self.entry.insert(value);
        *self.len += 1;
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_found_counted_and_removed_as_in_a_hash_map() {
        let mut m: ShardedMap<String, u32> = ShardedMap::default();
        assert_eq!(m.len(), 0);
        // Nothing inserted yet: nothing found, nothing removed, no tables made.
        assert_eq!(m.get("k1"), None);
        assert_eq!(m.get_mut("k1"), None);
        assert_eq!(m.remove("k1"), None);
        assert!(m.tables.is_empty());
        for i in 0..1000 {
            m.vacant(format!("k{i}")).expect("new key").insert(i);
        }
        assert!(
            m.vacant("k7".into()).is_none(),
            "a key with a value has no room"
        );
        assert_eq!(m.len(), 1000);
        assert_eq!(m.get("k7"), Some(&7));
        assert_eq!(m.get_key_value("k8"), Some((&"k8".to_string(), &8)));
        *m.get_mut("k9").unwrap() += 100;
        assert_eq!(m.get("k9"), Some(&109));
        *m.get_or_insert_with("k9".into(), || 0) += 1;
        *m.get_or_insert_with("new".into(), || 5) += 1;
        assert_eq!(
            (m.get("k9"), m.get("new"), m.len()),
            (Some(&110), Some(&6), 1001)
        );
        assert_eq!(m.remove("k7"), Some(7));
        assert_eq!(m.remove("k7"), None, "removed once");
        assert_eq!(m.get("k7"), None);
        assert_eq!(m.len(), 1000);
        for i in 0..1000 {
            m.remove(&format!("k{i}"));
        }
        m.remove("new");
        assert_eq!(m.len(), 0);
    }

    #[test]
    fn no_table_holds_more_than_a_small_part_of_the_entries() {
        // What one rehash moves is one table's entries. A single map of 100,000 entries has a
        // capacity of 114,688; split, each table holds about 400 and the largest has room for
        // a few hundred more.
        let mut m: ShardedMap<u64, ()> = ShardedMap::default();
        for i in 0..100_000u64 {
            m.vacant(i).expect("new key").insert(());
        }
        assert_eq!(m.len(), 100_000);
        let largest = m.largest_capacity();
        assert!(largest <= 1024, "the largest table has room for {largest}");
    }

    #[test]
    fn the_keys_of_one_table_spread_over_its_buckets() {
        // Were a table's hash the one that chose the table, its keys would share their low
        // bits and crowd into a few of its buckets.
        let mut m: ShardedMap<u64, ()> = ShardedMap::default();
        for i in 0..100_000u64 {
            m.vacant(i).expect("new key").insert(());
        }
        let table = &m.tables[0];
        let low_bits: std::collections::HashSet<u64> = table
            .keys()
            .map(|k| table.hasher().hash_one(k) & 0xff)
            .collect();
        assert!(
            low_bits.len() > 128,
            "{} of 256 bucket positions used by {} keys",
            low_bits.len(),
            table.len()
        );
    }
}
