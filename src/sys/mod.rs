//! Every `unsafe` call of the crate lives here, each behind a small safe
//! function whose comment says why it is sound. The crate root denies
//! `unsafe_code` everywhere else.
//!
//! - [`fork`]: `fork(2)`, the signal mask around it, `_exit`.
//! - [`signals`]: signal handlers and the parent-death signal.
//! - [`fds`]: pipes, the self-pipe byte protocol.
//! - [`proc`]: `/proc` and process attributes (threads, children, names,
//!   process group members).
//! - [`env`]: the process environment.
//! - [`slot`]: a lock-free, never-freed process-wide value.

mod env;
mod fds;
mod fork;
mod proc;
mod signals;
mod slot;

pub(crate) use env::strip_after_fork;
pub(crate) use fds::{
    adopt_inherited_fd, cloexec_pipe, close_fds_except, drain, nonblocking_pipe, pidfd_open, poke,
    read_available, renew_pipe_in_place, set_cloexec, write_bytes,
};
pub(crate) use fork::{
    block_all_signals, exit_now, fork_raw, restore_signal_mask, unblock_all_signals, Forked,
};

pub(crate) use proc::{children_of_this_thread, set_argv_title, set_comm_name, thread_count};
pub(crate) use proc::{
    descendants, foreground_group, group_members, has_children, live_group_members,
};
pub(crate) use signals::{
    installed_handler, on_signal, set_child_subreaper, set_parent_death_signal,
};
pub(crate) use slot::LeakedSlot;
