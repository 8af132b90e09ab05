"""Processes forked from inside a worker: from ``run()``, ``reload()`` and
``terminate()``, which run on threads Python knows only as dummy threads
once they logged; and from a hook of the master. Their exit statuses are
those their code gives, and ``multiprocessing`` (a Process, a Pool),
``concurrent.futures`` and ``subprocess`` work there, as in any Python
program (issue #15, section 2)."""

from __future__ import annotations

import signal

import pytest

from test_lifecycle import running_workers

EXPECTED = {
    "mp": "0",
    "pool": "3",
    "executor": "7",
    "fork_exit": "3",
    "subprocess": "0",
}


def forked_events(app) -> list[dict[str, str]]:
    """The 'forked' events of run(), the master's hook and reload() (on
    SIGHUP), terminate() (on SIGTERM), in that order; the master exits 0."""
    running_workers(app, "forking", 1)
    events = [app.event("forked", where="run", timeout=30)]
    app.signal(signal.SIGHUP)
    events.append(app.event("forked", where="reload", timeout=30))
    # The master's hook: its os.fork() child leaves on sys.exit(3) rather
    # than go on as a second master.
    hook = app.event("forked", where="hook", timeout=30)
    assert hook["pid"] == str(app.pid)
    events.append(hook)
    app.signal(signal.SIGTERM)
    events.append(app.event("forked", where="terminate", timeout=30))
    assert app.wait_exit(30) == 0
    app.wait_group_gone()
    return events


def test_children_of_run_reload_terminate_and_hooks_exit_as_their_code_says(start_app):
    for event in forked_events(start_app("grandchildren")):
        assert {k: event[k] for k in EXPECTED} == EXPECTED, event


@pytest.mark.ours_only(
    reason="the reference's children inherit its SIGTERM handler: Process.terminate() "
    "does not end a process forked in run(), reload(), terminate() or a hook"
)
def test_process_terminate_ends_the_children(start_app):
    for event in forked_events(start_app("grandchildren", "terminate")):
        assert event["mp_terminated"] == str(-signal.SIGTERM), event
