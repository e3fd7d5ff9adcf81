//! The configuration versions runs are rendered from, kept in this process. A version never
//! changes once made (an update makes the next version; archiving a configuration keeps its
//! versions), so a run of a version read before costs no query: a batch of 100,000 runs of one
//! version reads it once per worker instance, not once per run. Bounded: the most recently
//! used [`KEPT`] versions.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use docbundle_domain::MerchantId;
use docbundle_infra::db::configurations::{self, ConfigurationVersion};
use docbundle_infra::db::DbPool;
use docbundle_infra::error::DependencyError;
use uuid::Uuid;

/// Versions kept.
pub const KEPT: usize = 32;

type Key = (MerchantId, Uuid, i32);

pub struct Versions(Mutex<lru::LruCache<Key, Arc<ConfigurationVersion>>>);

impl std::fmt::Debug for Versions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Versions").finish_non_exhaustive()
    }
}

impl Default for Versions {
    fn default() -> Self {
        Versions(Mutex::new(lru::LruCache::new(
            NonZeroUsize::new(KEPT).unwrap_or(NonZeroUsize::MIN),
        )))
    }
}

impl Versions {
    /// Version `number` of the merchant's configuration `id`; `None` when there is none
    /// (which is not kept: it may be made later).
    pub async fn find(
        &self,
        db: &DbPool,
        merchant: MerchantId,
        id: Uuid,
        number: i32,
    ) -> Result<Option<Arc<ConfigurationVersion>>, DependencyError> {
        let key = (merchant, id, number);
        if let Some(kept) = self.lock().get(&key) {
            return Ok(Some(kept.clone()));
        }
        let Some(found) = configurations::find_version(db, merchant, id, number).await? else {
            return Ok(None);
        };
        let found = Arc::new(found);
        self.lock().put(key, found.clone());
        Ok(Some(found))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, lru::LruCache<Key, Arc<ConfigurationVersion>>> {
        // A panic elsewhere while holding it leaves a cache, not a broken invariant.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
