"""ThreadPool: jobs run in worker threads with their own context, errors never kill a
thread, and a thread stuck in a job can be replaced so the pool does not shrink."""

from __future__ import annotations

import contextvars
import logging
import threading
import time

import pytest

from aiogate.thread_pool import ThreadPool

WAIT = 10.0


@pytest.fixture
def pool() -> ThreadPool:
    pool = ThreadPool(2, name="test-worker")
    pool.start()
    yield pool  # type: ignore[misc]
    pool.shutdown(WAIT)


def run_and_wait(pool: ThreadPool, job: object) -> None:
    done = threading.Event()

    def wrapped() -> None:
        try:
            job()  # type: ignore[operator]
        finally:
            done.set()

    pool.submit(wrapped)
    assert done.wait(WAIT)


def test_jobs_run_in_worker_threads_with_a_copied_context(pool: ThreadPool) -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    var.set("submitter")
    seen: list[tuple[str, str]] = []

    def job() -> None:
        seen.append((threading.current_thread().name, var.get()))
        var.set("changed in the job")

    run_and_wait(pool, job)
    run_and_wait(pool, job)
    assert [value for _, value in seen] == ["submitter", "submitter"]
    assert all(name.startswith("test-worker-") for name, _ in seen)
    assert var.get() == "submitter"


class Recorder(logging.Handler):
    """Collects records and wakes a waiter at each (jobs log after they return)."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.semaphore = threading.Semaphore(0)

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.semaphore.release()


def test_a_failing_job_is_logged_and_the_thread_lives_on(pool: ThreadPool) -> None:
    def fails() -> None:
        raise RuntimeError("boom")

    recorder = Recorder()
    logger = logging.getLogger("aiogate.error")
    logger.addHandler(recorder)
    try:
        pool.submit(fails)
        pool.submit(fails)
        assert recorder.semaphore.acquire(timeout=WAIT)
        assert recorder.semaphore.acquire(timeout=WAIT)
    finally:
        logger.removeHandler(recorder)
    assert [r.getMessage() for r in recorder.records] == [
        "Unhandled error in a worker thread job"
    ] * 2
    assert all(r.exc_info and r.exc_info[0] is RuntimeError for r in recorder.records)
    ran = threading.Event()
    pool.submit(ran.set)
    assert ran.wait(WAIT)
    assert pool.statistics()["threads"] == 2


def test_a_stuck_thread_is_replaced_and_exits_when_its_job_returns(
    pool: ThreadPool,
) -> None:
    release = threading.Event()
    stuck_started = threading.Event()
    stuck_thread: list[threading.Thread] = []

    def stuck() -> None:
        stuck_thread.append(threading.current_thread())
        stuck_started.set()
        release.wait(WAIT)

    blockers = [threading.Event() for _ in range(2)]
    pool.submit(stuck)
    assert stuck_started.wait(WAIT)
    assert pool.replace(stuck_thread[0])
    assert pool.statistics()["stuck"] == 1
    # Two threads besides the stuck one: two jobs that block both run at once.
    both_running = threading.Barrier(3)

    def blocker(index: int) -> None:
        both_running.wait(WAIT)
        blockers[index].wait(WAIT)

    pool.submit(lambda: blocker(0))
    pool.submit(lambda: blocker(1))
    both_running.wait(WAIT)  # raises BrokenBarrierError if the pool had shrunk
    for event in blockers:
        event.set()
    release.set()
    stuck_thread[0].join(WAIT)
    assert not stuck_thread[0].is_alive()  # retired after its job
    assert pool.statistics()["stuck"] == 0
    assert pool.shutdown(WAIT)


def test_replacing_is_capped_at_the_pool_size(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pool = ThreadPool(1, name="capped")
    pool.start()
    release = threading.Event()
    threads: list[threading.Thread] = []
    started = threading.Semaphore(0)

    def stuck() -> None:
        threads.append(threading.current_thread())
        started.release()
        release.wait(WAIT)

    pool.submit(stuck)
    assert started.acquire(timeout=WAIT)
    assert pool.replace(threads[0])
    pool.submit(stuck)
    assert started.acquire(timeout=WAIT)
    with caplog.at_level(logging.WARNING, "aiogate.error"):
        assert not pool.replace(threads[1])
    assert any("running short" in r.getMessage() for r in caplog.records)
    release.set()
    assert pool.shutdown(WAIT)


def test_serving_counts_replacements_and_not_the_stuck() -> None:
    """Issue 15: liveness reads ``serving``. Two threads stuck and replaced: two
    serve. Their replacements stuck too (not replaced, the cap): none serves. One
    of the first returns: its exit pays for a replacement of a second-round one."""
    pool = ThreadPool(2, name="serving")
    pool.start()
    releases = [threading.Event() for _ in range(4)]
    threads: list[threading.Thread] = []
    started = threading.Semaphore(0)

    def stuck(index: int) -> None:
        threads.append(threading.current_thread())
        started.release()
        releases[index].wait(WAIT)

    try:
        assert pool.statistics()["serving"] == 2
        for index in (0, 1):
            pool.submit(lambda index=index: stuck(index))  # type: ignore[misc]
        for _ in range(2):
            assert started.acquire(timeout=WAIT)
        assert all(pool.replace(thread) for thread in threads)
        stats = pool.statistics()
        assert (stats["stuck"], stats["serving"]) == (2, 2)
        # The replacements serve: a job runs while both originals are stuck.
        run_and_wait(pool, lambda: None)
        for index in (2, 3):
            pool.submit(lambda index=index: stuck(index))  # type: ignore[misc]
        for _ in range(2):
            assert started.acquire(timeout=WAIT)
        assert not pool.replace(threads[2])
        assert not pool.replace(threads[3])
        assert not pool.replace(threads[3])  # asked again: still short, said once
        assert pool.statistics()["serving"] == 0
        # An original returns and exits; one of the short ones is replaced.
        releases[0].set()
        threads[0].join(WAIT)
        assert not threads[0].is_alive()
        stats = pool.statistics()
        assert (stats["stuck"], stats["serving"]) == (2, 1)
        run_and_wait(pool, lambda: None)
        # A stuck thread that was never replaced serves again once its job returns;
        # the replaced ones exit.
        for event in releases:
            event.set()
        for thread in threads[:2]:
            thread.join(WAIT)
        deadline = time.monotonic() + WAIT
        while pool.statistics()["stuck"] or pool.statistics()["busy"]:
            assert time.monotonic() < deadline
            time.sleep(0.01)  # (polling a condition, bounded)
        assert pool.statistics() == {
            "threads": 2,
            "busy": 0,
            "queued": 0,
            "stuck": 0,
            "serving": 2,
        }
    finally:
        for event in releases:
            event.set()
        assert pool.shutdown(WAIT)
