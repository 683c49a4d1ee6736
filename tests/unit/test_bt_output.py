"""workers.bt_output: bpftrace's JSON records → events and metric samples (records as bpftrace 0.17 prints them)."""

from __future__ import annotations

import json

from workers.bt_output import OutputParser

EVENT = {"format": "kv", "fields": [{"name": "ret", "type": "int"}, {"name": "filename", "type": "str"},
                                    {"name": "kind", "type": "int", "enum": {0: "enter", 1: "exit"}}]}
METRICS = [
    {"name": "execs_total", "type": "counter", "labels": [{"name": "comm"}, {"name": "pid"}], "scale": 1.0},
    {"name": "plain_total", "type": "counter", "labels": [], "scale": 1.0},
    {"name": "size", "type": "histogram", "labels": [], "scale": 1.0},
    {"name": "lat_seconds", "type": "histogram", "labels": [{"name": "comm"}], "scale": 1e-9},
    {"name": "avg_size", "type": "gauge", "labels": [], "scale": 1.0},
    {"name": "st", "type": "histogram", "labels": [], "scale": 1.0},
]


def record(kind: str, data: object) -> bytes:
    return json.dumps({"type": kind, "data": data}).encode()


def parser(event: dict | None = EVENT, offset: int = 1000) -> OutputParser:
    return OutputParser(event, METRICS, offset)


def test_kv_event_with_header_values_containing_spaces_and_enum() -> None:
    p = parser()
    p.feed(record("printf", "\x1e5 42 43 1000 100 7 Web Content\x1fret=-2 filename=/tmp/a b=c kind=1\n"))
    assert p.columns == ["ts", "cgroup_id", "pid", "tid", "uid", "gid", "comm", "ret", "filename", "kind"]
    assert p.take_rows() == [[1005, 7, 42, 43, 1000, 100, "Web Content", -2, "/tmp/a b=c", "exit"]]
    assert p.errors == 0


def test_missing_fields_are_none_and_bad_lines_are_counted_not_fatal() -> None:
    p = parser()
    p.feed(record("printf", "\x1e5 1 1 0 0 1 sh\x1ffilename=/x\n"))
    p.feed(record("printf", "\x1e5 1 1 0 0 1 sh\x1fret=notanumber\n"))
    p.feed(record("printf", "\x1e5 1 1 0 0 1 sh\x1fnothing known here\n"))
    p.feed(record("printf", "\x1ebroken header\n"))
    p.feed(b"{not json")
    p.feed(b"[1, 2]")
    assert p.take_rows() == [[1005, 1, 1, 1, 0, 0, "sh", None, "/x", None]]
    assert p.errors == 5
    assert "not valid" in p.last_error or "not a JSON object" in p.last_error


def test_json_events() -> None:
    p = parser({"format": "json", "fields": [{"name": "a", "type": "int"}, {"name": "b", "type": "str"}]})
    p.feed(record("printf", '\x1e5 1 2 3 4 5 x\x1f{"a": 3, "b": "q\\"uote"}\n'))
    p.feed(record("printf", '\x1e5 1 2 3 4 5 x\x1f{"a": 3, "zz": 1}\n'))
    assert p.take_rows() == [[1005, 5, 1, 2, 3, 4, "x", 3, 'q"uote']]
    assert p.errors == 1 and "zz" in p.last_error


def test_text_lost_events_attach_and_helper_errors() -> None:
    p = parser()
    p.feed(record("attached_probes", {"probes": 3}))
    p.feed(record("printf", "Tracing... Hit Ctrl-C\n"))
    p.feed(record("time", "10:22:04\n"))
    p.feed(record("lost_events", {"events": 1540}))
    p.feed(record("lost_events", {"events": 26}))
    p.feed(b'{"type": "helper_error", "helper": "probe_read", "retcode": -14, "line": 3, "col": 4}')
    assert p.attached == 3 and p.lost == 1566 and p.helper_errors == 1
    assert p.text == ["Tracing... Hit Ctrl-C\n", "10:22:04\n"]
    assert p.take_rows() == [] and p.errors == 0


def test_counters_with_multi_keys_split_from_the_right() -> None:
    p = parser()
    p.feed(record("map", {"@execs_total": {"a,b,42": 3, "sh,7": 1}}))
    p.feed(record("map", {"@plain_total": 28}))
    p.feed(record("map", {"@not_declared": {"x": 1}}))
    assert p.take_samples() == [
        {"name": "execs_total", "type": "counter", "labels": {"comm": "a,b", "pid": "42"}, "value": 3},
        {"name": "execs_total", "type": "counter", "labels": {"comm": "sh", "pid": "7"}, "value": 1},
        {"name": "plain_total", "type": "counter", "labels": {}, "value": 28},
    ]
    assert p.ignored_maps == {"@not_declared"}


def test_log2_hist_becomes_cumulative_le_buckets() -> None:
    p = parser()
    p.feed(record("hist", {"@size": [{"max": -1, "count": 1}, {"min": 0, "max": 0, "count": 1},
                                     {"min": 1, "max": 1, "count": 1}, {"min": 2, "max": 3, "count": 2},
                                     {"min": 4, "max": 7, "count": 0}, {"min": 512, "max": 1023, "count": 1}]}))
    (sample,) = p.take_samples()
    assert sample["type"] == "histogram" and sample["labels"] == {}
    assert sample["buckets"] == [[0.0, 1], [1.0, 2], [2.0, 3], [4.0, 5], [8.0, 5], [1024.0, 6]]
    assert sample["count"] == 6
    assert sample["sum"] == -1 + 0 + 1 + 2 * 2.5 + 1 * 767.5


def test_keyed_lhist_with_overflow_and_scale() -> None:
    p = parser()
    p.feed(record("hist", {"@lat_seconds": {"bash": [{"min": 0, "max": 9, "count": 2}, {"min": 10, "max": 19,
                                                                                      "count": 1},
                                                     {"min": 100, "count": 4}]}}))
    (sample,) = p.take_samples()
    assert sample["labels"] == {"comm": "bash"}
    assert sample["buckets"] == [[10 * 1e-9, 2], [20 * 1e-9, 3]]
    assert sample["count"] == 7  # the overflow bucket is only in count (+Inf)


def test_avg_is_a_gauge_and_stats_a_histogram_without_buckets() -> None:
    p = parser()
    p.feed(record("stats", {"@avg_size": 15}))
    p.feed(record("stats", {"@st": {"count": 88, "average": 21358, "total": 1879524}}))
    assert p.take_samples() == [
        {"name": "avg_size", "type": "gauge", "labels": {}, "value": 15},
        {"name": "st", "type": "histogram", "labels": {}, "buckets": [], "count": 88, "sum": 1879524.0},
    ]


def test_maps_that_do_not_fit_the_spec_are_counted() -> None:
    p = parser()
    p.feed(record("map", {"@execs_total": 5}))  # labels declared, no keys
    p.feed(record("map", {"@execs_total": {"onlyone": 5}}))  # two labels, one key part
    p.feed(record("map", {"@size": 3}))  # a histogram in the spec
    p.feed(record("hist", {"@plain_total": [{"min": 0, "max": 0, "count": 1}]}))
    assert p.take_samples() == []
    assert p.errors == 4
