"""A tiny OTLP/HTTP receiver on loopback for tests: it decodes what arrives at /v1/logs and
/v1/metrics with the opentelemetry-proto classes and keeps it, so tests check real payloads."""

from __future__ import annotations

import gzip
import threading
import zlib
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest, ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric


def value_of(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [value_of(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return attributes_of(value.kvlist_value.values)
    return getattr(value, kind)


def attributes_of(pairs: Any) -> dict[str, Any]:
    return {kv.key: value_of(kv.value) for kv in pairs}


@dataclass
class Record:
    resource: dict[str, Any]
    scope: str
    record: LogRecord

    @property
    def attributes(self) -> dict[str, Any]:
        return attributes_of(self.record.attributes)


@dataclass
class Point:
    resource: dict[str, Any]
    metric: Metric
    point: Any  # NumberDataPoint or HistogramDataPoint

    @property
    def attributes(self) -> dict[str, Any]:
        return attributes_of(self.point.attributes)


class OtlpReceiver:
    def __init__(self, port: int = 0) -> None:
        self.lock = threading.Lock()
        self.logs: list[ExportLogsServiceRequest] = []
        self.metrics: list[ExportMetricsServiceRequest] = []
        self.requests: list[tuple[str, dict[str, str]]] = []  # path, headers
        self.status = 200  # what to answer (503 …) instead of accepting
        self.port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                encoding = self.headers.get("Content-Encoding", "")
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                with receiver.lock:
                    receiver.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
                    status = receiver.status
                if status != 200:
                    self._answer(status, b"not now")
                    return
                if self.path == "/v1/logs":
                    request, response = ExportLogsServiceRequest.FromString(body), ExportLogsServiceResponse()
                    with receiver.lock:
                        receiver.logs.append(request)
                elif self.path == "/v1/metrics":
                    request, response = ExportMetricsServiceRequest.FromString(body), ExportMetricsServiceResponse()
                    with receiver.lock:
                        receiver.metrics.append(request)
                else:
                    self._answer(404, b"no such signal")
                    return
                self._answer(200, response.SerializeToString(), "application/x-protobuf")

            def _answer(self, status: int, body: bytes, kind: str = "text/plain") -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Close the socket: the endpoint is down (connection refused) until start()."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # -- what arrived ------------------------------------------------------------------------
    def records(self) -> list[Record]:
        with self.lock:
            requests = list(self.logs)
        return [Record(attributes_of(rl.resource.attributes), sl.scope.name, rec)
                for req in requests for rl in req.resource_logs for sl in rl.scope_logs for rec in sl.log_records]

    def points(self, name: str | None = None) -> list[Point]:
        with self.lock:
            requests = list(self.metrics)
        out = []
        for req in requests:
            for rm in req.resource_metrics:
                resource = attributes_of(rm.resource.attributes)
                for sm in rm.scope_metrics:
                    for metric in sm.metrics:
                        if name is not None and metric.name != name:
                            continue
                        data = getattr(metric, metric.WhichOneof("data"))
                        out += [Point(resource, metric, p) for p in data.data_points]
        return out
