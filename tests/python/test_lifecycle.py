"""Worker ids, respawn, exit codes, common errors, reload, shutdown paths."""

from __future__ import annotations

import os
import re
import signal

import pytest

from conftest import pid_alive, wait_pids_gone

SM = "cotyledon._service_manager"
SW = "cotyledon._service_worker"


def cmdline(pid: int) -> str:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().replace(b"\0", b" ").decode().strip()


def started_workers(app, name: str, count: int) -> dict[int, int]:
    """Wait for `count` distinct 'Run service name(id) [pid]' lines: {id: pid}."""
    ms = app.out.wait_count(
        rf"^DEBUG:{SW}:Run service {name}\((\d+)\) \[(\d+)\]$", count
    )
    return {int(m.group(1)): int(m.group(2)) for m in ms}


def running_workers(app, name: str, count: int) -> dict[int, int]:
    """Like started_workers, then waits for each worker's own 'run' event:
    every run() has begun."""
    workers = started_workers(app, name, count)
    for pid in workers.values():
        app.event("run", pid=pid)
    return workers


def run_service_pid(app, name: str, worker_id: int, start: int) -> int:
    """The pid in the first 'Run service name(worker_id) [pid]' line at or
    after line `start` (a worker started or respawned since)."""
    _, m = app.out.find(rf"^DEBUG:{SW}:Run service {name}\({worker_id}\) \[(\d+)\]$", start)
    return int(m.group(1))


def test_startup_ids_respawn_and_exit_codes(start_app):
    app = start_app("ids")
    manager = app.event("manager")
    assert manager["sid_type"] == "UUID"
    assert manager["distinct"] == "True"

    workers = started_workers(app, "basic", 3)
    assert sorted(workers) == [0, 1, 2]
    assert len(set(workers.values())) == 3
    for wid, pid in workers.items():
        init = app.event("init", name="basic", wid=wid)
        assert init["pid"] == str(pid) and init["tag"] == "t1"
        app.event("run", name="basic", wid=wid, pid=pid)
        hook = app.event("new_worker_hook", service="basic", wid=wid, pid=pid)
        assert hook["svc"] == "Basic" and hook["svc_wid"] == str(wid)
    (pid42,) = started_workers(app, "exit42", 1).values()

    # Process titles (setproctitle is installed in the test environment).
    assert cmdline(app.pid) == "app.py: master process [" + " ".join(
        [os.path.join(os.path.dirname(__file__), "apps", "app.py"), "ids"]
    ) + "]"
    assert cmdline(workers[1]) == "app.py: basic worker(1)"

    # SIGKILL worker 1: the dead-worker hook, then the Child line, then the
    # same id comes back with a new pid.
    start = len(app.out.lines)
    os.kill(workers[1], signal.SIGKILL)
    hook = app.event("dead_hook", start=start, service="basic", wid=1)
    assert hook["code"] == "-9"
    assert hook["sid_type"] == "UUID" and hook["wid_type"] == "int"
    i, _ = app.out.find(
        rf"^INFO:{SM}:Child {workers[1]} killed by signal -9$", start  # sic: the reference prints the exit code
    )
    assert i > int(hook["_index"]), "on_dead_worker must run before the Child line"
    new_pid = run_service_pid(app, "basic", 1, i)
    assert new_pid != workers[1]
    app.event("run", start=i, name="basic", wid=1, pid=new_pid)
    assert not pid_alive(workers[1])

    # terminate() raising SystemExit(42): exit status 42, respawned.
    start = len(app.out.lines)
    os.kill(pid42, signal.SIGTERM)
    app.out.find(
        rf"^INFO:{SW}:Caught SIGTERM signal, graceful exiting of service exit42\(0\) \[{pid42}\]$",
        start,
    )
    app.event("terminate", start=start, name="exit42", pid=pid42)
    hook = app.event("dead_hook", start=start, service="exit42", wid=0)
    assert hook["code"] == "42"
    i, _ = app.out.find(rf"^INFO:{SM}:Child {pid42} exited with status 42$", start)
    run_pid = run_service_pid(app, "exit42", 0, i)
    assert run_pid != pid42

    # The master is fine all along; graceful stop.
    app.signal(signal.SIGTERM)
    assert app.wait_exit() == 0
    app.wait_group_gone()


