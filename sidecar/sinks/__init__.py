"""Prediction-log sinks: stdout, a rotating file, an HTTP endpoint (CloudEvents).

The unit of delivery is a :class:`LogBatch`: the rows of one captured
exchange, serialised once with :meth:`PredictionRecord.to_log` and shared by
every sink. The capture worker hands it over with :meth:`Sink.offer`, which is
synchronous and O(1), never awaits and never raises. Each sink owns a queue
bounded in rows and in bytes and a background task that drains it; when the
queue is full the whole batch is dropped and counted, so a slow or dead sink
costs the proxy nothing and holds a bounded amount of memory.

Every row offered ends in exactly one count of
``mlsidecar_log_records_total{model,sink,outcome}`` (:class:`LogMetrics`):

- ``written``: the sink took it (written to the stream or file, or the
  endpoint answered 2xx);
- ``failed``: delivery was tried and gave up (an I/O error, or the last HTTP
  attempt failed);
- ``dropped``: never delivered: the queue was full, it came after
  :meth:`Sink.close` began, or the shutdown deadline came first.

Wiring, in the capture worker and at shutdown::

    sinks = build_sinks(parse_sink_spec("stdout,file:/var/log/p.jsonl"), source="ml-sidecar/iris",
                        queue_size=10_000, file_max_bytes=100 << 20, file_backups=5, http_timeout=5.0,
                        queue_max_bytes=8 << 20)
    registry.register(LogMetrics("iris", sinks))
    for sink in sinks:
        await sink.start()
    ...
    batch = LogBatch.from_records(records)  # after privacy.Anonymizer.apply
    for sink in sinks:
        sink.offer(batch)
    ...
    deadline = asyncio.get_running_loop().time() + 5.0
    await asyncio.gather(*(sink.close(deadline) for sink in sinks))
"""

from __future__ import annotations

from sidecar.sinks.base import LogBatch, LogMetrics, Sink
from sidecar.sinks.files import FileSink, StdoutSink
from sidecar.sinks.http import CE_TYPE, HttpSink
from sidecar.sinks.spec import build_sinks, parse_sink_spec

__all__ = [
    "CE_TYPE",
    "FileSink",
    "HttpSink",
    "LogBatch",
    "LogMetrics",
    "Sink",
    "StdoutSink",
    "build_sinks",
    "parse_sink_spec",
]
