"""examples/deploy/: the systemd units pass ``systemd-analyze verify``, and
every example's command, unchanged, runs the quickstart under the
conditions its file describes and answers ``cotyledon-ctl``.

The files name the absolute paths of a real install:
``/opt/cotyledon-example`` (a venv with our wheel, and quickstart.py) and
``/run/cotyledon-example`` (the control socket). Each command here runs in
a private mount namespace (``unshare --mount``, as root) where ``/opt`` is a
temporary directory holding that install, made as examples/deploy/README.md
says, and ``/run`` an empty temporary directory. So the files are checked
byte for byte, with their own paths, and nothing is written outside the
test's temporary directories.

What runs where:
- both units: ``systemd-analyze verify`` (it checks that ExecStart= and
  ExecReload= name executables); the Type=notify one must say nothing at
  all; on systemd < 253 the Type=notify-reload one must say exactly the one
  warning about that type, and nothing else. Then ExecStart= runs with the
  unit's Environment= in an otherwise empty environment, a NOTIFY_SOCKET and
  WATCHDOG_USEC as systemd sets them: READY=1 must come from the main
  process (NotifyAccess=main), ExecReload= must reload the workers, and
  SIGTERM to the main process alone (KillMode=mixed) must end everything
  with status 0 well within TimeoutStopSec=;
- pod.yaml: the container's command and env; both probes' commands run
  against that master (0 while it runs, non-zero once it is gone);
- supervisord.conf: command and environment; stopsignal ends it with one
  of exitcodes;
- s6/cotyledon-example/run: run as s6-supervise does (./run in the service
  directory); it must create the socket's directory and exec the master.

In every case the master's pid reported over the control socket must be
the pid the supervisor started (no wrapper process in between), and the
stop bound of each supervisor (TimeoutStopSec=, terminationGracePeriodSeconds,
stopwaitsecs, timeout-kill) must exceed the master's own,
graceful_shutdown_timeout + 1 s + kill_grace.

Needs root (mount namespaces), ``unshare`` and ``systemd-analyze``: a
missing one fails the test, it is not skipped. PyYAML comes with oslo.config
(a test dependency). The wheel is the one tests/python/run.sh built.
"""

from __future__ import annotations

import configparser
import glob
import inspect
import json
import os
import re
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time

import pytest

import cotyledon
from conftest import _APP_GROUPS, _APP_GROUPS_LOCK, DEADLINE, REPO, App, TimeoutExpired

# The examples run our wheel and its cotyledon-ctl: nothing to check
# against the reference.
pytestmark = pytest.mark.ours_only(reason="examples/deploy run our wheel and cotyledon-ctl")

DEPLOY = os.path.join(REPO, "examples", "deploy")
QUICKSTART = os.path.join(REPO, "examples", "quickstart.py")
UNIT = "cotyledon-example.service"
RELOAD_UNIT = "cotyledon-example-reload.service"
S6_DIR = os.path.join(DEPLOY, "s6", "cotyledon-example")

PREFIX = "/opt/cotyledon-example"
VENV = PREFIX + "/venv"
CTL = VENV + "/bin/cotyledon-ctl"

# systemd's PATH for services (what a unit's commands see).
SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# The only line systemd < 253 may print about the Type=notify-reload unit.
NOTIFY_RELOAD_WARNING = (
    r"^\S*/" + re.escape(RELOAD_UNIT) + r":\d+: "
    r"Failed to parse service type, ignoring: notify-reload$"
)

# Binds the install on /opt and a fresh directory on /run, then runs the
# command (exec: same pid). WATCHDOG_PID is the main pid, as systemd sets it.
_NS_SCRIPT = (
    'mount --bind "$1" /opt && mount --bind "$2" /run && shift 2 && '
    '{ [ -z "${WATCHDOG_USEC:-}" ] || export WATCHDOG_PID=$$; } && exec "$@"'
)

W = r"INFO - \[(?P<pid>\d+)\] my_example_service worker (?P<wid>\d) "


def _tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path=SYSTEMD_PATH)
    if path is None:
        pytest.fail(f"{name} is needed by the deploy tests and is not installed")
    return path


