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

/// `<progname>: master process [<argv joined by spaces>]`.
pub(crate) fn master_title() -> String {
    let (name, argv) = original();
    format!("{name}: master process [{argv}]")
}

/// `<progname>: init [<argv joined by spaces>]`: the init a manager
/// splits off when it runs as PID 1 (see `crate::init`).
pub(crate) fn init_title() -> String {
    let (name, argv) = original();
    format!("{name}: init [{argv}]")
}

/// `<progname>: <name> worker(<worker_id>)`.
pub(crate) fn worker_title(name: &str, worker_id: usize) -> String {
    format!("{}: {name} worker({worker_id})", program_name())
}

/// Applies `title` as `mode` says.
pub(crate) fn set(mode: TitleMode, title: &str) {
    match mode {
        TitleMode::Off => {}
        TitleMode::Comm => crate::sys::set_comm_name(title),
        TitleMode::Full => {
            crate::sys::set_comm_name(title);
            if let Err(e) = crate::sys::set_argv_title(title) {
                log::trace!("argv title not set: {e}");
            }
        }
    }
}