@pytest.mark.parametrize("variant", ["super", "param"])
def test_service_init_without_worker_id(start_app, variant):
    """Seed's common error: the worker dies with the TypeError traceback on
    stderr, is respawned (and dies again), the master keeps running."""
    app = start_app("no_worker_id", variant)
    name = "badsuper" if variant == "super" else "noparam"
    started_workers(app, "basic", 1)
    if variant == "super":
        rx = r"TypeError: .*__init__\(\) missing 1 required positional argument: 'worker_id'"
    else:
        rx = r"TypeError: .*__init__\(\) takes 1 positional argument but 2 were given"
    app.err.wait_count(rx, 2)
    assert "Traceback (most recent call last):" in app.err.text()
    deaths = app.out.wait_count(rf"^INFO:{SM}:Child (\d+) exited with status (\d+)$", 2)
    assert len({m.group(1) for m in deaths}) == 2
    assert all(m.group(2) != "0" for m in deaths)
    assert app.alive()
    # The healthy service was never disturbed.
    assert len(app.events("run", name="basic")) == 1
    # The rate limiter kicks in for a worker that dies at once, every time.
    app.out.find(rf"^INFO:{SM}:Forking too fast, sleeping$")
    app.signal(signal.SIGTERM)
    assert app.wait_exit(20) == 0
    app.wait_group_gone()


@pytest.mark.ours_only(reason="the fork-rate limiter's wait does not delay signal handling (contract: better)")
def test_sigterm_during_forking_too_fast_is_prompt(start_app):
    app = start_app("no_worker_id", "super")
    app.out.find(rf"^INFO:{SM}:Forking too fast, sleeping$")
    app.signal(signal.SIGTERM)
    assert app.wait_exit(2.5) == 0
    app.wait_group_gone(2)


def test_crashing_run(start_app, tmp_path):
    app = start_app("crash_run", tmp_path / "crashed")
    (pid,) = started_workers(app, "crash", 1).values()
    app.event("crashing", pid=pid)
    app.out.expect(rf"^ERROR:cotyledon\.[\w.]+:Unhandled exception$")
    app.out.expect(r"^Traceback \(most recent call last\):$")
    app.out.expect(r"^RuntimeError: boom in run$")
    i, _ = app.out.find(rf"^INFO:{SM}:Child {pid} exited with status 2$")
    new_pid = run_service_pid(app, "crash", 0, i)
    assert new_pid != pid
    app.event("run", name="crash", wid=0, pid=new_pid)
    app.signal(signal.SIGTERM)
    assert app.wait_exit() == 0
    app.wait_group_gone()


def test_sighup_reload(start_app):
    app = start_app("reload")
    wr = started_workers(app, "withreload", 1)[0]
    plain = started_workers(app, "plain", 1)[0]
    slow = started_workers(app, "slowterm", 1)[0]
    app.event("run", name="plain", pid=plain)

    # reload() implemented: called in the same process, no restart.
    start = len(app.out.lines)
    os.kill(wr, signal.SIGHUP)
    app.event("reload", start=start, name="withreload", pid=wr)

    # reload() not implemented: the worker restarts, new pid, same id.
    start = len(app.out.lines)
    os.kill(plain, signal.SIGHUP)
    app.out.find(
        rf"^INFO:{SW}:Caught SIGTERM signal, graceful exiting of service plain\(0\) \[{plain}\]$",
        start,
    )
    i, _ = app.out.find(rf"^INFO:{SM}:Child {plain} exited with status 0$", start)
    new_plain = run_service_pid(app, "plain", 0, i)
    assert new_plain != plain
    assert pid_alive(wr)
    assert not app.out.all(rf"Child {wr} ", 0)

    # A reload arriving while terminate() runs is ignored.
    start = len(app.out.lines)
    os.kill(slow, signal.SIGTERM)
    app.event("terminate", start=start, name="slowterm", pid=slow)
    os.kill(slow, signal.SIGHUP)
    app.event("terminate_done", start=start, name="slowterm", pid=slow)
    app.out.find(rf"^INFO:{SM}:Child {slow} exited with status 0$", start)
    assert not app.events("reload", name="slowterm", pid=slow)

    app.signal(signal.SIGTERM)
    assert app.wait_exit() == 0
    app.wait_group_gone()


def test_sighup_master(start_app):
    app = start_app("reload")
    wr = started_workers(app, "withreload", 1)[0]
    plain = started_workers(app, "plain", 1)[0]
    slow = started_workers(app, "slowterm", 1)[0]
    app.event("run", name="slowterm", pid=slow)
    # on_reload hook in the master, then every worker gets SIGHUP.
    start = len(app.out.lines)
    app.signal(signal.SIGHUP)
    i = int(app.event("master_reload", start=start, pid=app.pid)["_index"])
    assert int(app.event("reload", start=start, name="withreload", pid=wr)["_index"]) > i
    app.event("reload", start=start, name="slowterm", pid=slow)
    app.out.find(rf"^INFO:{SM}:Child {plain} exited with status 0$", start)
    run_pid = run_service_pid(app, "plain", 0, start)
    assert run_pid != plain
    assert pid_alive(wr) and pid_alive(slow)
    app.signal(signal.SIGTERM)
    assert app.wait_exit() == 0
    app.wait_group_gone()


