"""The ``otlp`` handler's arguments: one small syntax for lists and dicts.

A list is what a command line gives: ``["--endpoint", "http://collector:4318", "--no-events"]``;
``--name=value`` and bare ``name=value`` items work too. A dict is what a config file or the API
gives: ``{"endpoint": "http://collector:4318", "events": False}``. Dashes and underscores in
names are the same (``max-series`` = ``max_series``). Every problem raises ValueError naming the
argument. See docs/otlp.md for the list.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import math
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

DEFAULT_ENDPOINT = "http://127.0.0.1:4318"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_COMPRESSIONS = ("none", "gzip", "deflate")


@dataclass(frozen=True, slots=True)
class OtlpOptions:
    endpoint: str = DEFAULT_ENDPOINT  # base URL; /v1/logs and /v1/metrics are appended
    headers: dict[str, str] = field(default_factory=dict)
    timeout: float = 10.0  # seconds one export may take, the exporter's own retries included
    interval: float = 1.0  # seconds between exports (and the longest an event waits in the queue)
    batch: int = 512  # log records per request
    queue: int = 10_000  # events held while the endpoint is slow or down; more are dropped and counted
    max_series: int = 10_000  # metric streams held; new streams past this are dropped and counted
    events: bool = True
    metrics: tuple[str, ...] = ("*",)  # glob patterns on metric names; "!pattern" excludes; () sends none
    compression: str = "none"
    certificate: str | None = None  # CA bundle for an https endpoint
    flush_timeout: float = 5.0  # seconds close() spends sending what is left
    resource: dict[str, str] = field(default_factory=dict)  # extra resource attributes

    @property
    def logs_url(self) -> str:
        return self.endpoint.rstrip("/") + "/v1/logs"

    @property
    def metrics_url(self) -> str:
        return self.endpoint.rstrip("/") + "/v1/metrics"

    def wants_metric(self, name: str) -> bool:
        """Whether a metric (``eunomia_syscount_calls_total``, a histogram's base name …) is sent."""
        if not self.metrics:
            return False
        include = [p for p in self.metrics if not p.startswith("!")]
        exclude = [p[1:] for p in self.metrics if p.startswith("!")]
        if any(fnmatch.fnmatchcase(name, p) for p in exclude):
            return False
        return not include or any(fnmatch.fnmatchcase(name, p) for p in include)


NAMES = tuple(f.name for f in dataclasses.fields(OtlpOptions))
_BOOLS = {"events"}


def parse_options(args: list[str] | dict[str, Any] | None) -> OtlpOptions:
    """Arguments (list or dict) → validated options; ValueError names the bad argument."""
    if args is None:
        raw: dict[str, Any] = {}
    elif isinstance(args, dict):
        raw = {}
        for key, value in args.items():
            if not isinstance(key, str):
                raise ValueError(f"otlp: argument names are strings, not {key!r}")
            raw[_known(key)] = value
    elif isinstance(args, (list, tuple)):
        raw = _from_list(list(args))
    else:
        raise ValueError(f"otlp: arguments are a list or a dict, not {type(args).__name__}")
    values = {name: _PARSERS[name](name, value) for name, value in raw.items()}
    return OtlpOptions(**values)


def _known(key: str) -> str:
    name = key.strip().lstrip("-").replace("-", "_")
    if name not in NAMES:
        known = ", ".join("--" + n.replace("_", "-") for n in NAMES)
        raise ValueError(f"otlp: unknown argument {key!r} (known: {known})")
    return name


def _from_list(items: list[Any]) -> dict[str, Any]:
    raw: dict[str, Any] = {}
    i = 0
    while i < len(items):
        item = items[i]
        if not isinstance(item, str):
            raise ValueError(f"otlp: arguments are strings, not {item!r}")
        i += 1
        if "=" in item:
            key, value = item.split("=", 1)
        elif item.startswith("--no-") and item[5:].replace("-", "_") in _BOOLS:
            key, value = item[5:], False
        elif item.lstrip("-").replace("-", "_") in _BOOLS:
            key, value = item, True
        elif item.startswith("--"):
            if i >= len(items):
                raise ValueError(f"otlp: {item} needs a value")
            key, value = item, items[i]
            i += 1
        else:
            raise ValueError(f"otlp: unexpected {item!r} (arguments look like --name VALUE or name=VALUE)")
        name = _known(key)
        if name in ("headers", "resource") and name in raw:  # repeatable: the pairs add up
            value = {**_pairs(name, raw[name]), **_pairs(name, value)}
        raw[name] = value
    return raw


def _fail(name: str, problem: str, value: Any) -> ValueError:
    return ValueError(f"otlp: --{name.replace('_', '-')}: {problem} (got {value!r})")


def _endpoint(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise _fail(name, "must be a URL", value)
    url = urllib.parse.urlsplit(value.strip())
    if url.scheme not in ("http", "https") or not url.hostname:
        raise _fail(name, "must be an http:// or https:// URL with a host", value)
    try:
        url.port  # noqa: B018  (raises on a bad port)
    except ValueError as exc:
        raise _fail(name, str(exc), value) from None
    if url.query or url.fragment:
        raise _fail(name, "must not have a query or fragment", value)
    path = url.path.rstrip("/")
    for signal in ("/v1/logs", "/v1/metrics"):
        if path.endswith(signal):
            raise _fail(name, f"is the base URL; {signal} is added per signal", value)
    return urllib.parse.urlunsplit((url.scheme, url.netloc, path, "", ""))


def _pairs(name: str, value: Any) -> dict[str, str]:
    """``k=v,k2=v2`` (values URL-decoded, as in OTEL_EXPORTER_OTLP_HEADERS) or a mapping."""
    if isinstance(value, dict):
        pairs = value
    elif isinstance(value, str):
        pairs = {}
        for part in value.split(","):
            if not part.strip():
                continue
            if "=" not in part:
                raise _fail(name, f"{part.strip()!r} is not key=value", value)
            key, val = part.split("=", 1)
            pairs[urllib.parse.unquote(key.strip())] = urllib.parse.unquote(val.strip())
    else:
        raise _fail(name, "must be key=value,… or a mapping", value)
    out = {}
    for key, val in pairs.items():
        if not isinstance(key, str) or not key or not isinstance(val, str | int | float) or isinstance(val, bool):
            raise _fail(name, f"{key!r}: keys are non-empty strings and values strings or numbers", value)
        if name == "headers" and any(c in key + str(val) for c in "\r\n"):
            raise _fail(name, f"{key!r}: no line breaks in headers", value)
        out[key] = str(val)
    return out


def _integer(minimum: int) -> Callable[[str, Any], int]:
    def parse(name: str, value: Any) -> int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise _fail(name, "must be an integer", value)
        try:
            number = int(value)
        except (TypeError, ValueError, OverflowError):
            raise _fail(name, "must be an integer", value) from None
        if number < minimum:
            raise _fail(name, f"must be at least {minimum}", value)
        return number

    return parse


def _positive(name: str, value: Any) -> float:
    if isinstance(value, bool):
        raise _fail(name, "must be a number of seconds", value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise _fail(name, "must be a number of seconds", value) from None
    if not math.isfinite(number) or number <= 0:
        raise _fail(name, "must be more than 0 and finite", value)
    return number


def _bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise _fail(name, "must be on or off", value)


def _metrics(name: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, bool):
        return ("*",) if value else ()
    if isinstance(value, str):
        if value.strip().lower() in ("none", "off", ""):
            return ()
        if value.strip().lower() in ("all", "on"):
            return ("*",)
        patterns = [p.strip() for p in value.split(",")]
    elif isinstance(value, (list, tuple)) and all(isinstance(p, str) for p in value):
        patterns = [p.strip() for p in value]
    else:
        raise _fail(name, "must be glob patterns separated by commas, all, or none", value)
    if any(not p or p == "!" for p in patterns):
        raise _fail(name, "has an empty pattern", value)
    return tuple(patterns)


def _compression(name: str, value: Any) -> str:
    if not isinstance(value, str) or value.strip().lower() not in _COMPRESSIONS:
        raise _fail(name, f"must be one of {', '.join(_COMPRESSIONS)}", value)
    return value.strip().lower()


def _certificate(name: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise _fail(name, "must be the path of a CA bundle", value)
    try:
        with open(value, "rb"):
            pass
    except OSError as exc:
        raise _fail(name, f"cannot be read: {exc.strerror}", value) from None
    return value


_PARSERS: dict[str, Callable[[str, Any], Any]] = {
    "endpoint": _endpoint,
    "headers": _pairs,
    "timeout": _positive,
    "interval": _positive,
    "batch": _integer(1),
    "queue": _integer(1),
    "max_series": _integer(1),
    "events": _bool,
    "metrics": _metrics,
    "compression": _compression,
    "certificate": _certificate,
    "flush_timeout": _positive,
    "resource": _pairs,
}
