//! Signing a run's PDFs as its merchant (see [`documents`]), and the merchants' keys as last
//! read from Vault.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use docbundle_domain::MerchantId;
use docbundle_infra::secrets::DocumentKey;

#[cfg(feature = "pdf")]
pub(crate) mod documents;

/// How long a merchant's key and chain are reused before Vault is asked again.
const KEY_CACHE: Duration = Duration::from_secs(300);

/// The merchants' keys as last read, per function instance.
#[derive(Debug, Default)]
pub struct SigningKeys(Mutex<HashMap<MerchantId, (Instant, DocumentKey)>>);

impl SigningKeys {
    #[cfg_attr(not(feature = "pdf"), allow(dead_code))]
    fn get(&self, merchant: MerchantId) -> Option<DocumentKey> {
        let cached = self.0.lock().ok()?;
        let (at, key) = cached.get(&merchant)?;
        (at.elapsed() < KEY_CACHE).then(|| key.clone())
    }

    #[cfg_attr(not(feature = "pdf"), allow(dead_code))]
    fn put(&self, merchant: MerchantId, key: DocumentKey) {
        if let Ok(mut cached) = self.0.lock() {
            cached.insert(merchant, (Instant::now(), key));
        }
    }

    #[cfg_attr(not(feature = "pdf"), allow(dead_code))]
    fn forget(&self, merchant: MerchantId) {
        if let Ok(mut cached) = self.0.lock() {
            cached.remove(&merchant);
        }
    }
}
