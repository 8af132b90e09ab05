//! A process-wide slot for a value set without a lock and never freed.

use std::sync::atomic::{AtomicPtr, Ordering};

/// Holds a `&'static T` that may be replaced: each value set is leaked
/// (a few per process at most). No lock, so a process forked while another
/// thread reads it inherits no held lock.
pub(crate) struct LeakedSlot<T>(AtomicPtr<T>);

impl<T: Send + Sync + 'static> LeakedSlot<T> {
    pub(crate) const fn new() -> Self {
        LeakedSlot(AtomicPtr::new(std::ptr::null_mut()))
    }

    /// Sets the value (leaked; an earlier one stays valid for whoever holds
    /// it) and returns it.
    pub(crate) fn set(&self, value: T) -> &'static T {
        let leaked: &'static mut T = Box::leak(Box::new(value));
        self.0.store(leaked, Ordering::Release);
        leaked
    }

    /// The value last set, if any.
    pub(crate) fn get(&self) -> Option<&'static T> {
        let p = self.0.load(Ordering::Acquire);
        // SAFETY: the slot only ever holds null or a pointer from
        // `Box::leak` in `set`, never freed: valid for 'static, and shared
        // references to a `Sync` value may be used from any thread.
        unsafe { p.as_ref() }
    }
}
