//! Live handles. A handle given to C is the address of an `Arc` kept in a
//! registry; every call looks it up, so a freed, foreign or NULL handle is
//! an error code rather than a use-after-free.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::{cotyledon_result, Failure};

pub(crate) struct Registry<T> {
    what: &'static str,
    live: Mutex<BTreeMap<usize, Arc<T>>>,
}

impl<T> Registry<T> {
    pub(crate) const fn new(what: &'static str) -> Self {
        Registry {
            what,
            live: Mutex::new(BTreeMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<usize, Arc<T>>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers `value`; returns its handle (never 0).
    pub(crate) fn insert(&self, value: T) -> usize {
        let arc = Arc::new(value);
        let key = Arc::as_ptr(&arc) as usize;
        self.lock().insert(key, arc);
        key
    }

    /// The value behind `handle`.
    pub(crate) fn get<P>(&self, handle: *const P) -> Result<Arc<T>, Failure> {
        if handle.is_null() {
            return Err(Failure::null(self.what));
        }
        self.lock().get(&(handle as usize)).cloned().ok_or_else(|| {
            Failure::new(
                cotyledon_result::InvalidHandle,
                format!("{handle:p} is not a live {} handle", self.what),
            )
        })
    }

    /// Unregisters `handle`; the value lives on while calls still use it.
    pub(crate) fn remove<P>(&self, handle: *const P) -> Result<Arc<T>, Failure> {
        let value = self.get(handle)?;
        self.lock().remove(&(handle as usize));
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_live_handles_resolve() {
        static R: Registry<u32> = Registry::new("thing");
        let h = R.insert(7) as *const u8;
        assert_eq!(*R.get(h).unwrap(), 7);
        assert_eq!(
            R.get(std::ptr::null::<u8>()).unwrap_err().code,
            cotyledon_result::NullParameter
        );
        assert!(R.remove(h).is_ok());
        let e = R.get(h).unwrap_err();
        assert_eq!(e.code, cotyledon_result::InvalidHandle);
        assert!(e.message.ends_with("is not a live thing handle"));
        assert!(R.remove(h).is_err());
    }
}
