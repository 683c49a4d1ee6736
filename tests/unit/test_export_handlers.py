"""Export handlers: argument parsing, the registry, the per-instance set, the buffered wrapper's
bounded retry, and the file handler's rotation."""

from __future__ import annotations

import errno
import io
import os
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from supervisor.export import ExportConfigError, Exports, HandlerSpec, HandlerStats, register
from supervisor.export import registry as export_registry
from supervisor.export.args import HandlerOptions, parse_options, split_options
from supervisor.export.buffered import Buffered, BufferOptions
from supervisor.export.file import FileOptions, RotatingFile
from supervisor.export.jsonlines import Lines
from supervisor.export.stdout import StdoutHandler, StdoutOptions
from supervisor.store import StoreWriter
from workers.catalog import Catalog, default_search_path

COLS = ["ts", "pid", "comm", "dport"]


def wait_until(predicate: Any, timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.005)
    raise AssertionError(f"timed out; last value {predicate()!r}")


@pytest.fixture(scope="module")
def tcpconnect():
    return Catalog.discover(default_search_path()).get("tcpconnect")


# -- arguments ------------------------------------------------------------------------------
def test_list_and_object_forms_give_the_same_options() -> None:
    from_list = parse_options("file", FileOptions, ["/var/log/e.jsonl", "keep=3", "max_bytes=1MiB", "samples=false"])
    from_dict = parse_options("file", FileOptions, {"path": "/var/log/e.jsonl", "keep": 3, "max_bytes": "1MiB",
                                                    "samples": False})
    assert from_list == from_dict
    assert (from_list.path, from_list.keep, int(from_list.max_bytes), from_list.samples) == \
        ("/var/log/e.jsonl", 3, 1 << 20, False)
    assert parse_options("file", FileOptions, ["path=/x/y"]).path == "/x/y"


@pytest.mark.parametrize(("args", "needle"), [
    ([], "export handler 'file': argument 'path': Field required"),
    (["relative.jsonl"], "argument 'path': Value error, 'relative.jsonl' is not an absolute path"),
    (["/tmp/"], "is a directory, not a file"),
    (["/x", "keep=many"], "argument 'keep': Input should be a valid integer"),
    (["/x", "keep=-1"], "argument 'keep': Input should be greater than or equal to 0"),
    (["/x", "/y"], "unexpected argument '/y' (accepted: path=…, max_bytes=…, keep=…, events=…, samples=…)"),
    (["/x", "keep=1", "keep=2"], "argument 'keep' given twice"),
    ({"path": "/x", "colour": "red"}, "unknown argument 'colour' (accepted: path, max_bytes, keep, events, samples)"),
    ([1], "arguments must be strings, got 1"),
    ("/x", "args must be a list of strings or an object"),
])
def test_bad_arguments_name_the_handler_and_the_argument(args: Any, needle: str) -> None:
    with pytest.raises(ExportConfigError) as info:
        parse_options("file", FileOptions, args)
    assert needle in str(info.value)


def test_rest_collects_positionals() -> None:
    class Opts(HandlerOptions):
        rest = "metrics"
        metrics: list[str] = []
        strict: bool = False

    assert parse_options("x", Opts, ["a", "b=c", "strict=true"]) == Opts(metrics=["a", "b=c"], strict=True)
    assert parse_options("x", Opts, None) == Opts()


def test_buffer_options_are_split_out_of_either_form() -> None:
    assert split_options(["/x", "buffer=10", "keep=1"], ("buffer", "retry_max")) == ({"buffer": "10"},
                                                                                     ["/x", "keep=1"])
    assert split_options({"path": "/x", "retry_max": 2}, ("buffer", "retry_max")) == ({"retry_max": 2},
                                                                                      {"path": "/x"})


