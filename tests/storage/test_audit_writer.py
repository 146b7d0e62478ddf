"""The audit writer batches records: bounded batches, and calls close together share one write."""

from __future__ import annotations

import threading

from cds_service.storage.audit_trail import BATCH_SIZE, AuditWriter


class Recorder:
    def __init__(self) -> None:
        self.batches: list[int] = []
        self.gate = threading.Event()

    def __call__(self, batch: list) -> None:
        self.gate.wait(5)
        self.batches.append(len(batch))


def test_batches_never_exceed_the_batch_size():
    recorder = Recorder()
    writer = AuditWriter(recorder, capacity=1000)
    for i in range(250):
        assert writer.submit(i)  # type: ignore[arg-type]
    recorder.gate.set()
    assert writer.flush(5)
    writer.close()
    assert sum(recorder.batches) == 250
    assert max(recorder.batches) <= BATCH_SIZE


def test_records_arriving_together_are_written_in_one_transaction():
    recorder = Recorder()
    recorder.gate.set()
    writer = AuditWriter(recorder, capacity=1000)
    for i in range(5):
        writer.submit(i)  # type: ignore[arg-type]
    assert writer.flush(5)
    writer.close()
    assert recorder.batches == [5]


def test_close_writes_what_is_waiting_without_lingering():
    recorder = Recorder()
    recorder.gate.set()
    writer = AuditWriter(recorder, capacity=1000)
    writer.submit(1)  # type: ignore[arg-type]
    writer.close(timeout=2)
    assert sum(recorder.batches) == 1
    assert writer.stats()["recorded"] == 1
