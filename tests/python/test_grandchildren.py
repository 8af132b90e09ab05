"""Processes forked from inside a worker: from ``run()``, ``reload()`` and
``terminate()``, which run on threads Python knows only as dummy threads
once they logged; and from a hook of the master. ``multiprocessing`` (a
Process, its terminate(), a Pool), ``concurrent.futures`` and
``subprocess`` work in them as in any Python program. Their exit statuses are those their code gives, as in
any Python program (issue #15, section 2)."""

from __future__ import annotations

import signal

from test_lifecycle import running_workers


def test_children_of_run_reload_terminate_exit_as_their_code_says(start_app):
    app = start_app("grandchildren")
    running_workers(app, "forking", 1)
    expected = {
        "mp": "0",
        "mp_terminated": str(-signal.SIGTERM),
        "pool": "3",
        "executor": "7",
        "fork_exit": "3",
        "subprocess": "0",
    }
    run = app.event("forked", where="run", timeout=30)
    assert {k: run[k] for k in expected} == expected, run
    app.signal(signal.SIGHUP)
    reload = app.event("forked", where="reload", timeout=30)
    assert {k: reload[k] for k in expected} == expected, reload
    # The master's hook: its os.fork() child leaves on sys.exit(3) rather
    # than go on as a second master.
    hook = app.event("forked", where="hook", timeout=30)
    assert hook["pid"] == str(app.pid)
    assert {k: hook[k] for k in expected} == expected, hook
    app.signal(signal.SIGTERM)
    term = app.event("forked", where="terminate", timeout=30)
    assert {k: term[k] for k in expected} == expected, term
    assert app.wait_exit(30) == 0
    app.wait_group_gone()
