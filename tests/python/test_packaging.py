"""What we ship: the wheel tests/python/run.sh built is manylinux2014 (glibc
2.17: RHEL 8, Ubuntu 20.04, Debian 11 get it), its extension asks for no
GLIBC symbol version above 2.17, and the sdist installs with pip into a
fresh virtualenv (compiling the engine) and runs the quickstart."""

from __future__ import annotations

import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import zipfile

import pytest

from conftest import _APP_GROUPS, _APP_GROUPS_LOCK, App, REPO, wait_pids_gone

pytestmark = pytest.mark.ours_only(reason="packaging of this implementation")

WHEELS = os.path.join(REPO, ".cache", "python-wheels")
QUICKSTART = os.path.join(REPO, "examples", "quickstart.py")
MACHINE = os.uname().machine
#: The tags of a glibc 2.17 wheel (PEP 599 and its PEP 600 alias).
MANYLINUX_2_17 = {f"manylinux2014_{MACHINE}", f"manylinux_2_17_{MACHINE}"}


@pytest.fixture(scope="module")
def wheel() -> str:
    found = sorted(glob.glob(os.path.join(WHEELS, "cotyledon-2.2.0-cp39-abi3-*.whl")))
    if len(found) != 1:
        pytest.fail(f"expected one wheel in {WHEELS} (tests/python/run.sh builds it), found {found}")
    return found[0]


def test_wheel_is_manylinux2014(wheel):
    platforms = set(os.path.basename(wheel)[: -len(".whl")].split("-")[-1].split("."))
    assert platforms == MANYLINUX_2_17, wheel
    with zipfile.ZipFile(wheel) as zf:
        text = zf.read("cotyledon-2.2.0.dist-info/WHEEL").decode()
    tags = set(re.findall(r"^Tag: (\S+)$", text, re.MULTILINE))
    assert tags == {f"cp39-abi3-{p}" for p in MANYLINUX_2_17}, text


def glibc_versions(shared_object: str) -> set[tuple[int, ...]]:
    """The GLIBC_x.y symbol versions a shared object needs (objdump -T)."""
    objdump = shutil.which("objdump")
    if objdump is None:
        pytest.fail("objdump is missing (binutils: installed with the C toolchain Rust links with)")
    out = subprocess.run(
        [objdump, "-T", shared_object], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    return {tuple(map(int, v.split("."))) for v in re.findall(r"\bGLIBC_([0-9]+(?:\.[0-9]+)+)\b", out)}


def test_wheel_needs_glibc_2_17_at_most(wheel, tmp_path):
    with zipfile.ZipFile(wheel) as zf:
        (name,) = [n for n in zf.namelist() if re.fullmatch(r"cotyledon/_core\..*so", n)]
        so = zf.extract(name, tmp_path)
    versions = glibc_versions(so)
    assert versions, f"no GLIBC symbol version in {name}"
    assert max(versions) <= (2, 17), sorted(versions)


@pytest.mark.timeout(900)
def test_sdist_installs_and_runs(tmp_path):
    sdist = os.environ.get("COTYLEDON_TEST_SDIST")
    if not sdist:
        pytest.skip("COTYLEDON_TEST_SDIST unset: tests/python/run.sh sets it, on one interpreter")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    env = dict(os.environ)
    # The compiled dependencies are kept between runs (a first run builds
    # them all); the sdist's own crates are built from its sources. Their
    # fingerprints go first: maturin gives every file of the sdist the same
    # old mtime, so cargo would take an earlier sdist's artifacts as fresh.
    target = os.path.join(REPO, ".cache", "sdist-target")
    for stale in glob.glob(os.path.join(target, "**", ".fingerprint", "cotyledon*"), recursive=True):
        shutil.rmtree(stale)
    env["CARGO_TARGET_DIR"] = target
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(
        [python, "-m", "pip", "install", "--no-cache-dir", sdist],
        capture_output=True, text=True, timeout=900, env=env, cwd=str(tmp_path),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Building wheel for cotyledon" in proc.stdout, proc.stdout
    where = subprocess.run(
        [python, "-c", "import cotyledon._core as c; print(c.__file__)"],
        capture_output=True, text=True, timeout=60, cwd=str(tmp_path), check=True,
    ).stdout.strip()  # fmt: skip
    assert where.startswith(str(venv)), where

    # The quickstart runs on it: two workers, then SIGTERM, exit 0.
    app = App([python, QUICKSTART])
    try:
        try:
            runs = app.err.wait_count(r"\[(\d+)\] my_example_service worker \d running\.\.\.$", 2)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{app.dump()}") from None
        app.signal(signal.SIGTERM)
        assert app.wait_exit(15) == 0, app.dump()
        wait_pids_gone([m.group(1) for m in runs], 5)
    finally:
        app.kill_all()
        with _APP_GROUPS_LOCK:
            _APP_GROUPS.discard(app.pid)
