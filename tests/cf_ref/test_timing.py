"""cf_ref.timing: sleeping counts as wall time, busy work as CPU time; spans add up, also when they raise; stage
records merge by label. (Only lower bounds: the CPU time of a sleep depends on other threads of the process.)"""

import time

import pytest

from cf_ref.timing import StageTimes, Stopwatch


def _busy(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_sleep_is_wall_time_busy_work_is_cpu_time():
    sleeping, working = Stopwatch(), Stopwatch()
    with sleeping.running():
        time.sleep(0.05)
    with working.running():
        _busy(0.05)
    assert sleeping.wall >= 0.05 and sleeping.as_dict() == {"wall_s": sleeping.wall, "cpu_s": sleeping.cpu}
    assert working.cpu >= 0.05 and working.wall > 0


def test_spans_accumulate_even_when_they_raise():
    watch = Stopwatch()
    with watch.running():
        time.sleep(0.01)
    with pytest.raises(RuntimeError), watch.running():
        time.sleep(0.01)
        raise RuntimeError("stage failed")
    assert watch.wall >= 0.02
    assert watch.minus(Stopwatch(0.005, 0.0)).wall == pytest.approx(watch.wall - 0.005)


def test_stage_times_report_and_merge():
    reported = []
    a = StageTimes(report=reported.append)
    with a.stage("pairs"):
        time.sleep(0.01)
    with a.stage("students"):
        pass
    with a.stage("pairs"):
        time.sleep(0.01)
    assert reported == ["pairs", "students", "pairs"] and list(a.stages) == ["pairs", "students"]
    assert a.stages["pairs"].wall >= 0.02
    b = StageTimes(stages={"pairs": Stopwatch(1.0, 0.5), "figures": Stopwatch(2.0, 1.0)})
    merged = a.merged(b).as_dict()
    assert list(merged) == ["pairs", "students", "figures"]
    assert merged["pairs"]["wall_s"] == pytest.approx(a.stages["pairs"].wall + 1.0)
    assert merged["figures"] == {"wall_s": 2.0, "cpu_s": 1.0}
