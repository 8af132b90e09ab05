//! The signals the engine owns, turned into flags plus a byte on a
//! self-pipe, so that one `poll()` waits on signals and timers at once.

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM};
use signal_hook::SigId;

/// A signal the engine reacts to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sig {
    Term,
    Int,
    Hup,
    Chld,
}

impl Sig {
    const ALL: [Sig; 4] = [Sig::Term, Sig::Int, Sig::Hup, Sig::Chld];

    fn number(self) -> i32 {
        match self {
            Sig::Term => SIGTERM,
            Sig::Int => SIGINT,
            Sig::Hup => SIGHUP,
            Sig::Chld => SIGCHLD,
        }
    }
}

/// Registered handlers: each sets its flag, then writes a byte to the
/// wake pipe. Dropping it unregisters them.
pub(crate) struct SignalFlags {
    flags: [Arc<AtomicBool>; 4],
    ids: Vec<SigId>,
    /// The kernel's handler for each signal once ours was installed.
    installed: [usize; 4],
}

impl SignalFlags {
    /// Installs the handlers; `wake_fd` is the write end of the self-pipe.
    pub(crate) fn register(wake_fd: RawFd) -> io::Result<Self> {
        outside_run()?.store(false, Ordering::Release);
        let flags: [Arc<AtomicBool>; 4] = Default::default();
        let mut ids = Vec::with_capacity(4);
        let mut out = SignalFlags {
            flags,
            ids: Vec::new(),
            installed: [0; 4],
        };
        for sig in Sig::ALL {
            ids.push(crate::sys::on_signal(
                sig.number(),
                Arc::clone(&out.flags[sig as usize]),
                wake_fd,
            )?);
        }
        out.ids = ids;
        out.installed = Sig::ALL.map(|sig| crate::sys::installed_handler(sig.number()));
        Ok(out)
    }

    /// Whether `byte`, read from the self-pipe, is only the echo of one of
    /// our signals: signal-hook chains the handler that was installed
    /// before ours, and CPython's (the Python face records SIGTERM, SIGINT
    /// and SIGHUP until the engine runs) writes the signal number to its
    /// wakeup fd. While our handler is still the kernel's, the engine has
    /// that signal in hand; once the application replaced it, the byte is
    /// the application's to act on.
    pub(crate) fn echoes(&self, byte: u8) -> bool {
        Sig::ALL.iter().any(|&sig| {
            sig.number() == i32::from(byte)
                && crate::sys::installed_handler(sig.number()) == self.installed[sig as usize]
        })
    }

    /// Returns whether `sig` arrived since the last call, and clears it.
    pub(crate) fn take(&self, sig: Sig) -> bool {
        // Read before the swap: the loop asks after every fork, and a
        // write would copy the flag's page for each new worker.
        let flag = &self.flags[sig as usize];
        flag.load(Ordering::Acquire) && flag.swap(false, Ordering::AcqRel)
    }

    /// Forgets every signal seen so far (a new worker starts clean).
    pub(crate) fn clear(&self) {
        for f in &self.flags {
            f.store(false, Ordering::Release);
        }
    }
}

impl Drop for SignalFlags {
    fn drop(&mut self) {
        for id in self.ids.drain(..) {
            signal_hook::low_level::unregister(id);
        }
        if let Some(flag) = OUTSIDE_RUN.get() {
            flag.store(true, Ordering::Release);
        }
    }
}

static OUTSIDE_RUN: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// Once a handler is installed it stays (signal-hook never uninstalls
/// one), so outside `run()` SIGTERM, SIGINT and SIGHUP would be swallowed.
/// A permanent action gives them back their default effect (ending the
/// process) whenever no `run()` is in progress.
fn outside_run() -> io::Result<&'static Arc<AtomicBool>> {
    if let Some(flag) = OUTSIDE_RUN.get() {
        return Ok(flag);
    }
    let flag = Arc::new(AtomicBool::new(true));
    for sig in [SIGTERM, SIGINT, SIGHUP] {
        signal_hook::flag::register_conditional_default(sig, Arc::clone(&flag))?;
    }
    Ok(OUTSIDE_RUN.get_or_init(|| flag))
}

/// For the init split off at creation (`crate::init`): its handlers stay
/// for good, so the default effect given back outside `run()` (to a
/// process that ran a manager before) must never fire there.
pub(crate) fn never_outside_run() {
    if let Some(flag) = OUTSIDE_RUN.get() {
        flag.store(false, Ordering::Release);
    }
}

/// The name of a signal number, as `kill -l` spells it (`SIGKILL`), or the
/// number itself when it has none.
pub fn signal_name(sig: i32) -> String {
    match nix::sys::signal::Signal::try_from(sig) {
        Ok(s) => s.as_str().to_string(),
        Err(_) => sig.to_string(),
    }
}

impl SignalFlags {
    /// Whether any signal is waiting to be handled (without clearing it).
    pub(crate) fn any_pending(&self) -> bool {
        self.flags.iter().any(|f| f.load(Ordering::Acquire))
    }
}
