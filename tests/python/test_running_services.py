"""``ServiceManager._running_services``, as kuryr-daemon (and zun's CNI
daemon) use it in their terminate hook: ``reconfigure(server_id, 0)``,
then ``terminate()`` and ``join()`` of each server worker (issue #15,
section 5)."""

from __future__ import annotations

import signal

from test_lifecycle import SM, run_service_pid, running_workers


def test_kuryr_ordered_shutdown_through_running_services(start_app):
    app = start_app("kuryr")
    server = running_workers(app, "basic", 2)
    other = running_workers(app, "other", 1)
    start = len(app.out.lines)
    app.signal(signal.SIGTERM)
    running = app.event("running", start=start)
    assert (running["services"], running["server"], running["other"]) == ("2", "2", "1")
    for wid, pid in sorted(server.items()):
        joined = app.event("joined", start=start, wid=wid)
        assert joined["worker_pid"] == str(pid)
        assert joined["alive_before"] == "True"
        # join() saw the end from inside the hook, on the loop's thread.
        assert joined["alive_after"] == "False"
        assert joined["exitcode"] == "0"
        # The worker ran its terminate() before the hook went on.
        term = app.event("terminate", start=start, pid=pid)
        assert int(term["_index"]) < int(joined["_index"])
    done = int(app.event("hook_done", start=start)["_index"])
    # The other service is stopped only after the hook.
    other_term = app.event("terminate", start=start, pid=other[0])
    assert int(other_term["_index"]) > done
    assert app.wait_exit() == 0
    app.wait_group_gone()


def test_join_leaves_the_status_to_the_engine(start_app):
    """A worker stopped and joined through ``_running_services`` outside a
    shutdown (an application signal handler, in the master's loop) is
    still reaped by the engine: its real status, the dead-worker hook,
    and a respawn with the same id."""
    app = start_app("kuryr")
    server = running_workers(app, "basic", 2)
    running_workers(app, "other", 1)
    start = len(app.out.lines)
    app.signal(signal.SIGUSR1)
    joined = app.event("joined_one", start=start, wid=0)
    assert joined["worker_pid"] == str(server[0])
    assert joined["exitcode"] == "0"
    app.out.find(rf"^INFO:{SM}:Child {server[0]} exited with status 0$", start)
    hook = app.event("dead_hook", start=start, service="basic", wid=0)
    assert hook["code"] == "0"
    new_pid = run_service_pid(app, "basic", 0, start)
    assert new_pid != server[0]
    app.signal(signal.SIGTERM)
    assert app.wait_exit() == 0
    app.wait_group_gone()
