"""How the pipeline collects its tasks: in the order they finish (the progress bar follows the
engine), results still by submission order; with one in-process worker each result is handed
over before the next task runs (a run killed midway keeps what it finished); errors reach the
caller."""

import threading

import pytest

from geostudy.pipeline.executor import ThreadExecutor, collect_as_done, run_as_done


def test_results_are_handed_over_in_the_order_the_tasks_finish():
    release = threading.Event()

    def slow():
        release.wait(10)
        return "slow"

    def fast():
        return "fast"

    seen = []

    def on_done(i, result):
        seen.append((i, result))
        release.set()  # the slow task may end only once the fast one was reported

    with ThreadExecutor(2) as executor:
        futures = [executor.submit(slow), executor.submit(fast)]
        assert collect_as_done(futures, on_done=on_done) == ["slow", "fast"]
    assert seen == [(1, "fast"), (0, "slow")]


def test_one_worker_hands_each_result_over_before_the_next_task_runs():
    events = []

    def task(i):
        events.append(("run", i))
        return i * 10

    with ThreadExecutor(1) as executor:
        run_as_done(executor, [(task, (i,)) for i in range(3)], on_done=lambda i, r: events.append(("done", i, r)))
    assert events == [("run", 0), ("done", 0, 0), ("run", 1), ("done", 1, 10), ("run", 2), ("done", 2, 20)]


@pytest.mark.parametrize("workers", [1, 2])
def test_a_task_error_reaches_the_caller(workers):
    def bad():
        raise ValueError("boom")

    with ThreadExecutor(workers) as executor:
        with pytest.raises(ValueError, match="boom"):
            run_as_done(executor, [(bad, ())], on_done=lambda i, r: None)
