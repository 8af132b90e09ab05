//! Process titles: what `ps` and `top` show for the master and workers.

use std::sync::OnceLock;

/// How the engine sets process titles.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TitleMode {
    /// Leave titles alone (the Python face sets them with `setproctitle`).
    Off,
    /// Set the kernel's process name (`/proc/PID/comm`, 15 bytes), shown by
    /// `ps -e`, `top` and `pgrep`. The default.
    #[default]
    Comm,
    /// The process name and also the argv area shown by `ps -f`. This
    /// overwrites the memory `std::env::args()` reads, so later calls return
    /// the title: opt in only when that is fine.
    Full,
}

/// The program's name and command line, read once, before any title
/// overwrites the argv area they come from.
fn original() -> &'static (String, String) {
    static ORIGINAL: OnceLock<(String, String)> = OnceLock::new();
    ORIGINAL.get_or_init(|| {
        let argv: Vec<String> = std::env::args_os()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        (read_program_name(), argv.join(" "))
    })
}

/// The program's name: the base name of `argv[0]`.
pub(crate) fn program_name() -> String {
    original().0.clone()
}

fn read_program_name() -> String {
    std::env::args_os()
        .next()
        .map(|a| {
            std::path::Path::new(&a)
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_else(|| a.to_string_lossy().into_owned())
        })
        .unwrap_or_default()
}

/// The longest process name the kernel keeps (`/proc/PID/comm`).
const COMM_LEN: usize = 15;

/// A title: in full for the command line (`ps -f`), and cut to the
/// kernel's 15 bytes for the process name (`ps -e`, `top`, `pgrep`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Title {
    pub full: String,
    pub comm: String,
}

/// `<progname>: master process [<argv joined by spaces>]`; for the
/// kernel, its start (the program's name first: `pgrep <progname>` finds
/// the master).
pub(crate) fn master_title() -> Title {
    let (name, argv) = original();
    let full = format!("{name}: master process [{argv}]");
    Title {
        comm: cut(&full, COMM_LEN).to_string(),
        full,
    }
}

/// `<progname>: <name> worker(<worker_id>)`. For the kernel's 15 bytes
/// the program's name goes first, then the service's name is shortened:
/// the worker id always shows (`api worker(12)`, `very-long-se(12)`).
pub(crate) fn worker_title(name: &str, worker_id: usize) -> Title {
    Title {
        full: format!("{}: {name} worker({worker_id})", program_name()),
        comm: worker_comm(name, worker_id),
    }
}

fn worker_comm(name: &str, worker_id: usize) -> String {
    let bare = format!("{name} worker({worker_id})");
    let with_prog = format!("{}: {bare}", program_name());
    if with_prog.len() <= COMM_LEN {
        return with_prog;
    }
    if bare.len() <= COMM_LEN {
        return bare;
    }
    for suffix in [format!(" worker({worker_id})"), format!("({worker_id})")] {
        if let Some(room) = COMM_LEN.checked_sub(suffix.len()).filter(|r| *r >= 3) {
            return format!("{}{suffix}", cut(name, room));
        }
    }
    cut(&format!("({worker_id})"), COMM_LEN).to_string()
}

/// `text` cut to at most `len` bytes, on a character boundary.
fn cut(text: &str, len: usize) -> &str {
    let mut end = text.len().min(len);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Applies `title` as `mode` says.
pub(crate) fn set(mode: TitleMode, title: &Title) {
    match mode {
        TitleMode::Off => {}
        TitleMode::Comm => crate::sys::set_comm_name(&title.comm),
        TitleMode::Full => {
            crate::sys::set_comm_name(&title.comm);
            if let Err(e) = crate::sys::set_argv_title(&title.full) {
                log::trace!("argv title not set: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_workers_name_keeps_its_id_when_cut() {
        // The program's name goes first (test binaries have long ones).
        assert_eq!(worker_comm("echo", 0), "echo worker(0)");
        assert_eq!(worker_comm("jobs", 12), "jobs worker(12)");
        // Then the service's name is shortened, never the id.
        assert_eq!(worker_comm("metricd", 3), "metri worker(3)");
        assert_eq!(worker_comm("processor", 1234), "processor(1234)");
        assert_eq!(
            worker_comm("a-very-long-service", 123456),
            "a-very-(123456)"
        );
        // Multi-byte names are cut on a character boundary.
        let c = worker_comm("ééééééééé", 7);
        assert!(c.ends_with(" worker(7)") && c.len() <= 15, "{c}");
    }
}
