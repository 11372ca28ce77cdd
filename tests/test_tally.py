"""The shared metrics region in memory (``Region(shared=False)``: the same code on a
bytearray): slots sum, a fold keeps every count exactly once, a reader never sees a
fold half done, and ``render`` turns the rows into summed counters and per-worker
gauges."""

from __future__ import annotations

import os
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from aiogate import tally
from aiogate.metrics import (
    CELLS,
    COUNTERS,
    Cell,
    Kind,
    Metrics,
    Refusal,
    render,
)
from aiogate.tally import Region, RetryLater, ServerTally


def worker(region: Region) -> tuple[int, Metrics]:
    index = region.claim(lambda i: [(Cell.KIND, Kind.WORKER), (Cell.NUMBER, i - 1)])
    region.started(index, 1000 + index)
    return index, Metrics(region.slot(index), region.rows)


def total(region: Region, cell: int) -> float:
    return sum(row[cell] for row in region.rows())


def samples(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def scrape(region: Region) -> dict[str, float]:
    return samples(render(region.rows(), max_fds=1024, build={"version": "x"}))


def test_slots_sum_and_a_fold_keeps_each_count_once() -> None:
    region = Region(4, CELLS, COUNTERS, shared=False)
    (first, a), (second, b) = worker(region), worker(region)
    assert (first, second) == (1, 2)
    for _ in range(3):
        a.observe_request(200, 0.002, 0.0, 10)
    b.observe_request(404, 3.0, 0.5, 5)
    b.observe_request(999, 0.1, 0.0, 0)  # any three digits an app may send
    b.rejected(Refusal.URI_TOO_LONG)
    before = scrape(region)
    assert before['aiogate_requests_total{status="200"}'] == 3
    assert before['aiogate_requests_total{status="404"}'] == 1
    assert before['aiogate_requests_total{status="999"}'] == 1
    assert before["aiogate_request_duration_seconds_count"] == 5
    assert before['aiogate_request_duration_seconds_bucket{le="0.005"}'] == 3
    assert before['aiogate_request_duration_seconds_bucket{le="2.5"}'] == 4
    assert before['aiogate_request_duration_seconds_bucket{le="5"}'] == 5
    assert before["aiogate_sent_bytes_total"] == 35
    assert before['aiogate_rejections_total{reason="uri_too_long"}'] == 1
    assert before['aiogate_threads{worker="0"}'] == 0
    assert before['aiogate_worker_pid{worker="1"}'] == 1002

    region.fold(first)  # worker a is gone
    after = scrape(region)
    assert {k: v for k, v in after.items() if not k.startswith("aiogate_")} == {
        k: v for k, v in before.items() if not k.startswith("aiogate_")
    }
    counted = [name for name in before if "_total" in name or "_bucket" in name]
    assert {name: after[name] for name in counted} == {
        name: before[name] for name in counted
    }
    assert 'aiogate_threads{worker="0"}' not in after  # its gauges are gone
    assert region.slot(first).tolist() == [0.0] * CELLS  # free, and clean

    # The freed slot is reused (the lowest first): labels stay few.
    again, c = worker(region)
    assert again == first
    c.observe_request(200, 0.002, 0.0, 1)
    assert scrape(region)['aiogate_requests_total{status="200"}'] == 4


def test_a_fold_keeps_the_larger_cpu_time() -> None:
    region = Region(3, CELLS, COUNTERS, shared=False)
    index, metrics = worker(region)
    metrics.publish({}, {"cpu": 2.0, "resident": 100.0})
    region.fold(index, [(Cell.CPU, 2.5)])  # the kernel's account is later
    assert total(region, Cell.CPU) == 2.5
    index, metrics = worker(region)
    metrics.publish({}, {"cpu": 1.0})
    region.fold(index, [(Cell.CPU, 0.5)])  # never below what was published
    assert total(region, Cell.CPU) == 3.5
    assert total(region, Cell.RESIDENT_MEMORY) == 0  # a gauge: not kept


class FoldWhileReading(Region):
    """A region whose supervisor folds ``victim`` just after a reader has read slot
    0 (the retired counts) and before it reads the victim's slot, the worst moment
    for a reader without the seqlock."""

    victim = -1
    reading = False

    def slot(self, index: int) -> memoryview[float]:
        if index > 0 and self.reading and self.victim > 0:
            victim, self.victim = self.victim, -1
            self.reading = False
            self.fold(victim)
        return super().slot(index)

    def rows(self) -> list[list[float]]:
        self.reading = True
        try:
            return super().rows()
        finally:
            self.reading = False


def test_a_reader_never_sees_a_fold_half_done() -> None:
    region = FoldWhileReading(4, CELLS, COUNTERS, shared=False)
    index, metrics = worker(region)
    for _ in range(5):
        metrics.observe_request(200, 0.01, 0.0, 0)
    region.victim = index
    assert total(region, Cell.STATUS + 200) == 5  # retried after the fold
    assert region.victim == -1  # (the fold did happen during that read)


def test_a_reader_gives_up_rather_than_guess_while_a_fold_lasts() -> None:
    region = Region(2, CELLS, COUNTERS, shared=False)
    view = cast("Any", region)._view  # what a supervisor stopped mid-fold leaves
    view[0] += 1  # odd
    with pytest.raises(RetryLater):
        region.rows()
    view[0] += 1
    assert len(region.rows()) == 1


def test_the_supervisor_side_gives_slots_and_folds_on_reap() -> None:
    supervisor = ServerTally(workers=2)
    region = supervisor.region
    slot = supervisor.before_fork()
    assert slot == 1
    supervisor.forked(slot, 4242)
    Metrics(region.slot(slot), region.rows).observe_request(200, 0.1, 0.0, 3)
    supervisor.publish()  # the supervisor's own process sample, in its own slot
    rows = region.rows()
    assert [row[Cell.KIND] for row in rows[1:]] == [Kind.WORKER, Kind.SUPERVISOR]
    assert rows[-1][Cell.PID] == os.getpid()
    assert rows[-1][Cell.RESIDENT_MEMORY] > 0
    usage = SimpleNamespace(ru_utime=1.25, ru_stime=0.5)
    supervisor.reaped(4242, cast("Any", usage))
    supervisor.reaped(9999, cast("Any", usage))  # not a worker: nothing to fold
    assert region.slot(slot)[Cell.PID] == 0
    assert region.rows()[0][Cell.CPU] == 1.75
    assert region.rows()[0][Cell.STATUS + 200] == 1

    failed = supervisor.before_fork()
    supervisor.forked(failed, None)  # the fork failed: the slot is free again
    assert region.slot(failed)[Cell.PID] == 0

    taken = [supervisor.before_fork() for _ in range(region.slots - 2)]
    assert -1 not in taken
    assert not supervisor.full
    assert supervisor.before_fork() == -1
    assert supervisor.full


def test_a_worker_uses_the_slot_it_was_given() -> None:
    from aiogate.observe import new_metrics

    supervisor = ServerTally(workers=1)
    slot = supervisor.before_fork()
    supervisor.enter(slot)
    try:
        metrics = new_metrics()
        assert metrics.shared
        metrics.accepted()
        assert supervisor.region.slot(slot)[Cell.ACCEPTED] == 1
    finally:
        tally.assign(None)
    alone = new_metrics()
    assert not alone.shared
    assert alone.rows()[0][Cell.PID] == os.getpid()


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (400, "bad_request"),
        (405, "method_not_allowed"),
        (408, "timeout"),
        (413, "body_too_large"),
        (414, "uri_too_long"),
        (431, "headers_too_large"),
        (501, "not_implemented"),
        (505, "version_not_supported"),
    ],
)
def test_error_statuses_map_to_their_reason(status: int, reason: str) -> None:
    assert Refusal.of_status(status) == reason


def test_every_rejection_reason_is_rendered_with_its_label() -> None:
    metrics = Metrics()
    for number, reason in enumerate(Refusal, 1):
        for _ in range(number):
            metrics.rejected(reason)
    text = render(metrics.rows(), max_fds=1, build={"version": 'a"b'})
    for number, reason in enumerate(Refusal, 1):
        assert f'aiogate_rejections_total{{reason="{reason}"}} {number}\n' in text
    assert 'aiogate_build_info{version="a\\"b"} 1\n' in text
    assert re.search(r"^process_max_fds 1$", text, re.MULTILINE)


def test_the_readme_lists_every_metric_with_its_type() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    rows = dict(
        re.findall(r"^\| `(\w+)` \| (counter|gauge|histogram) \|", readme, re.M)
    )
    text = render(Metrics().rows(), max_fds=1, build={"version": "x"})
    rendered = dict(re.findall(r"^# TYPE (\w+) (\w+)$", text, re.M))
    assert rows == rendered
    reasons = set(
        re.findall(
            r"^\| `(\w+)` \| (?:\d{3}|503 at accept|none: closed) \|", readme, re.M
        )
    )
    assert reasons == {str(reason) for reason in Refusal}