def test_handler_spec_from_api_config_and_names() -> None:
    assert HandlerSpec.of("stdout") == HandlerSpec("stdout", [])
    assert HandlerSpec.of({"name": "prometheus", "args": ["x"]}) == HandlerSpec("prometheus", ["x"])
    for bad, needle in [({"args": []}, "'name' must be a non-empty string"), ({"name": "x", "colour": 1},
                        "unknown key(s) ['colour']"), ({"name": "x", "args": "y"}, "args must be a list"),
                        (3, "expected an object")]:
        with pytest.raises(ExportConfigError, match=None) as info:
            HandlerSpec.of(bad)
        assert needle in str(info.value)


# -- registry and per-instance sets ---------------------------------------------------------
class Recorder:
    """A destination that remembers what it got; fails while ``failing`` is set."""

    def __init__(self, args: Any = None) -> None:
        self.args = args
        self.batches: list[tuple[str, Any]] = []
        self.failing = threading.Event()
        self.calls = 0
        self.closed = False

    def events(self, instance: str, tracer: str, columns: list[str], rows: list[list[Any]]) -> None:
        self.calls += 1
        if self.failing.is_set():
            raise ConnectionError("destination down")
        self.batches.append(("events", [r[1] for r in rows]))

    def samples(self, instance: str, ts: int, samples: list[Any]) -> None:
        self.calls += 1
        if self.failing.is_set():
            raise ConnectionError("destination down")
        self.batches.append(("samples", len(samples)))

    def dropped(self, instance: str) -> int:
        return 0

    def close(self) -> None:
        self.closed = True

    @property
    def stats(self) -> HandlerStats:
        return HandlerStats(detail={"calls": self.calls})


def test_unknown_handler_lists_the_available_ones(tcpconnect) -> None:
    with pytest.raises(ExportConfigError) as info:
        Exports().open("i-1", tcpconnect, [{"name": "kafka"}])
    message = str(info.value)
    assert message.startswith("export handler 'kafka': no such handler (available: ")
    assert all(name in message for name in ("file", "otlp", "prometheus", "sqlite", "stdout"))


def test_a_handler_whose_module_is_missing_fails_alone_with_the_reason(tcpconnect) -> None:
    register("test-missing", "no_such_module_xyz:Handler")
    try:
        with pytest.raises(ExportConfigError, match="export handler 'test-missing' is not available: "
                                                    "No module named 'no_such_module_xyz'"):
            Exports().open("i-1", tcpconnect, [{"name": "test-missing"}])
        kinds = {k.name: k for k in export_registry.handler_types()}
        assert "No module named" in kinds["test-missing"].availability()
        assert kinds["stdout"].availability() is None
    finally:
        export_registry._REGISTRY.pop("test-missing")


def test_one_line_registers_a_plugin_that_gets_only_its_instances_data(tcpconnect) -> None:
    made: list[Recorder] = []
    register("test-recorder", lambda args: made.append(Recorder(args)) or made[-1])
    try:
        exports = Exports()
        a = exports.open("a-1", tcpconnect, [{"name": "test-recorder", "args": ["x", "buffer=5"]}])
        b = exports.open("b-1", tcpconnect, [{"name": "test-recorder"}])
        assert [m.args for m in made] == [["x"], []]  # the wrapper's options are not passed on
        a.events("a-1", "tcpconnect", COLS, [[1, 11, "a", 80]])
        b.events("b-1", "tcpconnect", COLS, [[1, 22, "b", 80]])
        wait_until(lambda: made[0].batches and made[1].batches)
        assert made[0].batches == [("events", [11])] and made[1].batches == [("events", [22])]
        assert a.describe()[0] | {"detail": None} == {
            "id": "test-recorder", "name": "test-recorder", "args": ["x", "buffer=5"], "hop": "exporter", "sent": 1,
            "dropped": 0, "dropped_samples": 0, "errors": 0, "last_error": "", "queued": 0, "detail": None}
        exports.close(timeout=5)
        assert all(m.closed for m in made)
    finally:
        export_registry._REGISTRY.pop("test-recorder")


