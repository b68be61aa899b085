//! The set of endpoints, read lock-free on every request and changed (create, delete) by the
//! control plane with one atomic store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use super::Endpoint;

#[derive(Default)]
pub struct Endpoints {
    map: ArcSwap<HashMap<String, Arc<Endpoint>>>,
    /// Writers take turns so a check-then-insert is atomic.
    write: Mutex<()>,
}

impl Endpoints {
    pub fn new(endpoints: impl IntoIterator<Item = Arc<Endpoint>>) -> Self {
        Self {
            map: ArcSwap::from_pointee(
                endpoints.into_iter().map(|e| (e.name.clone(), e)).collect(),
            ),
            write: Mutex::new(()),
        }
    }

    pub fn get(&self, name: &str) -> Option<Arc<Endpoint>> {
        self.map.load().get(name).cloned()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.map.load().contains_key(name)
    }

    pub fn len(&self) -> usize {
        self.map.load().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every endpoint, sorted by name.
    pub fn list(&self) -> Vec<Arc<Endpoint>> {
        let mut v: Vec<Arc<Endpoint>> = self.map.load().values().cloned().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// The only endpoint, when there is exactly one.
    pub fn sole(&self) -> Option<Arc<Endpoint>> {
        let map = self.map.load();
        (map.len() == 1)
            .then(|| map.values().next().cloned())
            .flatten()
    }

    /// Adds `endpoint`; false (and nothing changes) when the name is taken.
    pub fn insert(&self, endpoint: Arc<Endpoint>) -> bool {
        let _turn = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.map.load_full();
        if current.contains_key(&endpoint.name) {
            return false;
        }
        let mut next = (*current).clone();
        next.insert(endpoint.name.clone(), endpoint);
        self.map.store(Arc::new(next));
        true
    }

    pub fn remove(&self, name: &str) -> Option<Arc<Endpoint>> {
        let _turn = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.map.load_full();
        let mut next = (*current).clone();
        let removed = next.remove(name);
        if removed.is_some() {
            self.map.store(Arc::new(next));
        }
        removed
    }

    /// Is `endpoint` (this very one, not a later one of the same name) still in the set?
    pub fn holds(&self, endpoint: &Arc<Endpoint>) -> bool {
        self.map
            .load()
            .get(&endpoint.name)
            .is_some_and(|e| Arc::ptr_eq(e, endpoint))
    }
}
