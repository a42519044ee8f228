"""tests/early.py: a session starts the children of its selected tests once
collection is done, skips those of deselected and skip-marked tests, and
kills what still runs when it ends (here: -x after a failure)."""
from __future__ import annotations

import os
import pathlib
import subprocess
import sys

TESTS = """
import os, sys, pytest
from early import EarlyProcess

SLEEPER = EarlyProcess("sleeper", [sys.executable, "-c", "import time; time.sleep(120)"])
QUICK = EarlyProcess("quick", [sys.executable, "-c", "print('hi')"])
SKIPPED = EarlyProcess("skipped", [sys.executable, "-c", "pass"])


@pytest.mark.skipif(True, reason="its child is never started")
@pytest.mark.early(SKIPPED)
def test_skipped():
    pass


@pytest.mark.early(QUICK)
def test_quick():
    started = QUICK.proc is not None          # before this test asked
    assert QUICK.result().stdout == "hi\\n" and started
    assert SKIPPED.proc is None
    if os.environ.get("SLEEPER_DESELECTED"):
        assert SLEEPER.proc is None


@pytest.mark.early(SLEEPER)
def test_sleeper_then_fail():
    with open(os.environ["SLEEPER_PID_FILE"], "w") as f:
        f.write(str(SLEEPER.proc.pid))
    assert False


def test_after():
    pass
"""


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    st = pathlib.Path(f"/proc/{pid}/stat")      # a zombie is not running
    return not (st.exists() and st.read_text().split(") ")[-1].startswith("Z"))


def _pytest(tmp_path, *args, **env):
    (tmp_path / "test_children.py").write_text(TESTS)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(pathlib.Path(__file__).parent), os.environ.get("PYTHONPATH", "")]),
        SLEEPER_PID_FILE=str(tmp_path / "pid"), **env)
    env.pop("FASTACT_EARLY_PROCESSES", None)
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "early", "-p", "no:cacheprovider",
                           "-q", "-rs", "test_children.py", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)


def test_children_start_early_and_die_with_the_session(tmp_path):
    r = _pytest(tmp_path, "-x")
    assert "1 failed, 1 passed" in r.stdout, r.stdout[-3000:]
    pid = int((tmp_path / "pid").read_text())
    assert not _alive(pid), "the sleeper outlived the session"


def test_deselected_tests_start_no_child(tmp_path):
    r = _pytest(tmp_path, "-k", "quick or after", SLEEPER_DESELECTED="1")
    assert "2 passed" in r.stdout, r.stdout[-3000:]
    assert not (tmp_path / "pid").exists()
