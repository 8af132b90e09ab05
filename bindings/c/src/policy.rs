//! `cotyledon_policy`: a service's restart policy.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use cotyledon::{Backoff, GiveUp, Restart, ServicePolicy};

use crate::boundary::{ffi, guard};
use crate::error::{cotyledon_result, Failure};
use crate::registry::Registry;

/// A service's restart policy (opaque): whether its ended workers are
/// started again, their backoff, when to give up, whether the manager
/// stops once the service has no worker left. Create it with
/// `cotyledon_policy_new` (the contract's behaviour: every worker
/// respawned, the shared fork-rate limiter), change it with the
/// `cotyledon_policy_set_*` functions, give it to
/// `cotyledon_manager_set_policy` (which copies it), free it with
/// `cotyledon_policy_free`.
///
/// What counts: exits the engine caused (a worker the master sent SIGTERM:
/// a scale-down, `cotyledon_manager_restart_worker`, a stop) or that the
/// worker announced as a restart (the default `reload`, or
/// `cotyledon_announce_restart`) are restarts, whatever the policy says.
/// Only other exits count for it; a failure is a nonzero status, a signal
/// or a lost status.
pub struct cotyledon_policy {
    _private: [u8; 0],
}

/// When a worker that ended is started again.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum cotyledon_restart {
    /// Always (the default, the contract's behaviour).
    Always = 0,
    /// After a failure only: a worker that exits with status 0 is not
    /// respawned; its id shows as finished in the status.
    OnFailure = 1,
    /// Never (restarts the engine causes aside).
    Never = 2,
}

pub(crate) struct Policy {
    policy: Mutex<ServicePolicy>,
}

impl Policy {
    pub(crate) fn get(&self) -> ServicePolicy {
        *self.lock()
    }

