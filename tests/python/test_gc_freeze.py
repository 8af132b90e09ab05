"""``ServiceManager(gc_freeze=...)``: the master freezes the collector's
objects around each fork of a worker (``gc.freeze()`` before it,
``gc.unfreeze()`` after it, in the master only). What a user sees: the
workers' ``gc.get_freeze_count()``, the master's, and whether the master's
own garbage is still collected after its forks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from conftest import APPS, App

pytestmark = pytest.mark.ours_only(reason="gc_freeze= is not in the reference")


def run_mode(mode: str) -> tuple[list[dict], dict]:
    """Starts gc_freeze.py MODE, waits for both workers' run(), kills one
    (one more fork), sends SIGHUP; returns the workers' events and the
    master's on_reload event."""
    app = App([sys.executable, os.path.join(APPS, "gc_freeze.py"), mode])
    try:
        first = [app.event("worker_gc", wid=w) for w in (0, 1)]
        os.kill(int(first[0]["pid"]), signal.SIGKILL)
        again = app.event("worker_gc", wid=0, start=int(first[1]["_index"]) + 1)
        app.signal(signal.SIGHUP)
        master = app.event("master_gc")
        return [*first, again], master
    except BaseException:
        print(app.dump())
        raise
    finally:
        app.kill_all()


def test_workers_start_frozen_and_the_master_stays_collectable():
    workers, master = run_mode("default")
    # Every worker, the respawned one too, inherited the master's objects
    # frozen.
    assert all(int(w["frozen"]) > 1000 for w in workers), workers
    # The master unfroze after each fork: nothing of it is frozen, and the
    # cycles it dropped before forking were collected.
    assert master["frozen"] == "0", master
    assert master["collected"] == master["made"] == "5", master


def test_gc_freeze_false_leaves_the_collector_alone():
    workers, master = run_mode("off")
    assert all(w["frozen"] == "0" for w in workers), workers
    assert master["frozen"] == "0", master
    assert master["collected"] == "5", master


def test_the_applications_own_freeze_is_kept():
    workers, master = run_mode("app_frozen")
    # The application froze its objects (the dropped cycles with them):
    # the engine does not undo its freeze.
    assert int(master["app_frozen"]) > 1000, master
    # (Frozen objects freed by their reference count leave the count.)
    assert 1000 < int(master["frozen"]) <= int(master["app_frozen"]), master
    assert master["collected"] == "0", master
    assert all(int(w["frozen"]) > 1000 for w in workers), workers


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_gc_freeze_must_be_a_bool(value):
    code = (
        "import cotyledon\n"
        "try:\n"
        f"    cotyledon.ServiceManager(gc_freeze={value!r})\n"
        "except TypeError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    assert out.startswith("'gc_freeze' must be a bool, not: "), out