@pytest.mark.ours_only(
    reason="reference bug: a SIGHUP during 'Forking too fast' empties the fork "
    "times under the supervisor thread, which dies (IndexError) and never respawns again"
)
def test_sighup_during_forking_too_fast_keeps_supervising(start_app):
    app = start_app("no_worker_id", "super")
    i, _ = app.out.find(rf"^INFO:{SM}:Forking too fast, sleeping$")
    deaths = len(app.out.all(rf"^INFO:{SM}:Child \d+ exited", 0))
    app.signal(signal.SIGHUP)
    # The broken worker keeps being respawned (and dying).
    app.out.wait_count(rf"^INFO:{SM}:Child \d+ exited", deaths + 2, timeout=15)
    assert "IndexError" not in app.err.text()
    app.signal(signal.SIGTERM)
    assert app.wait_exit(10) == 0
    app.wait_group_gone()


def test_sigterm_graceful(start_app):
    app = start_app("graceful")
    workers = started_workers(app, "basic", 2)
    others = started_workers(app, "other", 1)
    pids = list(workers.values()) + list(others.values())
    for pid in pids:
        app.event("run", pid=pid)
    start = len(app.out.lines)
    app.signal(signal.SIGTERM)
    assert app.wait_exit() == 0
    app.out.wait_eof()
    out = app.out
    i_caught = out.index(rf"^INFO:{SM}:Caught SIGTERM signal, graceful exiting of master process$", start)
    i_h1 = int(app.event("term_hook", start=start, n=1, pid=app.pid)["_index"])
    i_h2 = int(app.event("term_hook", start=start, n=2, pid=app.pid)["_index"])
    i_kill = out.index(rf"^DEBUG:{SM}:Killing services with signal SIGTERM$", start)
    i_wait = out.index(rf"^DEBUG:{SM}:Waiting services to terminate$", start)
    i_fin = out.index(rf"^DEBUG:{SM}:Shutdown finish$", start)
    assert i_caught < i_h1 < i_h2 < i_kill < i_wait < i_fin
    assert i_fin == len(out.lines) - 1, "Shutdown finish must be the last line"
    for name, group in (("basic", workers), ("other", others)):
        for wid, pid in group.items():
            j = out.index(
                rf"^INFO:{SW}:Caught SIGTERM signal, graceful exiting of service {name}\({wid}\) \[{pid}\]$",
                start,
            )
            k = int(app.event("terminate", start=start, pid=pid, wid=wid)["_index"])
            assert i_kill < j < k < i_fin
    # No respawn during shutdown, no Child lines.
    assert not out.all(rf"^DEBUG:{SW}:Run service", start)
    assert not out.all(rf"^INFO:{SM}:Child ", start)
    assert "Traceback" not in app.err.text()
    wait_pids_gone(pids, 1)
    app.wait_group_gone(1)


def test_worker_graceful_timeout(start_app):
    app = start_app("hang")
    (pid,) = started_workers(app, "hang", 1).values()
    start = len(app.out.lines)
    os.kill(pid, signal.SIGTERM)
    app.event("terminate", start=start, pid=pid)
    app.out.find(
        rf"^INFO:{SW}:Graceful shutdown timeout \(1\) exceeded, exiting hang\(0\) \[{pid}\] now\.$",
        start,
        timeout=5,
    )
    i, _ = app.out.find(rf"^INFO:{SM}:Child {pid} exited with status 1$", start)
    new_pid = run_service_pid(app, "hang", 0, i)
    assert not app.events("terminate_done")

    # Master SIGTERM: the worker's own timeout ends it, master exits 0.
    start = len(app.out.lines)
    app.signal(signal.SIGTERM)
    assert app.wait_exit(8) == 0
    app.out.wait_eof()
    lines = app.out.lines[start:]
    assert lines[-2:] == [
        f"INFO:{SW}:Graceful shutdown timeout (1) exceeded, exiting hang(0) [{new_pid}] now.",
        f"DEBUG:{SM}:Shutdown finish",
    ]
    app.wait_group_gone(1)


