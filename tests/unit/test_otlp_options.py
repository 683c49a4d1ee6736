"""The otlp handler's argument syntax: lists and dicts, and an error naming every bad argument."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from supervisor.export.otlp_options import OtlpOptions, parse_options


def test_defaults() -> None:
    opts = parse_options(None)
    assert opts == OtlpOptions()
    assert parse_options([]) == parse_options({}) == opts
    assert opts.endpoint == "http://127.0.0.1:4318"
    assert opts.logs_url == "http://127.0.0.1:4318/v1/logs"
    assert opts.metrics_url == "http://127.0.0.1:4318/v1/metrics"
    assert (opts.timeout, opts.interval, opts.batch, opts.queue, opts.max_series) == (10.0, 1.0, 512, 10_000, 10_000)
    assert opts.events is True and opts.metrics == ("*",) and opts.compression == "none"
    assert opts.headers == {} and opts.resource == {} and opts.certificate is None and opts.flush_timeout == 5.0


def test_list_forms_all_mean_the_same() -> None:
    spaced = parse_options(["--endpoint", "https://collector.example:4318/otlp/", "--timeout", "2.5",
                            "--interval", "0.5", "--batch", "100", "--queue", "2000", "--max-series", "50",
                            "--compression", "gzip", "--flush-timeout", "3"])
    equals = parse_options(["--endpoint=https://collector.example:4318/otlp/", "--timeout=2.5", "--interval=0.5",
                            "--batch=100", "--queue=2000", "--max_series=50", "--compression=GZIP",
                            "--flush-timeout=3"])
    bare = parse_options(["endpoint=https://collector.example:4318/otlp/", "timeout=2.5", "interval=0.5",
                          "batch=100", "queue=2000", "max-series=50", "compression=gzip", "flush_timeout=3"])
    as_dict = parse_options({"endpoint": "https://collector.example:4318/otlp/", "timeout": 2.5, "interval": 0.5,
                             "batch": 100, "queue": 2000, "max_series": 50, "compression": "gzip",
                             "flush-timeout": 3})
    assert spaced == equals == bare == as_dict
    assert spaced.endpoint == "https://collector.example:4318/otlp"
    assert spaced.logs_url == "https://collector.example:4318/otlp/v1/logs"
    assert (spaced.timeout, spaced.interval, spaced.batch, spaced.queue, spaced.max_series) == (2.5, 0.5, 100, 2000, 50)


@pytest.mark.parametrize(("args", "events"), [
    (["--no-events"], False), (["--events"], True), (["events=off"], False), (["--events=no"], False),
    (["--no-events", "--events"], True), ({"events": False}, False), ({"events": "on"}, True),
])
def test_events_switch(args: Any, events: bool) -> None:
    assert parse_options(args).events is events


def test_headers_and_resource_pairs_add_up() -> None:
    opts = parse_options(["--headers", "Authorization=Bearer%20abc, x-tenant=team-a", "--headers", "x-b=2",
                          "--resource", "deployment.environment.name=prod", "resource=k8s.cluster.name=c1"])
    assert opts.headers == {"Authorization": "Bearer abc", "x-tenant": "team-a", "x-b": "2"}
    assert opts.resource == {"deployment.environment.name": "prod", "k8s.cluster.name": "c1"}
    assert parse_options({"headers": {"a": "b"}, "resource": "x=1"}).headers == {"a": "b"}


def test_metric_patterns() -> None:
    opts = parse_options(["--metrics", "eunomia_syscount_*, eunomia_tcp_*,!*_latency_seconds"])
    assert opts.metrics == ("eunomia_syscount_*", "eunomia_tcp_*", "!*_latency_seconds")
    assert opts.wants_metric("eunomia_syscount_calls_total")
    assert opts.wants_metric("eunomia_tcp_connects_total")
    assert not opts.wants_metric("eunomia_syscount_latency_seconds")
    assert not opts.wants_metric("eunomia_process_execs_total")
    only_excluded = parse_options({"metrics": ["!eunomia_instance_*"]})
    assert only_excluded.wants_metric("eunomia_process_execs_total")
    assert not only_excluded.wants_metric("eunomia_instance_events_total")
    for off in (["--metrics", "none"], {"metrics": False}, {"metrics": "off"}):
        opts = parse_options(off)
        assert opts.metrics == () and not opts.wants_metric("eunomia_process_execs_total")
    assert parse_options({"metrics": "all"}).metrics == ("*",)


def test_certificate_must_be_readable(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    assert parse_options(["--certificate", str(ca)]).certificate == str(ca)
    with pytest.raises(ValueError, match=r"--certificate: cannot be read"):
        parse_options(["--certificate", str(tmp_path / "missing.pem")])


@pytest.mark.parametrize(("args", "message"), [
    (["--endpoint", "ftp://collector:4318"], r"--endpoint: must be an http:// or https:// URL"),
    (["--endpoint", "http://"], r"--endpoint: must be an http:// or https:// URL with a host"),
    (["--endpoint", "http://collector:99999"], r"--endpoint: Port out of range"),
    (["--endpoint", "http://collector:4318/v1/logs"], r"--endpoint: is the base URL; /v1/logs is added"),
    (["--endpoint", "http://collector:4318/?a=b"], r"--endpoint: must not have a query"),
    ({"endpoint": 4318}, r"--endpoint: must be a URL"),
    (["--timeout", "0"], r"--timeout: must be more than 0"),
    (["--timeout", "-1"], r"--timeout: must be more than 0"),
    (["--timeout", "soon"], r"--timeout: must be a number of seconds"),
    (["--interval", "nan"], r"--interval: must be more than 0 and finite"),
    ({"interval": True}, r"--interval: must be a number"),
    (["--flush-timeout", "inf"], r"--flush-timeout: must be more than 0 and finite"),
    (["--batch", "1.5"], r"--batch: must be an integer"),
    ({"batch": 2.5}, r"--batch: must be an integer"),
    (["--queue", "0"], r"--queue: must be at least 1"),
    (["--max-series", "many"], r"--max-series: must be an integer"),
    (["events=maybe"], r"--events: must be on or off"),
    (["--compression", "zstd"], r"--compression: must be one of none, gzip, deflate"),
    (["--headers", "novalue"], r"--headers: 'novalue' is not key=value"),
    ({"headers": {"a": ["b"]}}, r"--headers: 'a': keys are non-empty strings"),
    ({"headers": {"a": "b\r\nInjected: 1"}}, r"--headers: 'a': no line breaks"),
    ({"resource": 5}, r"--resource: must be key=value"),
    (["--metrics", "a,,b"], r"--metrics: has an empty pattern"),
    ({"metrics": 3}, r"--metrics: must be glob patterns"),
    (["--endpoint"], r"otlp: --endpoint needs a value"),
    (["--colour", "blue"], r"otlp: unknown argument '--colour' \(known: --endpoint, --headers"),
    ({"colour": "blue"}, r"otlp: unknown argument 'colour'"),
    (["collector:4318"], r"otlp: unexpected 'collector:4318'"),
    ([4318], r"otlp: arguments are strings"),
    ({1: "x"}, r"otlp: argument names are strings"),
    ("--endpoint http://x", r"otlp: arguments are a list or a dict, not str"),
])
def test_bad_arguments_are_named(args: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_options(args)
