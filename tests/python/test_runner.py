"""The runner: ``cotyledon-run`` and ``python -m cotyledon run`` start the
services of ``apps/runner_services.py`` named on the command line (real
masters, stopped with SIGTERM), with oslo.config files, and refuse bad
command lines with status 2 before starting anything."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from conftest import APPS, DEADLINE

pytestmark = pytest.mark.ours_only(reason="the reference has no runner")

#: The console script installed with the wheel, next to the venv's python.
RUN_SCRIPT = os.path.join(os.path.dirname(sys.executable), "cotyledon-run")

FORMS = {
    # start_app runs [sys.executable, script, *args].
    "script": (RUN_SCRIPT, ()),
    "module": ("-m", ("cotyledon", "run")),
}


def start_runner(start_app, form: str, *args: str):
    script, prefix = FORMS[form]
    # From the directory of the services' module, as a user would.
    return start_app(*prefix, *args, script=script, cwd=APPS)


def stop(app) -> None:
    app.signal(signal.SIGTERM)
    assert app.wait_exit(DEADLINE) == 0, app.dump()
    app.wait_group_gone(5)
    assert "Traceback" not in app.out.text() + app.err.text()


def wids(app, event: str, **match: object) -> list[int]:
    return sorted(int(e["wid"]) for e in app.events(event, **match))


@pytest.mark.parametrize("form", sorted(FORMS))
def test_specs_and_worker_counts(start_app, form):
    app = start_runner(
        start_app, form, "runner_services:Hello=3", "--workers", "2", "runner_services:Other"
    )
    for wid in range(3):
        assert app.event("init", name="hello", wid=wid)["tag"] == "none"
    for wid in range(2):
        assert app.event("init", name="other", wid=wid)["tag"] == "none"
    stop(app)
    assert wids(app, "terminate", name="hello") == [0, 1, 2]
    assert wids(app, "terminate", name="other") == [0, 1]
    assert wids(app, "init", name="hello") == [0, 1, 2]


def test_graceful_timeout_option(start_app):
    app = start_runner(start_app, "script", "runner_services:Stubborn", "--graceful-timeout", "1")
    pid = app.event("init", name="stubborn")["pid"]
    app.signal(signal.SIGTERM)
    app.event("terminate", name="stubborn", wid=0)
    # The master's and the worker's timeouts are both 1 s (the default, 60,
    # would outlast the deadline): whichever fires first ends the worker.
    app.out.find(
        r"Graceful shutdown timeout exceeded, instantaneous exiting of master process$"
        rf"|Graceful shutdown timeout \(1\) exceeded, exiting stubborn\(0\) \[{pid}\] now"
    )
    assert app.wait_exit(DEADLINE) in (0, 1)
    app.wait_group_gone(5)


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "service.conf"
    path.write_text("[DEFAULT]\ngreeting = bonjour\ngraceful_shutdown_timeout = 7\n")
    return path


@pytest.mark.parametrize("form", sorted(FORMS))
def test_config_file(start_app, form, config_file):
    pytest.importorskip("oslo_config")
    app = start_runner(start_app, form, "runner_services:Configured=2", "--config-file", str(config_file))
    for wid in range(2):
        conf = app.event("conf", wid=wid)
        assert (conf["type"], conf["greeting"], conf["gst"]) == ("ConfigOpts", "bonjour", "7")
        assert app.event("init", name="configured", wid=wid)["tag"] == "conf"
    # oslo_config_glue.setup() ran: the master logs the options.
    app.out.find(r"Full set of CONF:")

    config_file.write_text("[DEFAULT]\ngreeting = salut\n")
    start = len(app.out.lines)
    app.signal(signal.SIGHUP)
    for wid in range(2):
        assert app.event("reload", start=start, wid=wid)["greeting"] == "salut"
    stop(app)


def test_graceful_timeout_option_over_config_file(start_app, config_file):
    pytest.importorskip("oslo_config")
    app = start_runner(
        start_app, "script", "runner_services:Configured", "--config-file", str(config_file),
        "--graceful-timeout", "3",
    )  # fmt: skip
    assert app.event("conf", wid=0)["gst"] == "3"
    stop(app)


BAD = [
    ([], "the following arguments are required: SPEC"),
    (["runner_services"], "service spec 'runner_services': expected package.module:ServiceClass[=N]"),
    (["runner_services:"], "service spec 'runner_services:': expected"),
    ([":Hello"], "service spec ':Hello': expected"),
    (["runner_services:Hello=0"], "service spec 'runner_services:Hello=0': the worker count must be an integer >= 1, not '0'"),
    (["runner_services:Hello=x"], "the worker count must be an integer >= 1, not 'x'"),
    (["no_such_module_here:Svc"], "service spec 'no_such_module_here:Svc': cannot import 'no_such_module_here': ModuleNotFoundError"),
    (["runner_services:Missing=2"], "service spec 'runner_services:Missing=2': module 'runner_services' has no attribute 'Missing'"),
    (["runner_services:NOT_A_CLASS"], "'NOT_A_CLASS' is not a class"),
    (["runner_services:Hello", "--workers", "0"], "argument --workers: must be an integer >= 1, not '0'"),
    (["runner_services:Hello", "--graceful-timeout", "-1"], "argument --graceful-timeout: must be a whole number"),
    (["runner_services:Hello", "--config-file", "/nonexistent/x.conf"], "cannot load the configuration"),
    (["runner_services:Hello", "--bogus"], "unrecognized arguments: --bogus"),
]  # fmt: skip


@pytest.mark.parametrize(("args", "message"), BAD, ids=[" ".join(a) or "none" for a, _ in BAD])
def test_usage_errors(args, message):
    proc = subprocess.run(
        [RUN_SCRIPT, *args], capture_output=True, text=True, timeout=30, cwd=APPS,
        start_new_session=True,
    )  # fmt: skip
    assert proc.returncode == 2, proc
    assert "cotyledon-run: error: " in proc.stderr and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    # Nothing started: no worker's line.
    assert "EV init" not in proc.stdout + proc.stderr


def test_module_form_usage_error():
    proc = subprocess.run(
        [sys.executable, "-m", "cotyledon", "run", "runner_services"],
        capture_output=True, text=True, timeout=30, cwd=APPS, start_new_session=True,
    )  # fmt: skip
    assert proc.returncode == 2, proc
    assert "python -m cotyledon run: error: service spec 'runner_services'" in proc.stderr