def test_default_is_sqlite_when_there_is_a_store(tcpconnect, tmp_path: Path) -> None:
    assert Exports().open("x-1", tcpconnect).entries == []
    writer = StoreWriter(tmp_path / "s.db")
    writer.start()
    try:
        export = Exports(writer).open("x-1", tcpconnect)
        assert [(e.id, e.kind.hop) for e in export.entries] == [("sqlite", "store")]
        export.events("x-1", "tcpconnect", COLS, [[1, 2, "c", 80]])
        assert export.describe()[0]["sent"] == 1
    finally:
        writer.close()
    with pytest.raises(ExportConfigError, match="export handler 'sqlite': this agent runs without a store"):
        Exports().open("x-2", tcpconnect, [{"name": "sqlite"}])


def test_destinations_only_one_handler_may_own(tcpconnect, tmp_path: Path) -> None:
    exports = Exports()
    path = str(tmp_path / "a.jsonl")
    first = exports.open("a-1", tcpconnect, [{"name": "file", "args": [path]}, {"name": "prometheus"}])
    with pytest.raises(ExportConfigError, match=rf"export handler 'file': the file {path} is already written by "
                                                r"instance 'a-1'"):
        exports.open("b-1", tcpconnect, [{"name": "stdout"}, {"name": "file", "args": [path]}])
    with pytest.raises(ExportConfigError, match="export handler 'prometheus': GET /metrics for c-1 is already "
                                                "written by an earlier handler of this instance"):
        exports.open("c-1", tcpconnect, [{"name": "prometheus"}, {"name": "prometheus"}])
    two = exports.open("d-1", tcpconnect, [{"name": "file", "args": [str(tmp_path / "d1")]},
                                           {"name": "file", "args": [str(tmp_path / "d2")]}])
    assert [e.id for e in two.entries] == ["file", "file-2"]
    first.close()  # frees the path
    exports.open("b-1", tcpconnect, [{"name": "file", "args": [path]}])
    exports.close(timeout=5)


# -- the buffered wrapper -------------------------------------------------------------------
def _buffered(inner: Recorder, buffer: int, **kw: Any) -> Buffered:
    return Buffered(inner, "test", BufferOptions(buffer=buffer, retry_max=0.05), retry_initial=0.01, **kw)


def test_failing_destination_loses_nothing_within_the_bound_and_counts_the_rest() -> None:
    dest = Recorder()
    dest.failing.set()
    wrapped = _buffered(dest, buffer=10)
    for pid in range(4):  # 4 batches of 2 events = 8 records, within the bound of 10
        wrapped.events("i", "t", COLS, [[0, pid, "c", 1], [0, pid, "c", 1]])
    wrapped.samples("i", 1, [("m", {}, 1.0)] * 3)  # a snapshot does not fit whole: dropped
    wrapped.events("i", "t", COLS, [[0, 4, "c", 1], [0, 4, "c", 1], [0, 4, "c", 1]])  # 2 of 3 events fit
    wrapped.samples("i", 2, [("m", {}, 1.0)])  # full: dropped
    wrapped.events("i", "t", COLS, [[0, 99, "c", 1]])  # full: dropped
    wait_until(lambda: wrapped.stats.errors >= 3)  # it keeps retrying the first batch
    stats = wrapped.stats
    assert (stats.queued, stats.sent, stats.dropped, stats.dropped_samples) == (10, 0, 2, 4)
    assert stats.last_error == "ConnectionError: destination down"
    assert wrapped.dropped("i") == 2
    dest.failing.clear()  # the destination recovers
    wait_until(lambda: wrapped.stats.queued == 0)
    assert dest.batches == [("events", [0, 0]), ("events", [1, 1]), ("events", [2, 2]), ("events", [3, 3]),
                            ("events", [4, 4])]  # everything within the bound, in order, once
    assert wrapped.stats.sent == 10
    wrapped.events("i", "t", COLS, [[0, 5, "c", 1]])  # and it takes new batches again
    wait_until(lambda: dest.batches[-1] == ("events", [5]))
    wrapped.close()
    assert wrapped.join(5)