class Namespace:
    """The install on /opt and a private /run, for commands run in a new
    mount namespace each (they all see the same two directories)."""

    def __init__(self, opt: str, run: str) -> None:
        self.opt = opt
        self.run = run
        self.unshare = _tool("unshare")
        self.env_cmd = _tool("env")

    def argv(self, argv: list[str], env: dict[str, str]) -> list[str]:
        """argv run in the namespace with exactly env (plus nothing)."""
        return [
            self.env_cmd, "-i", *(f"{k}={v}" for k, v in env.items()),
            self.unshare, "--mount", "--propagation", "private",
            "sh", "-c", _NS_SCRIPT, "sh", self.opt, self.run, *argv,
        ]  # fmt: skip

    def call(self, argv: list[str], env=None, timeout: float = 30.0):
        return subprocess.run(
            self.argv(argv, {"PATH": SYSTEMD_PATH, **(env or {})}),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def host_path(self, path: str) -> str:
        """Where a /run path of the namespace lives on the host."""
        assert path.startswith("/run/"), path
        return os.path.join(self.run, path[len("/run/") :])


@pytest.fixture(scope="module")
def opt_dir(tmp_path_factory) -> str:
    """/opt/cotyledon-example installed as examples/deploy/README.md says:
    a venv, our wheel in it (without its optional setproctitle: no index
    here), the quickstart beside it."""
    if os.geteuid() != 0:
        pytest.fail("the deploy tests need root (mount namespaces)")
    for path in (sys.executable, os.path.realpath(sys.executable), REPO):
        # The namespace hides the host's /opt and /run.
        assert not path.startswith(("/opt/", "/run/")), f"{path} would be hidden in the namespace"
    wheels = sorted(glob.glob(os.path.join(REPO, ".cache", "python-wheels", "cotyledon-*.whl")))
    if not wheels:
        pytest.fail("no wheel in .cache/python-wheels: run tests/python/run.sh, which builds it")
    opt = str(tmp_path_factory.mktemp("opt"))
    home = str(tmp_path_factory.mktemp("home"))
    ns = Namespace(opt, str(tmp_path_factory.mktemp("run")))
    steps = [
        [sys.executable, "-m", "venv", "--without-pip", VENV],
        [sys.executable, "-m", "pip", "--python", VENV + "/bin/python3", "install",
         "-q", "--no-index", "--no-deps", wheels[-1]],
        ["install", "-m", "0644", QUICKSTART, PREFIX + "/quickstart.py"],
    ]  # fmt: skip
    os.makedirs(os.path.join(opt, "cotyledon-example"))
    for step in steps:
        proc = ns.call(step, env={"HOME": home, "PIP_NO_CACHE_DIR": "1"}, timeout=120)
        assert proc.returncode == 0, f"{step}: {proc.stdout}{proc.stderr}"
    return opt


@pytest.fixture
def ns(opt_dir, tmp_path) -> Namespace:
    run = tmp_path / "run"
    run.mkdir()
    return Namespace(opt_dir, str(run))


@pytest.fixture
def launch(request):
    """launch(ns, argv, env, cwd=None) starts a master in the namespace."""
    apps: list[App] = []

    def start(ns: Namespace, argv: list[str], env: dict[str, str], cwd=None) -> App:
        app = App(ns.argv(argv, env), cwd=cwd)
        apps.append(app)
        return app

    yield start
    failed = getattr(request.node, "rep_call", None)
    for app in apps:
        app.kill_all()
        if failed is not None and failed.failed:
            print(app.dump())
    with _APP_GROUPS_LOCK:
        for app in apps:
            _APP_GROUPS.discard(app.pid)


# ------------------------------------------------------------- helpers ----


def master_stop_bound() -> float:
    """How long the quickstart's master may take to stop by itself:
    graceful_shutdown_timeout + 1 s + kill_grace, both its defaults."""
    with open(QUICKSTART) as f:
        assert "cotyledon.ServiceManager()" in f.read(), "the quickstart no longer uses the defaults"
    params = inspect.signature(cotyledon.ServiceManager.__init__).parameters
    graceful = params["graceful_shutdown_timeout"].default
    # kill_grace: documented default 0.5 s, a keyword of ServiceManager
    # once the escalation lands; its default is read from there then.
    kill_grace = params["kill_grace"].default if "kill_grace" in params else 0.5
    assert graceful > 0
    # The master waits for its workers' own deadline, from their SIGTERM,
    # plus a second (WORKER_DEADLINE_GRACE in the core).
    return graceful + 1.0 + kill_grace


def seconds(value: str) -> float:
    """A systemd time span as these files write it (75s, 2min, 90)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(s|sec|min|ms)?\s*", value)
    assert m, f"unparsed time span {value!r}"
    n = float(m[1])
    return {None: n, "s": n, "sec": n, "min": 60 * n, "ms": n / 1000}[m[2]]


def unit_service_section(name: str) -> dict[str, list[str]]:
    """The [Service] section of a unit file: key -> its values in order."""
    section = None
    keys: dict[str, list[str]] = {}
    with open(os.path.join(DEPLOY, name)) as f:
        for raw in f:
            line = raw.strip()
            if not line or line[0] in "#;":
                continue
            assert not line.endswith("\\"), "no continuation lines in the examples"
            if line.startswith("["):
                section = line
                continue
            key, _, value = line.partition("=")
            if section == "[Service]":
                keys.setdefault(key.strip(), []).append(value.strip())
    return keys


def one(keys: dict[str, list[str]], key: str) -> str:
    values = keys.get(key, [])
    assert len(values) == 1, f"{key}= should be set once, is {values}"
    return values[0]


def ctl_status(ns: Namespace, socket_path: str, *args: str):
    return ns.call([CTL, "--socket", socket_path, "status", *args], timeout=10)


def wait_healthy(ns: Namespace, app: App, socket_path: str) -> dict:
    """Wait until `status --check` exits 0; return `status --json`."""
    deadline = time.monotonic() + DEADLINE
    while True:
        proc = ctl_status(ns, socket_path, "--check")
        if proc.returncode == 0:
            break
        if not app.alive() or time.monotonic() > deadline:
            raise TimeoutExpired(
                f"never healthy: exit {proc.returncode}: {proc.stdout}{proc.stderr}"
            )
        time.sleep(0.1)
    proc = ctl_status(ns, socket_path, "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def check_running_master(ns: Namespace, app: App, socket_path: str) -> None:
    """Healthy, two workers, and the pid the supervisor started is the
    master's (no shell or wrapper left in between)."""
    status = wait_healthy(ns, app, socket_path)
    assert status["pid"] == app.pid, f"master pid {status['pid']}, started {app.pid}"
    [svc] = status["services"]
    assert (svc["name"], svc["workers"], svc["running"]) == ("my_example_service", 2, 2)


def stop_with(app: App, sig: int, bound: float) -> int:
    """Send sig to the started pid alone; it must end, with every process
    of its group, within the supervisor's bound. Returns its status."""
    t0 = time.monotonic()
    app.signal(sig)
    rc = app.wait_exit(min(bound, DEADLINE))
    app.wait_group_gone(max(0.5, min(bound, DEADLINE) - (time.monotonic() - t0)))
    return rc


# ------------------------------------------------------------- systemd ----


def _systemd_version() -> int:
    out = subprocess.run(
        [_tool("systemd-analyze"), "--version"], capture_output=True, text=True, check=True
    ).stdout
    m = re.match(r"systemd (\d+)", out)
    assert m, out
    return int(m[1])


@pytest.mark.parametrize("unit", [UNIT, RELOAD_UNIT])
def test_unit_passes_systemd_analyze_verify(ns, unit):
    analyze = _tool("systemd-analyze")
    version = _systemd_version()
    # Warnings are printed at SYSTEMD_LOG_LEVEL warning and above: make
    # sure a caller's environment does not hide them.
    proc = ns.call(
        [analyze, "verify", os.path.join(DEPLOY, unit)], env={"SYSTEMD_LOG_LEVEL": "info"}
    )
    lines = [l for l in (proc.stdout + proc.stderr).splitlines() if l.strip()]
    allowed = [NOTIFY_RELOAD_WARNING] if unit == RELOAD_UNIT and version < 253 else []
    assert proc.returncode == 0, f"systemd-analyze verify exit {proc.returncode}: {lines}"
    assert len(lines) == len(allowed) and all(
        re.search(rx, line) for rx, line in zip(allowed, lines)
    ), f"systemd {version}: expected {allowed or 'no output'}, got {lines}"


def test_unit_directives():
    bound = master_stop_bound()
    notify = unit_service_section(UNIT)
    reload_ = unit_service_section(RELOAD_UNIT)
    assert one(notify, "Type") == "notify"
    assert one(reload_, "Type") == "notify-reload"
    assert shlex.split(one(notify, "ExecReload")) == ["/bin/kill", "-HUP", "$MAINPID"]
    assert "ExecReload" not in reload_, "notify-reload: systemd sends the signal itself"
    for keys in (notify, reload_):
        assert one(keys, "KillMode") == "mixed"
        assert one(keys, "NotifyAccess") == "main"
        assert seconds(one(keys, "WatchdogSec")) > 0
        assert seconds(one(keys, "TimeoutStopSec")) > bound
        assert one(keys, "ExecStart") == one(notify, "ExecStart")
        assert keys["Environment"] == notify["Environment"]


def unit_env(keys: dict[str, list[str]]) -> dict[str, str]:
    env = {}
    for value in keys.get("Environment", []):
        for item in shlex.split(value):
            k, _, v = item.partition("=")
            env[k] = v
    return env


def recv_notifications(sock: socket.socket, until, timeout: float) -> list[tuple[int, str]]:
    """(sender pid, line) of the datagrams received until until(lines)."""
    got: list[tuple[int, str]] = []
    deadline = time.monotonic() + timeout
    while not until(got):
        if time.monotonic() > deadline:
            raise TimeoutExpired(f"notifications so far: {got}")
        try:
            data, anc, _, _ = sock.recvmsg(4096, socket.CMSG_SPACE(12))
        except socket.timeout:
            continue
        pid = None
        for level, kind, cdata in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = struct.unpack("iII", cdata[:12])[0]
        got.extend((pid, line) for line in data.decode().splitlines())
    return got


@pytest.mark.parametrize("unit", [UNIT, RELOAD_UNIT])
def test_unit_runs_as_systemd_would(ns, launch, tmp_path, unit):
    keys = unit_service_section(unit)
    env = unit_env(keys)
    socket_path = env["COTYLEDON_CONTROL_SOCKET"]
    runtime_dir = "/run/" + one(keys, "RuntimeDirectory")
    assert os.path.dirname(socket_path) == runtime_dir
    os.mkdir(ns.host_path(runtime_dir))  # systemd makes RuntimeDirectory=

    notify_path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    sock.bind(notify_path)
    sock.settimeout(0.1)
    watchdog_usec = int(seconds(one(keys, "WatchdogSec")) * 1_000_000)
    try:
        app = launch(
            ns,
            shlex.split(one(keys, "ExecStart")),
            {
                "PATH": SYSTEMD_PATH,
                "NOTIFY_SOCKET": notify_path,
                "WATCHDOG_USEC": str(watchdog_usec),
                **env,
            },
        )
        got = recv_notifications(sock, lambda g: any(l == "READY=1" for _, l in g), DEADLINE)
        senders = {pid for pid, line in got if line == "READY=1"}
        assert senders == {app.pid}, f"READY=1 from {senders}, main pid {app.pid}"
        check_running_master(ns, app, socket_path)

        # Reload: ExecReload= (Type=notify) or systemd's SIGHUP (notify-reload).
        start = len(app.err.lines)
        if "ExecReload" in keys:
            argv = [a.replace("$MAINPID", str(app.pid)) for a in shlex.split(one(keys, "ExecReload"))]
            assert ns.call(argv).returncode == 0
        else:
            app.signal(signal.SIGHUP)
        app.err.wait_count(W + r"reloading\.\.\.$", 2, start)

        # Stop: KillMode=mixed sends SIGTERM to the main process only.
        start = len(app.err.lines)
        assert stop_with(app, signal.SIGTERM, seconds(one(keys, "TimeoutStopSec"))) == 0
        assert len(app.err.all(W + r"terminating\.\.\.$", start)) == 2
    finally:
        sock.close()


# ----------------------------------------------------------- Kubernetes ----


def load_pod() -> dict:
    import yaml  # PyYAML: a dependency of oslo.config  # noqa: PLC0415

    with open(os.path.join(DEPLOY, "pod.yaml")) as f:
        return yaml.safe_load(f)


def test_pod_manifest():
    pod = load_pod()
    assert (pod["apiVersion"], pod["kind"]) == ("v1", "Pod")
    spec = pod["spec"]
    assert spec["terminationGracePeriodSeconds"] > master_stop_bound()
    assert not spec.get("shareProcessNamespace"), "the master is meant to be PID 1"
    [c] = spec["containers"]
    env = {e["name"]: e["value"] for e in c["env"]}
    socket_dir = os.path.dirname(env["COTYLEDON_CONTROL_SOCKET"])
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert socket_dir in mounts, "the socket's directory is a mounted volume"
    assert "emptyDir" in volumes[mounts[socket_dir]]
    for probe in ("readinessProbe", "livenessProbe"):
        argv = c[probe]["exec"]["command"]
        assert argv[:3] == [CTL, "--socket", env["COTYLEDON_CONTROL_SOCKET"]], argv
        assert argv[3] == "status"
        # cotyledon-ctl gives up after 5 s and says why: before the kubelet does.
        assert c[probe]["timeoutSeconds"] > 5
    assert c["readinessProbe"]["exec"]["command"][4:] == ["--check"]
    assert c["livenessProbe"]["exec"]["command"][4:] == []


def test_pod_command_and_probes(ns, launch):
    pod = load_pod()
    [c] = pod["spec"]["containers"]
    env = {e["name"]: e["value"] for e in c["env"]}
    socket_path = env["COTYLEDON_CONTROL_SOCKET"]
    os.mkdir(ns.host_path(os.path.dirname(socket_path)))  # the emptyDir
    app = launch(ns, c["command"] + c.get("args", []), {"PATH": SYSTEMD_PATH, **env})
    check_running_master(ns, app, socket_path)
    probes = {p: c[p]["exec"]["command"] for p in ("readinessProbe", "livenessProbe")}
    for name, argv in probes.items():
        t0 = time.monotonic()
        proc = ns.call(argv)
        assert proc.returncode == 0, f"{name}: {proc.stdout}{proc.stderr}"
        assert time.monotonic() - t0 < c[name]["timeoutSeconds"]
    assert stop_with(app, signal.SIGTERM, pod["spec"]["terminationGracePeriodSeconds"]) == 0
    for name, argv in probes.items():
        proc = ns.call(argv)
        assert proc.returncode == 3, f"{name} after the master ended: {proc.returncode}"


# ---------------------------------------------------------- supervisord ----


def load_supervisord() -> configparser.SectionProxy:
    parser = configparser.RawConfigParser()
    with open(os.path.join(DEPLOY, "supervisord.conf")) as f:
        parser.read_file(f)
    assert parser.sections() == ["program:cotyledon-example"]
    return parser["program:cotyledon-example"]


def supervisord_env(value: str) -> dict[str, str]:
    """environment=KEY="value",KEY2="value2" (no commas inside values)."""
    return dict(item.split("=", 1) for item in shlex.split(value.replace(",", " ")))


def test_supervisord_program():
    prog = load_supervisord()
    assert prog["stopsignal"] == "TERM"
    assert prog.getboolean("stopasgroup") is False
    assert prog.getboolean("killasgroup") is True
    assert float(prog["stopwaitsecs"]) > master_stop_bound()
    assert prog["autorestart"] == "unexpected"
    assert [int(x) for x in prog["exitcodes"].split(",")] == [0]
    assert not any(k.startswith("user") for k in prog), "the test runs it as root"


def test_supervisord_command(ns, launch):
    prog = load_supervisord()
    env = supervisord_env(prog["environment"])
    socket_path = env["COTYLEDON_CONTROL_SOCKET"]
    os.mkdir(ns.host_path(os.path.dirname(socket_path)))  # provisioned, see the file
    app = launch(ns, shlex.split(prog["command"]), {"PATH": SYSTEMD_PATH, **env})
    check_running_master(ns, app, socket_path)
    sig = getattr(signal, "SIG" + prog["stopsignal"])
    rc = stop_with(app, sig, float(prog["stopwaitsecs"]))
    assert rc in [int(x) for x in prog["exitcodes"].split(",")]


# ------------------------------------------------------------------- s6 ----


def test_s6_service_directory():
    run = os.path.join(S6_DIR, "run")
    assert os.access(run, os.X_OK), "s6-supervise executes ./run"
    assert subprocess.run(["sh", "-n", run]).returncode == 0
    with open(os.path.join(S6_DIR, "timeout-kill")) as f:
        assert int(f.read()) / 1000 > master_stop_bound()


def test_s6_run_script(ns, launch):
    with open(os.path.join(S6_DIR, "run")) as f:
        m = re.search(r"^export COTYLEDON_CONTROL_SOCKET=(\S+)$", f.read(), re.M)
    assert m, "run exports COTYLEDON_CONTROL_SOCKET"
    socket_path = m[1]
    assert not os.path.exists(ns.host_path(os.path.dirname(socket_path)))
    app = launch(ns, ["./run"], {"PATH": SYSTEMD_PATH}, cwd=S6_DIR)
    check_running_master(ns, app, socket_path)
    # s6-svc -d: SIGTERM then SIGCONT; timeout-kill bounds it.
    with open(os.path.join(S6_DIR, "timeout-kill")) as f:
        bound = int(f.read()) / 1000
    t0 = time.monotonic()
    app.signal(signal.SIGTERM)
    app.signal(signal.SIGCONT)
    assert app.wait_exit(min(bound, DEADLINE)) == 0
    app.wait_group_gone(max(0.5, min(bound, DEADLINE) - (time.monotonic() - t0)))
