"""The checker's pytest plugin keeps pytest's reporting out of the learner's reach: a test's time
limit is paused while pytest writes its report, and gc callbacks the learner's code left behind
are removed (either could otherwise raise inside pytest's `ast.parse` and end the run with
pytest's internal error, exit 3; tests/kit/test_check_learners.py runs the whole command)."""

from __future__ import annotations

import gc
import signal

import pytest

from ftkit.check.plugin import _drop_learner_gc_callbacks, _timer_paused

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGALRM"), reason="needs SIGALRM")


def test_a_time_limit_is_paused_while_pytest_reports_and_then_resumes():
    fired = []
    previous = signal.signal(signal.SIGALRM, lambda signum, frame: fired.append(signum))
    signal.setitimer(signal.ITIMER_REAL, 5.0, 1.0)
    try:
        with _timer_paused():
            assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
        left, interval = signal.getitimer(signal.ITIMER_REAL)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert 4.0 < left <= 5.0 and interval == 1.0
    assert not fired


def test_a_cancelled_time_limit_stays_cancelled():
    with _timer_paused():
        pass
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_only_the_learners_gc_callbacks_are_removed():
    learner: dict = {}
    exec(
        compile(
            "def complain(phase, info):\n    raise RuntimeError(phase)\n",
            "/tmp/learner_x.py",
            "exec",
        ),
        learner,
    )  # noqa: S102
    kept = gc.callbacks[:]
    gc.callbacks.append(learner["complain"])
    try:
        _drop_learner_gc_callbacks()
        assert learner["complain"] not in gc.callbacks
        assert gc.callbacks == kept  # pytest's, hypothesis's and the kit's stay
    finally:
        gc.callbacks[:] = kept