def test_the_producer_never_waits_for_a_hung_destination() -> None:
    release = threading.Event()

    class Hung(Recorder):
        def events(self, *args: Any) -> None:
            release.wait()

    wrapped = _buffered(Hung(), buffer=100)
    started = time.monotonic()
    for _ in range(200):
        wrapped.events("i", "t", COLS, [[0, 1, "c", 1]])
    assert time.monotonic() - started < 1.0  # 200 calls, each only an append or a counted drop
    stats = wrapped.stats
    assert stats.queued + stats.dropped == 200 and stats.dropped >= 100
    release.set()
    wrapped.close()
    assert wrapped.join(5)


def test_what_the_handler_ignores_takes_no_room() -> None:
    class EventsOnly(Recorder):
        takes_samples = False

    dest = EventsOnly()
    dest.failing.set()
    wrapped = _buffered(dest, buffer=2)
    wrapped.samples("i", 1, [("m", {}, 1.0)] * 5)
    wrapped.events("i", "t", COLS, [[0, 1, "c", 1], [0, 2, "c", 1]])
    stats = wrapped.stats
    assert (stats.queued, stats.dropped, stats.dropped_samples) == (2, 0, 0)
    dest.failing.clear()
    wait_until(lambda: dest.batches == [("events", [1, 2])])
    wrapped.close()
    assert wrapped.join(5)


def test_close_drains_what_is_queued_then_gives_up_counting_the_rest() -> None:
    dest = Recorder()
    wrapped = _buffered(dest, buffer=100)
    wrapped.events("i", "t", COLS, [[0, 1, "c", 1]])
    wrapped.close()
    assert wrapped.join(5) and dest.batches == [("events", [1])] and dest.closed
    wrapped.events("i", "t", COLS, [[0, 2, "c", 1]])  # after close: counted, not queued
    assert wrapped.stats.dropped == 1

    down = Recorder()
    down.failing.set()
    stuck = _buffered(down, buffer=100, drain_timeout=0.2)
    stuck.events("i", "t", COLS, [[0, 1, "c", 1], [0, 2, "c", 1]])
    stuck.samples("i", 1, [("m", {}, 1.0)])
    stuck.close()
    assert stuck.join(5)
    assert (stuck.stats.dropped, stuck.stats.dropped_samples, stuck.stats.queued) == (2, 1, 0)


# -- stdout and file ------------------------------------------------------------------------
def test_stdout_writes_json_lines_of_events_and_samples() -> None:
    out = io.BytesIO()
    handler = StdoutHandler(StdoutOptions(), stream=out)
    handler.events("tcpconnect-1", "tcpconnect", COLS, [[5, 42, "curl", 443], [6, 43, None, 80]])
    handler.samples("tcpconnect-1", 7, [("eunomia_tcp_connects_total", {"dport": "443"}, 2.0)])
    lines = [orjson.loads(line) for line in out.getvalue().splitlines()]
    assert lines == [
        {"ts": 5, "pid": 42, "comm": "curl", "dport": 443, "instance": "tcpconnect-1", "tracer": "tcpconnect"},
        {"ts": 6, "pid": 43, "dport": 80, "instance": "tcpconnect-1", "tracer": "tcpconnect"},
        {"instance": "tcpconnect-1", "ts": 7, "metric": "eunomia_tcp_connects_total", "labels": {"dport": "443"},
         "value": 2.0}]
    only_events = io.BytesIO()
    StdoutHandler(StdoutOptions(samples=False), stream=only_events).samples("x", 1, [("m", {}, 1.0)])
    assert only_events.getvalue() == b""


def _lines(n: int, start: int = 0) -> list[bytes]:
    return [f"line {i:04d}\n".encode() for i in range(start, start + n)]  # 10 bytes each


def _buffer(lines: list[bytes]) -> Lines:
    out = Lines()
    for line in lines:
        out.data += line
        out.ends.append(len(out.data))
    return out