    fn lock(&self) -> MutexGuard<'_, ServicePolicy> {
        self.policy.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub(crate) static POLICIES: Registry<Policy> = Registry::new("policy");

fn with_policy(
    policy: *mut cotyledon_policy,
    f: impl FnOnce(&mut ServicePolicy) -> Result<(), Failure>,
) -> cotyledon_result {
    ffi(|| {
        let p = POLICIES.get(policy)?;
        let mut current = p.lock();
        // Checked on a copy: a refused change leaves the policy as it was.
        let mut next = *current;
        f(&mut next)?;
        next.check()?;
        *current = next;
        Ok(())
    })
}

/// Creates a policy with the contract's behaviour: restart always, no
/// backoff (the fork-rate limiter), no give-up, no stop on exit.
///
/// On success writes a new handle to `*out`, owned by the caller, who frees
/// it with `cotyledon_policy_free`. Errors: `NULL_PARAMETER` (`out`).
#[no_mangle]
pub extern "C" fn cotyledon_policy_new(out: *mut *mut cotyledon_policy) -> cotyledon_result {
    ffi(|| {
        if out.is_null() {
            return Err(Failure::null("out"));
        }
        let handle = POLICIES.insert(Policy {
            policy: Mutex::new(ServicePolicy::default()),
        });
        // SAFETY: `out` is non-NULL and points to writable memory (caller).
        unsafe { *out = handle as *mut cotyledon_policy };
        Ok(())
    })
}

/// Frees a policy. NULL and handles that are not live are ignored. The
/// services it was given to keep their copy.
#[no_mangle]
pub extern "C" fn cotyledon_policy_free(policy: *mut cotyledon_policy) {
    guard(|| {
        if !policy.is_null() {
            let _ = ffi(|| POLICIES.remove(policy).map(drop));
        }
    })
}

/// When ended workers are started again (a `cotyledon_restart` value).
/// Errors: `NULL_PARAMETER`, `INVALID_HANDLE`, `INVALID_ARGUMENT` (not a
/// `cotyledon_restart` value).
#[no_mangle]
pub extern "C" fn cotyledon_policy_set_restart(
    policy: *mut cotyledon_policy,
    restart: u32,
) -> cotyledon_result {
    with_policy(policy, |p| {
        p.restart = match restart {
            0 => Restart::Always,
            1 => Restart::OnFailure,
            2 => Restart::Never,
            other => {
                return Err(Failure::new(
                    cotyledon_result::InvalidArgument,
                    format!("restart must be COTYLEDON_RESTART_ALWAYS, _ON_FAILURE or _NEVER (0 to 2), not: {other}"),
                ))
            }
        };
        Ok(())
    })
}

/// Whether the manager stops, gracefully, once the service has no worker
/// left (every id finished; see `cotyledon_restart`). `cotyledon_manager_run`
/// then returns `COTYLEDON_RESULT_STOPPED` with the exit status of the last
/// of the service's final exits that failed (128 + N for signal N), or
/// `COTYLEDON_RESULT_OK` when none did; `cotyledon_manager_exit_status`
/// gives the status. Default false. Errors: `NULL_PARAMETER`,
/// `INVALID_HANDLE`.
#[no_mangle]
pub extern "C" fn cotyledon_policy_set_stop_on_exit(
    policy: *mut cotyledon_policy,
    stop_on_exit: bool,
) -> cotyledon_result {
    with_policy(policy, |p| {
        p.stop_on_exit = stop_on_exit;
        Ok(())
    })
}

/// Exponential backoff of each worker id's respawns, in milliseconds: the
/// n-th counted exit in a row waits `min(max, base × 2^(n-1))`, less a
/// random part (`cotyledon_policy_set_backoff_jitter`, default 0.1); the
/// count resets once a process of the id ran `stable_ms` (0: 10000). On a
/// service that has it, the backoff replaces the fork-rate limiter; it
/// never delays other services, signals or commands. `base_ms` 0 removes
/// the backoff (the limiter governs the service again).
///
/// Errors: `NULL_PARAMETER`, `INVALID_HANDLE`, `INVALID_ARGUMENT`
/// (`max_ms` below `base_ms`).
#[no_mangle]
pub extern "C" fn cotyledon_policy_set_backoff_ms(
    policy: *mut cotyledon_policy,
    base_ms: u64,
    max_ms: u64,
    stable_ms: u64,
) -> cotyledon_result {
    with_policy(policy, |p| {
        if base_ms == 0 {
            p.backoff = None;
            return Ok(());
        }
        let ms = Duration::from_millis;
        let jitter = p.backoff.map_or(0.1, |b| b.jitter);
        let mut b = Backoff::new(ms(base_ms), ms(max_ms)).jitter(jitter);
        if stable_ms > 0 {
            b = b.stable(ms(stable_ms));
        }
        p.backoff = Some(b);
        Ok(())
    })
}

/// The random part of each backoff wait, from 0 to 1 excluded (default
/// 0.1): a wait `d` becomes a wait drawn from `[d × (1 - jitter), d]`.
/// Errors: `NULL_PARAMETER`, `INVALID_HANDLE`, `INVALID_ARGUMENT` (out of
/// range, NaN, or no backoff set yet).
#[no_mangle]
pub extern "C" fn cotyledon_policy_set_backoff_jitter(
    policy: *mut cotyledon_policy,
    jitter: f64,
) -> cotyledon_result {
    with_policy(policy, |p| {
        let b = p.backoff.as_mut().ok_or_else(|| {
            Failure::new(
                cotyledon_result::InvalidArgument,
                "set the backoff (cotyledon_policy_set_backoff_ms) before its jitter",
            )
        })?;
        *b = b.jitter(jitter);
        Ok(())
    })
}

/// Give up: `failures` failures of the service's workers within
/// `window_ms` stop the manager, gracefully, and `cotyledon_manager_run`
/// returns `COTYLEDON_RESULT_STOPPED` with exit status
/// `COTYLEDON_GIVE_UP_STATUS` (125). `failures` 0 removes the rule.
/// Errors: `NULL_PARAMETER`, `INVALID_HANDLE`, `INVALID_ARGUMENT`
/// (`window_ms` 0).
#[no_mangle]
pub extern "C" fn cotyledon_policy_set_give_up(
    policy: *mut cotyledon_policy,
    failures: u32,
    window_ms: u64,
) -> cotyledon_result {
    with_policy(policy, |p| {
        p.give_up = (failures > 0).then(|| GiveUp::new(failures, Duration::from_millis(window_ms)));
        Ok(())
    })
}
