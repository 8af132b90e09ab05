"""What an operator sees of a Python master: ``ServiceManager.status()``,
the control socket (``control_socket=`` or ``COTYLEDON_CONTROL_SOCKET``)
driven by the installed ``cotyledon-ctl`` script and by
``python -m cotyledon ctl``, the metrics (command and file, parsed with
``prometheus_client``), and the new keyword arguments' validation."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

from conftest import APPS, DEADLINE, TimeoutExpired, scenario_results, wait_pids_gone
from test_lifecycle import SM, run_service_pid, running_workers

pytestmark = pytest.mark.ours_only(
    reason="operator features (status(), control socket, cotyledon-ctl, metrics) "
    "are not in the reference"
)

#: The console script installed with the wheel, next to the venv's python.
CTL_SCRIPT = os.path.join(os.path.dirname(sys.executable), "cotyledon-ctl")

CLIENTS = {
    "script": [CTL_SCRIPT],
    "module": [sys.executable, "-m", "cotyledon", "ctl"],
}


@pytest.fixture
def sockdir():
    """A short private directory (a UNIX socket path holds 107 bytes)."""
    path = tempfile.mkdtemp(prefix="coty-ops-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def ctl(client: str, *args: object, env: dict | None = None) -> subprocess.CompletedProcess:
    """Runs the client with ``args``; its environment has no
    COTYLEDON_CONTROL_SOCKET unless ``env`` sets it."""
    full_env = dict(os.environ)
    full_env.pop("COTYLEDON_CONTROL_SOCKET", None)
    full_env.update(env or {})
    return subprocess.run(
        [*CLIENTS[client], *map(str, args)],
        capture_output=True,
        text=True,
        timeout=30,
        env=full_env,
        cwd=tempfile.gettempdir(),
    )


def ctl_ok(client: str, *args: object, env: dict | None = None) -> str:
    proc = ctl(client, *args, env=env)
    assert proc.returncode == 0, (
        f"{client} {args}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    )
    return proc.stdout


def service(status: dict, name: str) -> dict:
    (svc,) = [s for s in status["services"] if s["name"] == name]
    return svc


def pids(status: dict, name: str) -> dict[int, int]:
    """{worker id: pid} of the running, not stopping, workers of ``name``."""
    return {
        w["worker_id"]: w["pid"]
        for w in service(status, name)["worker_list"]
        if w["pid"] is not None and not w["stopping"]
    }


def wait_status(get, what: str, cond, timeout: float = DEADLINE) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        st = get()
        if cond(st):
            return st
        if time.monotonic() > deadline:
            raise TimeoutExpired(f"never {what}: {json.dumps(st, indent=1)}")
        time.sleep(0.05)


def metric_values(text: str, name: str, **labels: str) -> dict[str, float]:
    """{service label: value} of the samples of metric ``name`` (with
    ``labels``) in the Prometheus text, parsed by prometheus_client's own
    parser."""
    from prometheus_client.parser import text_string_to_metric_families  # noqa: PLC0415

    values = {}
    families = {f.name: f for f in text_string_to_metric_families(text)}
    # The parser names a counter's family without its _total suffix.
    family = families.get(name) or families[name[: -len("_total")]]
    for sample in family.samples:
        if sample.name == name and labels.items() <= sample.labels.items():
            assert sample.labels["service"] not in values, sample
            values[sample.labels["service"]] = sample.value
    return values


def status_lines(app, origin: str, start: int = 0) -> dict:
    _, m = app.out.find(rf"^STATUS {origin} (.*)$", start)
    return json.loads(m.group(1))


# ---------------------------------------------------------------- status() --
def test_status_from_a_hook_and_a_thread(start_app, tmp_path):
    trigger = tmp_path / "trigger"
    app = start_app("status", trigger)
    sid = app.event("manager")["sid"]
    before = status_lines(app, "before")
    assert before["pid"] == app.pid
    assert before["state"] == "starting"
    assert [s["service_id"] for s in before["services"]] == [sid]

    workers = running_workers(app, "withreload", 2)
    start = len(app.out.lines)
    os.kill(workers[1], signal.SIGKILL)
    i, _ = app.out.find(rf"^INFO:{SM}:Child {workers[1]} killed by signal -9$", start)
    respawned = run_service_pid(app, "withreload", 1, i)
    app.event("run", start=i, wid=1, pid=respawned)

    # From the reload hook (SIGHUP), in the master: reloading.
    start = len(app.out.lines)
    app.signal(signal.SIGHUP)
    st = status_lines(app, "hook", start)
    assert st["pid"] == app.pid
    assert st["state"] == "reloading"
    (svc,) = st["services"]
    assert svc["service_id"] == sid, "the uuid add() returned"
    assert svc["name"] == "withreload"
    assert (svc["workers"], svc["running"]) == (2, 2)
    assert pids(st, "withreload") == {0: workers[0], 1: respawned}
    w0, w1 = svc["worker_list"]
    assert (w0["restarts"], w0["last_exit"]) == (0, None)
    assert w1["restarts"] == 1
    assert w1["last_exit"] == {"kind": "signal", "code": None, "signal": 9, "name": "SIGKILL"}
    assert svc["counters"]["starts"] == 3
    assert svc["counters"]["exits_signal"] == 1
    assert svc["counters"]["restarts"] == 1
    for wid, pid in ((0, workers[0]), (1, respawned)):
        app.event("reload", start=start, wid=wid, pid=pid)

    # From another thread of the master: running, healthy.
    start = len(app.out.lines)
    trigger.touch()
    st = status_lines(app, "thread", start)
    assert st["state"] == "running"
    assert st["healthy"] is True
    assert st["services"][0]["service_id"] == sid
    assert pids(st, "withreload") == {0: workers[0], 1: respawned}
    assert st["services"][0]["counters"]["reloads"] == 1

    app.signal(signal.SIGTERM)
    assert app.wait_exit() == 0
    app.wait_group_gone()


# ---------------------------------------------------- the control socket --
@pytest.mark.parametrize("client", ["script", "module"])
@pytest.mark.parametrize("enabled_by", ["kwarg", "env"])
def test_ctl_drives_a_master(start_app, sockdir, enabled_by, client):
    """``status --json``/``--check``, ``scale``, ``restart``, ``reload``,
    ``metrics`` and ``stop`` from the installed ``cotyledon-ctl`` script and
    from ``python -m cotyledon ctl``, on a master given
    ``control_socket=PATH`` or, unmodified, ``COTYLEDON_CONTROL_SOCKET``
    (the client then finds the socket in that variable too)."""
    assert os.access(CTL_SCRIPT, os.X_OK), f"{CTL_SCRIPT} is not installed"
    sock = os.path.join(sockdir, "ctl.sock")
    if enabled_by == "kwarg":
        app = start_app("ops", sock)

        def run_ctl(*args):
            return ctl_ok(client, "--socket", sock, *args)

    else:
        app = start_app("ops", env={"COTYLEDON_CONTROL_SOCKET": sock})

        def run_ctl(*args):
            return ctl_ok(client, *args, env={"COTYLEDON_CONTROL_SOCKET": sock})

    def status():
        return json.loads(run_ctl("status", "--json"))

    workers = running_workers(app, "ops", 2)
    running_workers(app, "other", 1)
    assert os.stat(sock).st_mode & 0o777 == 0o600

    # status: JSON with the workers' pids; the table; --check.
    st = wait_status(status, "3 workers up", lambda s: s["state"] == "running" and s["services"][1]["running"] == 1)
    assert st["pid"] == app.pid
    assert pids(st, "ops") == workers
    assert (service(st, "ops")["workers"], service(st, "ops")["running"]) == (2, 2)
    table = run_ctl("status")
    assert f"master pid {app.pid}, running" in table
    assert '"ops": 2 wanted, 2 running' in table
    assert run_ctl("status", "--check").strip() == "healthy"

    # scale ops 3: a third worker runs.
    start = len(app.out.lines)
    assert "scaled to 3 workers" in run_ctl("scale", "ops", "3")
    third = run_service_pid(app, "ops", 2, start)
    app.event("run", start=start, wid=2, pid=third)
    st = wait_status(status, "3 ops running", lambda s: len(pids(s, "ops")) == 3)
    assert pids(st, "ops") == {**workers, 2: third}
    assert service(st, "ops")["workers"] == 3

    # restart ops 0: worker 0 gets a new pid.
    start = len(app.out.lines)
    assert "restarting" in run_ctl("restart", "ops", "0")
    new0 = run_service_pid(app, "ops", 0, start)
    assert new0 != workers[0]
    app.event("run", start=start, wid=0, pid=new0)
    wait_pids_gone([workers[0]])
    st = wait_status(status, "worker 0 back", lambda s: pids(s, "ops").get(0) == new0)
    current = pids(st, "ops")
    assert current == {0: new0, 1: workers[1], 2: third}
    assert service(st, "ops")["worker_list"][0]["restarts"] == 1
    assert run_ctl("status", "--check").strip() == "healthy"

    # reload: reload() runs in every ops worker, on_reload in the master;
    # the "other" worker, without reload(), is restarted.
    start = len(app.out.lines)
    assert run_ctl("reload").strip() == "reloading"
    app.event("master_reload", start=start, pid=app.pid)
    for wid, pid in current.items():
        app.event("reload", start=start, name="ops", wid=wid, pid=pid)
    other = run_service_pid(app, "other", 0, start)
    app.event("run", start=start, name="other", pid=other)

    # metrics: Prometheus text.
    text = run_ctl("metrics")
    assert metric_values(text, "cotyledon_worker_starts_total") == {"ops": 4, "other": 2}
    assert metric_values(text, "cotyledon_workers_running") == {"ops": 3, "other": 1}
    assert metric_values(text, "cotyledon_workers_wanted") == {"ops": 3, "other": 1}
    assert metric_values(text, "cotyledon_worker_restarts_total") == {"ops": 1, "other": 1}
    assert metric_values(text, "cotyledon_reloads_total") == {"ops": 1, "other": 1}

    # stop: as SIGTERM; run() ends with SystemExit(0).
    start = len(app.out.lines)
    assert run_ctl("stop").strip() == "stopping"
    assert app.wait_exit() == 0
    app.out.wait_eof()
    out = app.out
    i_caught = out.index(rf"^INFO:{SM}:Caught SIGTERM signal, graceful exiting of master process$", start)
    i_hook = int(app.event("term_hook", start=start, pid=app.pid)["_index"])
    i_fin = out.index(rf"^DEBUG:{SM}:Shutdown finish$", start)
    assert i_caught < i_hook < i_fin
    for wid, pid in current.items():
        app.event("terminate", start=start, name="ops", wid=wid, pid=pid)
    app.event("terminate", start=start, name="other", pid=other)
    assert not out.all(rf"^INFO:{SM}:Child ", start)
    run_exit = app.event("run_exit", start=start)
    assert (run_exit["type"], run_exit["code"]) == ("SystemExit", "0")
    app.wait_group_gone()
    assert not os.path.exists(sock)

    # No master any more: exit status 3.
    if enabled_by == "kwarg":
        proc = ctl(client, "--socket", sock, "status")
    else:
        proc = ctl(client, "status", env={"COTYLEDON_CONTROL_SOCKET": sock})
    assert proc.returncode == 3, proc.stderr
    assert "no master at" in proc.stderr


def test_reconfigure_after_scale_uses_the_engines_count(start_app, sockdir):
    """After ``cotyledon-ctl scale ops 3``, ``reconfigure(sid, n)`` accepts
    n down to 1 - 3 (the reference's rule, with the count the engine has)."""
    sock = os.path.join(sockdir, "ctl.sock")
    app = start_app("ops", sock)
    running_workers(app, "ops", 2)
    start = len(app.out.lines)
    ctl_ok("script", "--socket", sock, "scale", "ops", "3")
    app.event("run", start=start, name="ops", wid=2)
    start = len(app.out.lines)
    app.signal(signal.SIGUSR1)
    assert app.event("reconfigure", start=start, pid=app.pid)["result"] == "ok"
    app.signal(signal.SIGTERM)
    assert app.wait_exit() == 0
    app.wait_group_gone()


@pytest.mark.parametrize("client", ["script", "module"])
def test_ctl_without_a_master(sockdir, client):
    """Exit status 3 when nobody serves the socket: no file, or a socket
    file left behind with nobody listening; 2 on a usage error."""
    missing = os.path.join(sockdir, "missing.sock")
    proc = ctl(client, "--socket", missing, "status")
    assert proc.returncode == 3, proc.stderr
    assert f"no master at {missing}" in proc.stderr
    stale = os.path.join(sockdir, "stale.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(stale)
    s.close()
    proc = ctl(client, "--socket", stale, "stop")
    assert proc.returncode == 3, proc.stderr
    proc = ctl(client, "status", env={"COTYLEDON_CONTROL_SOCKET": missing})
    assert proc.returncode == 3, proc.stderr
    # Usage errors.
    proc = ctl(client, "--socket", missing, "frobnicate")
    assert proc.returncode == 2
    assert "unknown command" in proc.stderr and "usage: cotyledon-ctl" in proc.stderr
    proc = ctl(client, "status")
    assert proc.returncode == 2
    assert "COTYLEDON_CONTROL_SOCKET" in proc.stderr
    proc = ctl(client, "--help")
    assert proc.returncode == 0
    assert proc.stdout.startswith("usage: cotyledon-ctl")


_SILENT_MASTER = """
import socket, sys, threading, time
from cotyledon import _core
path = sys.argv[1]
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind(path)
server.listen(8)  # connections queue up, nobody ever replies
ticks = []

def tick():
    while True:
        ticks.append(1)
        time.sleep(0.01)

threading.Thread(target=tick, daemon=True).start()
t0 = time.monotonic()
rc = _core.ctl_main(["--socket", path, "status"])
print("RESULT", rc, len(ticks), time.monotonic() - t0, flush=True)
"""


def test_ctl_main_releases_the_gil(sockdir):
    """``_core.ctl_main`` waits on the socket (5 s at most) with the GIL
    released: the caller's other threads keep running meanwhile."""
    proc = subprocess.run(
        [sys.executable, "-c", _SILENT_MASTER, os.path.join(sockdir, "silent.sock")],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tempfile.gettempdir(),
    )
    assert proc.returncode == 0, proc.stderr
    (line,) = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
    _, rc, ticks, elapsed = line.split()
    assert int(rc) == 1
    assert "no reply within 5s" in proc.stderr
    assert float(elapsed) >= 4.5
    assert int(ticks) >= 100, f"the other thread ran {ticks} times in {elapsed}s"


@pytest.mark.parametrize("client", ["script", "module"])
def test_ctl_ends_at_once_on_sigint(sockdir, client):
    """Ctrl-C ends a client waiting for a master that does not answer at
    once (SIGINT kills it, as it does the Rust binary), not after the 5 s
    timeout."""
    path = os.path.join(sockdir, "silent.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(8)
    try:
        proc = subprocess.Popen(
            [*CLIENTS[client], "--socket", path, "status"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=tempfile.gettempdir(),
        )
        try:
            conn, _ = server.accept()  # connected: it now waits for a reply
            t0 = time.monotonic()
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=10) == -signal.SIGINT
            assert time.monotonic() - t0 < 2
            conn.close()
        finally:
            proc.kill()
            proc.wait()
    finally:
        server.close()


@pytest.mark.parametrize("args", [[], ["status"], ["--help"], ["control"]])
def test_python_m_cotyledon_without_ctl_prints_usage(args):
    proc = subprocess.run(
        [sys.executable, "-m", "cotyledon", *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tempfile.gettempdir(),
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.startswith("usage: python -m cotyledon ctl ")


# ------------------------------------------------------------- metrics file --
def test_metrics_file(start_app, sockdir):
    """``metrics_file=`` with a short ``metrics_interval``: the file is
    rewritten as the workers change, and parses as Prometheus text."""
    sock = os.path.join(sockdir, "ctl.sock")
    prom = os.path.join(sockdir, "cotyledon.prom")
    app = start_app("ops", sock, prom, "0.2")
    workers = running_workers(app, "ops", 2)
    running_workers(app, "other", 1)

    def read():
        try:
            with open(prom) as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def values(name):
        text = read()
        return metric_values(text, name) if text else {}

    wait_status(lambda: values("cotyledon_workers_running"), "3 running in the file",
                lambda v: v == {"ops": 2, "other": 1})
    assert values("cotyledon_worker_starts_total") == {"ops": 2, "other": 1}

    # A worker dies and comes back: the file follows, within the interval.
    start = len(app.out.lines)
    os.kill(workers[1], signal.SIGKILL)
    respawned = run_service_pid(app, "ops", 1, start)
    app.event("run", start=start, wid=1, pid=respawned)
    wait_status(lambda: values("cotyledon_worker_starts_total"), "3 starts in the file",
                lambda v: v.get("ops") == 3, timeout=5)
    assert values("cotyledon_workers_running") == {"ops": 2, "other": 1}
    # The file and the metrics command agree.
    text = ctl_ok("module", "--socket", sock, "metrics")
    assert metric_values(text, "cotyledon_worker_starts_total") == {"ops": 3, "other": 1}
    exits = "cotyledon_worker_exits_total"
    assert metric_values(text, exits, cause="signal") == {"ops": 1, "other": 0}
    assert metric_values(read(), exits, cause="signal") == {"ops": 1, "other": 0}
    assert metric_values(text, exits, cause="clean") == {"ops": 0, "other": 0}

    app.signal(signal.SIGTERM)
    assert app.wait_exit() == 0
    app.wait_group_gone()


def test_metrics_file_from_the_environment(start_app, sockdir):
    """An unmodified application: COTYLEDON_METRICS_FILE alone."""
    prom = os.path.join(sockdir, "env.prom")
    app = start_app("ops", env={"COTYLEDON_METRICS_FILE": prom})
    running_workers(app, "ops", 2)
    # The first write is at once, the next after 15 s (the default).
    deadline = time.monotonic() + DEADLINE
    while not os.path.exists(prom):
        assert time.monotonic() < deadline, "no metrics file"
        time.sleep(0.05)
    with open(prom) as f:
        text = f.read()
    assert "cotyledon_worker_starts_total" in text
    assert not os.path.exists(os.path.join(sockdir, "ctl.sock"))
    app.signal(signal.SIGTERM)
    assert app.wait_exit() == 0
    app.wait_group_gone()


# ------------------------------------------------------------- bad kwargs --
def test_bad_keyword_arguments():
    r = scenario_results("ops_kwargs")
    path = "'control_socket' must be a str or os.PathLike, not: "
    interval = "'metrics_interval' must be a number of seconds, not: "
    positive = "'metrics_interval' must be a positive finite number of seconds, not: "
    grace = "'kill_grace' must be a non-negative finite number of seconds, not: "
    expected = {
        "socket_int": ["TypeError", path + "3 (int)"],
        "socket_bytes": ["TypeError", path + "b'/tmp/x.sock' (bytes)"],
        "socket_empty": ["ValueError", "'control_socket' must not be an empty path"],
        "socket_nul": ["ValueError", "'control_socket' must not contain a NUL character: '/tmp/a\\x00b'"],
        "socket_long": [
            "ValueError",
            "'control_socket' is too long for a UNIX socket: 205 bytes, 107 at most: '/tmp/"
            + "s" * 200
            + "'",
        ],
        "metrics_list": [
            "TypeError",
            "'metrics_file' must be a str or os.PathLike, not: ['/tmp/m.prom'] (list)",
        ],
        "metrics_empty": ["ValueError", "'metrics_file' must not be an empty path"],
        "interval_str": ["TypeError", interval + "'5' (str)"],
        "interval_bool": ["TypeError", interval + "True (bool)"],
        "interval_none": ["TypeError", interval + "None (NoneType)"],
        "interval_zero": ["ValueError", positive + "0"],
        "interval_neg": ["ValueError", positive + "-1.5"],
        "interval_nan": ["ValueError", positive + "nan"],
        "interval_inf": ["ValueError", positive + "inf"],
        "engine_interval": [
            "ValueError",
            "'metrics_interval' must be a positive number of seconds, not: 0",
        ],
        "engine_socket_empty": ["ValueError", "'control_socket' must not be an empty path"],
        "grace_str": ["TypeError", "'kill_grace' must be a number of seconds, not: '0.5' (str)"],
        "grace_bool": ["TypeError", "'kill_grace' must be a number of seconds, not: False (bool)"],
        "grace_none": ["TypeError", "'kill_grace' must be a number of seconds, not: None (NoneType)"],
        "grace_neg": ["ValueError", grace + "-0.1"],
        "grace_nan": ["ValueError", grace + "nan"],
        "grace_inf": ["ValueError", grace + "inf"],
        "engine_grace": [
            "ValueError",
            "'kill_grace' must be a non-negative finite number of seconds, not: -1",
        ],
        "valid": ["ok", "'ServiceManager'"],
    }
    for key, want in expected.items():
        assert r[key] == want, key
    # Keyword only (3.9 and 3.10 say "__init__()", later ones
    # "ServiceManager.__init__()").
    assert r["socket_positional"][0] == "TypeError"
    assert r["socket_positional"][1].endswith(
        "__init__() takes from 1 to 4 positional arguments but 5 were given"
    )
    assert r["unknown_kwarg"][0] == "TypeError"
    assert "control_sock" in r["unknown_kwarg"][1]
    assert r["engine_socket_int"] == [
        "TypeError",
        "'control_socket' must be a str or os.PathLike, not: int",
    ]
    assert r["ctl_main_str"][0] == "TypeError"
    assert r["ctl_main_ints"][0] == "TypeError"
