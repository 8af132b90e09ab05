//! Live handles. A handle given to C is a token: a number drawn from one
//! process-wide counter, never reused, that keys an `Arc` in a registry.
//! Every call looks it up, so a freed, foreign or NULL handle is an error
//! code rather than a use-after-free. Keying by token rather than by the
//! `Arc`'s address means a freed handle stays dead even when a new object
//! is allocated at the same address, and one counter for every registry
//! means a handle of one kind (a config) is never a live handle of another
//! (a manager).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::{cotyledon_result, Failure};

// Tokens are never dereferenced, and are chosen so they are never the
// address of anything, so no real pointer handed over by mistake (a
// `char *`, a struct, a handle's own memory) can match a live token:
// - they are odd, so not the address of any object aligned to 2 or more
//   (every Rust allocation, most C objects);
// - on 64-bit targets their top 16 bits are the tag 0xC07E, which makes
//   them non-canonical on x86-64 (4- and 5-level paging) and RISC-V, and
//   outside the user range on AArch64 even with top-byte-ignore: never a
//   mapped user-space address.
// The serial sits between the tag and the odd bit.
#[cfg(target_pointer_width = "64")]
const TAG: usize = 0xC07E_0000_0000_0000;
#[cfg(target_pointer_width = "64")]
const SERIAL_BITS: u32 = 47;
#[cfg(not(target_pointer_width = "64"))]
const TAG: usize = 0;
#[cfg(not(target_pointer_width = "64"))]
const SERIAL_BITS: u32 = usize::BITS - 1;

/// The serial of the next token, shared by every registry.
static NEXT_SERIAL: AtomicUsize = AtomicUsize::new(0);

/// A fresh token: non-zero, odd, tagged, never given before in this
/// process. Panics (`COTYLEDON_RESULT_PANIC` at the boundary) rather than
/// wrap around once every serial was used (2^47 handles on 64-bit targets).
fn next_token() -> usize {
    let serial = NEXT_SERIAL
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
            (n < (1 << SERIAL_BITS) - 1).then_some(n + 1)
        })
        .expect("handle tokens exhausted");
    TAG | (serial << 1) | 1
}

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

    /// Registers `value`; returns its handle, a fresh token (never 0, never
    /// reused, never an address): cast it to the opaque pointer type.
    pub(crate) fn insert(&self, value: T) -> usize {
        let token = next_token();
        self.lock().insert(token, Arc::new(value));
        token
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
    use std::collections::HashSet;

    fn is_token(h: usize) -> bool {
        h != 0 && h & 1 == 1 && h & !((1 << (SERIAL_BITS + 1)) - 1) == TAG
    }

    #[test]
    fn only_live_handles_resolve() {
        static R: Registry<u32> = Registry::new("thing");
        let token = R.insert(7);
        assert!(is_token(token), "{token:#x}");
        let h = token as *const u8;
        assert_eq!(*R.get(h).unwrap(), 7);
        assert_eq!(
            R.get(std::ptr::null::<u8>()).unwrap_err().code,
            cotyledon_result::NullParameter
        );
        // the address of the value is not a handle
        let addr = Arc::as_ptr(&R.get(h).unwrap());
        assert_eq!(
            R.get(addr).unwrap_err().code,
            cotyledon_result::InvalidHandle
        );
        assert_eq!(*R.remove(h).unwrap(), 7);
        let e = R.get(h).unwrap_err();
        assert_eq!(e.code, cotyledon_result::InvalidHandle);
        assert!(e.message.ends_with("is not a live thing handle"));
        assert_eq!(
            R.remove(h).unwrap_err().code,
            cotyledon_result::InvalidHandle
        );
        assert_eq!(
            R.remove(std::ptr::null::<u8>()).unwrap_err().code,
            cotyledon_result::NullParameter
        );
    }

    #[test]
    fn freed_handles_stay_dead_when_addresses_are_reused() {
        static R: Registry<[u64; 4]> = Registry::new("thing");
        let mut stale = Vec::new();
        let mut seen = HashSet::new();
        let mut h = R.insert([0; 4]) as *const u8;
        for i in 1..=1000u64 {
            assert!(seen.insert(h as usize), "token {h:p} given twice");
            // free (the last reference: the allocation is released), then
            // create a value of the same size, which the allocator tends to
            // put at the same address: a registry keyed by address would
            // resolve the stale handle to the new value
            R.remove(h).unwrap();
            stale.push(h);
            h = R.insert([i; 4]) as *const u8;
            assert!(is_token(h as usize), "{h:p}");
            assert_eq!(*R.get(h).unwrap(), [i; 4]);
            for &old in &stale {
                let e = R.get(old).unwrap_err();
                assert_eq!(e.code, cotyledon_result::InvalidHandle, "{old:p}");
            }
        }
        R.remove(h).unwrap();
    }

    #[test]
    fn a_handle_of_one_registry_is_not_live_in_another() {
        static A: Registry<u32> = Registry::new("config");
        static B: Registry<u32> = Registry::new("manager");
        let a = A.insert(1) as *const u8;
        let b = B.insert(2) as *const u8;
        assert_ne!(a, b);
        let e = B.get(a).unwrap_err();
        assert_eq!(e.code, cotyledon_result::InvalidHandle);
        assert!(e.message.ends_with("is not a live manager handle"));
        assert_eq!(A.get(b).unwrap_err().code, cotyledon_result::InvalidHandle);
        assert!(B.remove(a).is_err());
        assert_eq!(*A.get(a).unwrap(), 1); // untouched by the wrong remove
        A.remove(a).unwrap();
        B.remove(b).unwrap();
    }
}
