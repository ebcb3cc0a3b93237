//! The rows of a list at one version, compressed at most once however many
//! hellos, `system-presence` replies and HTTP answers carry them.
//!
//! A list is `[` + the self entry (whose `ts` every answer refreshes) +
//! the other rows + `]`. Only the other rows are the same in every answer
//! at a version, so they are what is shared: each answer writes its own
//! self entry (a few hundred bytes, as stored blocks when compressed) and
//! splices the shared rows after it.

use super::deflate::{Deflated, deflate_sync};
use bytes::Bytes;
use std::sync::{Arc, Mutex, OnceLock};

/// The rows after the self entry of the list at `version`.
#[derive(Debug)]
pub struct SharedRows {
    version: u64,
    plain: Bytes,
    deflated: OnceLock<Deflated>,
}

impl SharedRows {
    /// Rows `plain` (each preceded by a comma) of the list at `version`.
    pub fn new(version: u64, plain: Bytes) -> SharedRows {
        SharedRows {
            version,
            plain,
            deflated: OnceLock::new(),
        }
    }

    /// The version the rows are from.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The rows as JSON.
    pub fn plain(&self) -> &Bytes {
        &self.plain
    }

    /// The rows compressed, made by the first caller.
    pub fn deflated(&self) -> &Deflated {
        self.deflated.get_or_init(|| deflate_sync(&self.plain))
    }
}

/// Versions whose rows are kept: the current one and a few before it,
/// for answers rendered while a newer list is published.
const KEPT: usize = 4;

/// The shared rows of the last few versions.
#[derive(Debug, Default)]
pub struct RowsCache {
    recent: Mutex<Vec<Arc<SharedRows>>>,
}

impl RowsCache {
    /// The shared rows at `version`; `rows` gives them when the version
    /// is not held yet.
    pub fn get(&self, version: u64, rows: impl FnOnce() -> Bytes) -> Arc<SharedRows> {
        // Nothing is left half-updated under the lock: a poisoned lock is
        // still consistent.
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(held) = recent.iter().find(|r| r.version == version) {
            return Arc::clone(held);
        }
        let fresh = Arc::new(SharedRows::new(version, rows()));
        if recent.len() >= KEPT {
            let oldest = (0..recent.len())
                .min_by_key(|&i| recent[i].version)
                .expect("the cache is not empty");
            recent.swap_remove(oldest);
        }
        recent.push(Arc::clone(&fresh));
        fresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_is_compressed_once_and_old_ones_are_dropped() {
        let cache = RowsCache::default();
        let first = cache.get(1, || Bytes::from_static(b",{\"a\":1}"));
        let again = cache.get(1, || unreachable!("version 1 is held"));
        assert!(Arc::ptr_eq(&first, &again));
        assert!(std::ptr::eq(first.deflated(), again.deflated()));
        for v in 2..=5 {
            cache.get(v, || Bytes::from_static(b""));
        }
        let refetched = cache.get(1, || Bytes::from_static(b",{\"a\":2}"));
        assert!(!Arc::ptr_eq(&first, &refetched), "the oldest was dropped");
    }
}
