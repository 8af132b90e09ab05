//! The manager's hooks: lists of callbacks run in the order added, the
//! first failure logged and the rest of that event's hooks skipped.

use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::logging::{panic_message, UTILS};
use crate::{AppError, Service, ServiceId, WorkerId};

/// The error a hook returns to say it failed: the same [`AppError`] as
/// service methods return, so `?` works on any error in both.
pub type HookError = AppError;
/// What a hook returns.
///
/// ```
/// fn on_reload() -> cotyledon::HookResult {
///     let text = std::fs::read_to_string("/nonexistent/app.toml")?;
///     if text.is_empty() {
///         return Err("empty configuration".into());
///     }
///     Ok(())
/// }
/// assert!(on_reload().is_err());
/// ```
pub type HookResult = Result<(), HookError>;

/// A hook's failure that the hook already reported itself: the remaining
/// hooks of the event are skipped, and nothing more is logged. A language
/// binding whose hooks log their failures in the runtime's own way (the
/// Python face logs the exception with its traceback, as Cotyledon does)
/// returns it.
///
/// ```
/// let e: cotyledon::HookError = cotyledon::bindings::HookReported.into();
/// assert!(e.is::<cotyledon::bindings::HookReported>());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HookReported;

impl std::fmt::Display for HookReported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the hook failed (reported by the hook)")
    }
}

impl std::error::Error for HookReported {}

pub(crate) type PlainHook = Box<dyn FnMut() -> HookResult + Send>;
pub(crate) type NewWorkerHook =
    Box<dyn FnMut(ServiceId, WorkerId, &dyn Service) -> HookResult + Send>;
pub(crate) type DeadWorkerHook = Box<dyn FnMut(ServiceId, WorkerId, i32) -> HookResult + Send>;

#[derive(Default)]
pub(crate) struct Hooks {
    pub terminate: Vec<PlainHook>,
    pub reload: Vec<PlainHook>,
    pub reload_check: Vec<PlainHook>,
    pub new_worker: Vec<NewWorkerHook>,
    pub dead_worker: Vec<DeadWorkerHook>,
}

impl Hooks {
    /// Moves `later`'s hooks after ours, event by event.
    pub fn append(&mut self, mut later: Hooks) {
        self.terminate.append(&mut later.terminate);
        self.reload.append(&mut later.reload);
        self.reload_check.append(&mut later.reload_check);
        self.new_worker.append(&mut later.new_worker);
        self.dead_worker.append(&mut later.dead_worker);
    }
}

/// Calls `call` on each hook in order; a hook that fails or panics ends
/// the run and is logged as one record on one line, naming the event, the
/// hook's rank and what it was about (`about`, e.g. ` (service echo,
/// worker 1)`, or empty), then the error:
/// `Exception raised during dead_worker hooks: hook 1 of 2 (service echo, worker 1) failed: boom`.
/// A [`HookReported`] failure was logged by the hook itself.
pub(crate) fn run_each<H>(
    name: &str,
    about: impl std::fmt::Display,
    hooks: &mut [H],
    mut call: impl FnMut(&mut H) -> HookResult,
) {
    let count = hooks.len();
    for (rank, hook) in hooks.iter_mut().enumerate() {
        let detail = match catch_unwind(AssertUnwindSafe(|| call(hook))) {
            Ok(Ok(())) => continue,
            Ok(Err(e)) if e.is::<HookReported>() => return,
            Ok(Err(e)) => e.to_string(),
            Err(p) => panic_message(&*p),
        };
        log::error!(
            target: UTILS,
            "Exception raised during {name} hooks: hook {} of {count}{about} failed: {}",
            rank + 1,
            crate::logging::one_line(&detail)
        );
        return;
    }
}

/// Runs the reload checks in order until one refuses (fails or panics);
/// returns its reason.
pub(crate) fn first_refusal(checks: &mut [PlainHook]) -> Option<String> {
    checks
        .iter_mut()
        .find_map(|check| match catch_unwind(AssertUnwindSafe(check)) {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(p) => Some(panic_message(&*p)),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn the_first_check_that_fails_or_panics_refuses_and_ends_the_run() {
        let ran = Arc::new(AtomicUsize::new(0));
        let counted = |result: fn() -> HookResult| -> PlainHook {
            let ran = Arc::clone(&ran);
            Box::new(move || {
                ran.fetch_add(1, Ordering::SeqCst);
                result()
            })
        };
        let mut checks = vec![counted(|| Ok(())), counted(|| Ok(()))];
        assert_eq!(first_refusal(&mut checks), None);
        assert_eq!(ran.swap(0, Ordering::SeqCst), 2);

        checks.push(counted(|| Err("config is bad".into())));
        checks.push(counted(|| Ok(())));
        assert_eq!(first_refusal(&mut checks).as_deref(), Some("config is bad"));
        assert_eq!(ran.swap(0, Ordering::SeqCst), 3, "the fourth did not run");

        let mut panicking = vec![counted(|| panic!("check exploded"))];
        let reason = first_refusal(&mut panicking).expect("a panic refuses");
        assert!(reason.contains("check exploded"), "{reason}");
    }
}