@pytest.mark.ours_only(
    reason="reference bug: the master's SIGALRM is only dispatched from its select "
    "loop, which a shutdown blocked on a worker never returns to, so it hangs"
)
def test_master_graceful_timeout(start_app):
    app = start_app("master_timeout")
    (pid,) = running_workers(app, "hangforever", 1).values()
    start = len(app.out.lines)
    app.signal(signal.SIGTERM)
    app.event("terminate", start=start, pid=pid)
    i = app.out.find(
        rf"^INFO:{SM}:Graceful shutdown timeout exceeded, instantaneous exiting of master process$",
        start,
        timeout=5,
    )[0]
    app.out.find(
        rf"^INFO:{SW}:Caught SIGINT signal, instantaneous exiting of service hangforever\(0\) \[{pid}\]$",
        start,
    )
    assert app.wait_exit(5) == 1
    assert not app.out.all(rf"^DEBUG:{SM}:Shutdown finish$")
    assert not app.events("terminate_done")
    wait_pids_gone([pid], 3)
    app.wait_group_gone(3)


def test_sigint(start_app):
    app = start_app("graceful")
    workers = started_workers(app, "basic", 2)
    others = started_workers(app, "other", 1)
    pids = list(workers.values()) + list(others.values())
    for pid in pids:
        app.event("run", pid=pid)
    start = len(app.out.lines)
    app.signal(signal.SIGINT)
    assert app.wait_exit() == 1
    app.out.find(rf"^INFO:{SM}:Caught SIGINT signal, instantaneous exiting$", start)
    for name, group in (("basic", workers), ("other", others)):
        for wid, pid in group.items():
            app.out.find(
                rf"^INFO:{SW}:Caught SIGINT signal, instantaneous exiting of service {name}\({wid}\) \[{pid}\]$",
                start,
            )
    wait_pids_gone(pids, 3)
    app.err.wait_eof()
    assert "KeyboardInterrupt" not in app.err.text()
    assert "Traceback" not in app.err.text()
    assert not app.events("terminate")
    assert not app.events("term_hook")


def test_master_sigkill(start_app):
    app = start_app("graceful")
    workers = started_workers(app, "basic", 2)
    others = started_workers(app, "other", 1)
    pids = list(workers.values()) + list(others.values())
    for pid in pids:
        app.event("run", pid=pid)
    start = len(app.out.lines)
    app.signal(signal.SIGKILL)
    assert app.wait_exit() == -9
    for name, group in (("basic", workers), ("other", others)):
        for wid, pid in group.items():
            title = re.escape(f"{name}({wid}) [{pid}]")
            i, _ = app.out.find(
                rf"^INFO:{SW}:Parent process has died unexpectedly, {title} exiting$",
                start,
            )
            j, _ = app.out.find(
                rf"^INFO:{SW}:Caught SIGTERM signal, graceful exiting of service {title}$",
                start,
            )
            assert i < j, "the parent-death line comes first"
            k = int(app.event("terminate", start=start, pid=pid)["_index"])
            assert j < k
    wait_pids_gone(pids, 5)
    app.wait_group_gone(2)


@pytest.mark.parametrize("delay", ["0.01", "0.05", "0.1"])
def test_sigterm_while_workers_start_leaves_nothing_behind(start_app, delay):
    app = start_app("sigterm_startup", delay)
    assert app.wait_exit() == 0
    app.out.find(rf"^DEBUG:{SM}:Shutdown finish$")
    app.wait_group_gone(3)
    # Every worker that ran was asked to terminate.
    ran = {e["pid"] for e in app.events("run")}
    terminated = {e["pid"] for e in app.events("terminate")}
    assert ran <= terminated


@pytest.mark.parametrize(("arg", "status"), [("none", 0), ("bye now", 1)])
def test_sys_exit_from_run_keeps_pythons_meaning_and_says_so(start_app, arg, status):
    # sys.exit() in run(): the worker exits as Python would (None: 0, a
    # message: printed, 1), says so at INFO, and is respawned.
    app = start_app("sys_exit", arg)
    (pid,) = started_workers(app, "sysexit", 1).values()
    shown = "None" if arg == "none" else repr(arg)
    app.out.expect(
        rf"^INFO:cotyledon\._service_worker:run\(\) exited the worker with "
        rf"sys\.exit\({re.escape(shown)}\): exit status {status}$"
    )
    if arg != "none":
        app.err.expect(rf"^{re.escape(arg)}$")
    i, _ = app.out.find(rf"^INFO:{SM}:Child {pid} exited with status {status}$")
    new_pid = run_service_pid(app, "sysexit", 0, i)
    assert new_pid != pid
    app.signal(signal.SIGTERM)
    assert app.wait_exit() == 0
    app.wait_group_gone()
