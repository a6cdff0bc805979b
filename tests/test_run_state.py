"""The run's status as a state machine: moves forward only, terminal states cannot be left."""
from __future__ import annotations

from pipeline_magics.metrics.model import PipelineMetrics, StepMetrics
from pipeline_magics.metrics.status import RunStatus


def metrics() -> PipelineMetrics:
    m = PipelineMetrics("p", "r1", "streaming")
    m.steps = [StepMetrics(0, "src", "extract", "fromRate"), StepMetrics(1, "a", "load", "toMemory"),
               StepMetrics(2, "b", "load", "toParquet")]
    return m


def test_a_run_whose_query_runs_on_is_done_only_when_the_query_ends():
    m = metrics()
    state = RunStatus(m, clock=lambda: 5.0)
    state.start()
    for i in range(3):
        state.step_started(i)
    state.step_finished(0)
    state.step_finished(1, query=True)
    state.step_finished(2, query=True)
    state.steps_over()
    assert m.status == "running" and [s.status for s in m.steps] == ["done", "running", "running"]
    state.query_ended(1)
    assert m.status == "running"
    state.query_ended(2)
    assert m.status == "done" and m.end == 5.0


def test_a_failed_run_stays_failed_and_its_stopped_queries_are_cancelled():
    m = metrics()
    state = RunStatus(m)
    state.start()
    state.step_started(0)
    state.step_finished(0)
    state.step_started(1)
    state.step_finished(1, query=True)
    state.step_started(2)
    state.step_failed(2, "bad option")
    state.fail("step 3 failed: bad option")
    assert m.status == "failed" and m.error == "step 3 failed: bad option"
    assert [s.status for s in m.steps] == ["done", "cancelled", "failed"]
    state.query_ended(1)  # a later refresh reads the stopped query: nothing changes
    state.steps_over()
    assert m.status == "failed" and m.steps[1].status == "cancelled"


def test_terminal_states_cannot_be_left():
    m = metrics()
    state = RunStatus(m)
    state.start()
    state.fail(None, cancelled=True)
    assert m.status == "cancelled" and all(s.status == "cancelled" for s in m.steps)
    state.fail("later")
    state.start()
    assert m.status == "cancelled"


def test_steps_left_out_are_checked_or_skipped_before_they_run_only():
    m = metrics()
    state = RunStatus(m)
    state.start()
    state.step_left_out(0, "checked")
    state.step_left_out(1, "skipped")
    state.step_started(2)
    state.step_left_out(2, "skipped")  # a running step is not left out
    state.step_started(1)  # nor does a skipped one start
    assert [s.status for s in m.steps] == ["checked", "skipped", "running"]
    state.step_finished(2)
    state.steps_over()
    assert m.status == "done"