def _all_lines(path: Path, keep: int) -> list[bytes]:
    files = [Path(f"{path}.{k}") for k in range(keep, 0, -1)] + [path]
    return [line for f in files if f.exists() for line in f.read_bytes().splitlines(keepends=True)]


def test_rotation_keeps_n_files_no_bigger_than_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "e.jsonl"  # the folder is created
    rf = RotatingFile(path, max_bytes=35, keep=3)
    for batch in range(5):
        rf.write(_buffer(_lines(4, batch * 4)), key=batch)  # 20 lines, 200 bytes: 3 lines per file
    rf.close()
    files = sorted(p.name for p in path.parent.iterdir())
    assert files == ["e.jsonl", "e.jsonl.1", "e.jsonl.2", "e.jsonl.3"]
    assert all(p.stat().st_size <= 35 for p in path.parent.iterdir())
    assert _all_lines(path, 3) == _lines(20)[-len(_all_lines(path, 3)):]  # the newest, in order
    assert len(_all_lines(path, 3)) == 11  # 4 files: 3 full ones and the current with 2 lines
    assert rf.rotations == 6
    assert (path.stat().st_mode & 0o777) == 0o600


def test_keep_zero_and_a_line_longer_than_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    rf = RotatingFile(path, max_bytes=15, keep=0)
    rf.write(_buffer(_lines(1)), key=1)
    rf.write(_buffer([b"x" * 40 + b"\n"]), key=2)  # alone in a fresh file, not split, not lost
    rf.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.jsonl"]
    assert path.read_bytes() == b"x" * 40 + b"\n"


def test_a_failed_write_is_cut_back_and_the_retry_neither_loses_nor_repeats(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "e.jsonl"
    rf = RotatingFile(path, max_bytes=45, keep=5)
    rf.write(_buffer(_lines(2)), key=0)
    real_write = os.write
    calls = {"n": 0}

    def disk_full_on_second_write(fd: int, data: Any) -> int:
        calls["n"] += 1
        if calls["n"] == 2:
            real_write(fd, bytes(data)[:7])  # half a line reaches the disk, then ENOSPC
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", disk_full_on_second_write)
    batch = _buffer(_lines(6, 2))  # 2 lines fill this file, rotation, then 4 lines: the second write fails
    with pytest.raises(OSError, match="No space left"):
        rf.write(batch, key=7)
    monkeypatch.setattr(os, "write", real_write)
    rf.write(batch, key=7)  # the retry of the same batch
    rf.close()
    assert _all_lines(path, 5) == _lines(8)


def test_an_unwritable_path_is_an_error_until_it_is_fixed(tmp_path: Path) -> None:
    blocker = tmp_path / "logs"
    blocker.write_text("a file where the folder should be")
    dest = RotatingFile(blocker / "e.jsonl", max_bytes=1000, keep=1)
    with pytest.raises(OSError):
        dest.write(_buffer(_lines(3)), key=1)
    blocker.unlink()
    dest.write(_buffer(_lines(3)), key=1)
    dest.close()
    assert (blocker / "e.jsonl").read_bytes() == b"".join(_lines(3))


def test_file_handler_through_the_wrapper_retries_until_the_path_works(tcpconnect, tmp_path: Path) -> None:
    blocker = tmp_path / "logs"
    blocker.write_text("not a folder")
    path = blocker / "e.jsonl"
    export = Exports().open("f-1", tcpconnect, [{"name": "file", "args": [str(path), "retry_max=0.05"]}])
    for pid in range(3):
        export.events("f-1", "tcpconnect", COLS, [[0, pid, "c", 80]])
    wait_until(lambda: export.describe()[0]["errors"] >= 2)
    info = export.describe()[0]
    assert info["queued"] == 3 and info["sent"] == 0 and str(blocker) in info["last_error"]
    blocker.unlink()
    wait_until(lambda: export.describe()[0]["queued"] == 0)
    assert [orjson.loads(line)["pid"] for line in path.read_bytes().splitlines()] == [0, 1, 2]
    export.close()
