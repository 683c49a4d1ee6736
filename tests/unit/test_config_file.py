"""supervisor.config_file / config_schema: every validation rule of the YAML config, and how flags override it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from supervisor import config_file
from supervisor.config import DEFAULT_TRACERS
from supervisor.config_file import (
    ConfigError,
    Overrides,
    build,
    check_control_tcp,
    check_tracers,
    choose_file,
    load_file,
    parse_text,
)
from supervisor.config_schema import ConfigFile, ControlTcpListener, ExportHandlerRequest, parse_duration
from workers.catalog import Catalog, default_search_path

TOKEN = "0123456789abcdef0123456789abcdef"


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_text(text, "eunomia.yaml")
    return info.value.lines()


def one_problem(text: str) -> str:
    found = problems(text)
    assert len(found) == 1, found
    return found[0]


def parse(text: str) -> ConfigFile:
    return parse_text(text, "eunomia.yaml")[0]


# ------------------------------------------------------------------ the file as a whole


def test_an_empty_file_means_the_defaults() -> None:
    assert parse("") == ConfigFile()
    assert parse("# nothing but a comment\n") == ConfigFile()
    config = build(ConfigFile(), Overrides())
    assert config.runtime_dir == Path("/run/eunomia") and config.db_path == Path("/var/lib/eunomia/eunomia.db")
    assert config.socket_path == Path("/run/eunomia/eunomia.sock")
    assert config.default_tracers == DEFAULT_TRACERS
    assert config.listeners.metrics is None and config.listeners.control_tcp is None


def test_yaml_syntax_error_names_the_line() -> None:
    assert one_problem("store:\n  path: /x\n tracers: [\n").startswith("eunomia.yaml:3: (top level): not valid YAML")


def test_top_level_must_be_a_mapping() -> None:
    assert one_problem("- a\n- b\n") == ("eunomia.yaml: (top level): the file must be a mapping of settings, "
                                         "not list")


def test_a_key_given_twice_is_an_error_not_the_last_one_wins() -> None:
    assert one_problem("runtime_dir: /a\nstore: {}\nruntime_dir: /b\n") == \
        "eunomia.yaml:3: runtime_dir: given twice (lines 1 and 3)"
    assert one_problem("store:\n  path: /a\n  path: /b\n") == "eunomia.yaml:3: store.path: given twice (lines 2 and 3)"


@pytest.mark.parametrize(("text", "where"), [
    ("colour: red\n", "eunomia.yaml:1: colour"),
    ("store:\n  pth: /x\n", "eunomia.yaml:2: store.pth"),
    ("tracers:\n  - name: process\n    argz: {}\n", "eunomia.yaml:3: tracers[0].argz"),
    ("listeners:\n  prometheus: {port: 1}\n", "eunomia.yaml:2: listeners.prometheus"),
])
def test_unknown_keys_are_errors_with_their_path_and_line(text: str, where: str) -> None:
    assert one_problem(text) == f"{where}: Extra inputs are not permitted"


def test_every_problem_is_reported_at_once() -> None:
    found = problems("runtime_dir: run\nheartbeat:\n  interval: -1\nlisteners:\n  metrics: {port: 0}\n")
    assert [line.split(": ")[0] for line in found] == ["eunomia.yaml:1", "eunomia.yaml:3", "eunomia.yaml:5"]
    assert "runtime_dir: 'run' must be an absolute path" in found[0]
    assert "heartbeat.interval: Input should be greater than 0" in found[1]
    assert "listeners.metrics.port: Input should be greater than or equal to 1" in found[2]


# ------------------------------------------------------------------ paths


@pytest.mark.parametrize("key", ["runtime_dir", "api_socket"])
def test_paths_must_be_absolute(key: str) -> None:
    assert one_problem(f"{key}: relative/dir\n") == f"eunomia.yaml:1: {key}: 'relative/dir' must be an absolute path"


def test_store_and_tracer_paths_must_be_absolute() -> None:
    assert "store.path: 'db.sqlite' must be an absolute path" in one_problem("store: {path: db.sqlite}\n")
    assert "tracer_path[1]: 'mine' must be an absolute path" in one_problem("tracer_path: [/ok, mine]\n")


def test_runtime_dir_must_leave_room_for_its_sockets() -> None:
    assert parse(f"runtime_dir: /{'r' * 93}\n").runtime_dir == Path("/" + "r" * 93)
    assert "runtime_dir: too long for the unix sockets inside it (at most 94 bytes)" in \
        one_problem(f"runtime_dir: /{'r' * 94}\n")


def test_api_socket_must_fit_a_unix_socket_address() -> None:
    assert parse(f"api_socket: /{'s' * 106}\n").api_socket == Path("/" + "s" * 106)
    assert "api_socket: longer than the 107 bytes" in one_problem(f"api_socket: /{'s' * 107}\n")


# ------------------------------------------------------------------ tracers


def test_tracers_with_ids_args_and_export_handlers() -> None:
    cfg = parse("""
tracers:
  - name: process
  - name: opensnoop
    id: failed-opens
    args: {failed: true, comm: cat}
    export_handlers:
      - name: prometheus
      - name: otlp
        args: [--endpoint, "http://collector:4318"]
  - name: tcpconnect
    args: ["-p", "42"]
""")
    config = build(cfg, Overrides())
    first, second, third = config.default_tracers
    assert (first.tracer, first.args, first.instance_id, first.export_handlers) == ("process", {}, None, ())
    assert (second.tracer, second.instance_id, second.args) == ("opensnoop", "failed-opens",
                                                                 {"failed": True, "comm": "cat"})
    assert second.export_handlers == (ExportHandlerRequest(name="prometheus", args={}),
                                      ExportHandlerRequest(name="otlp", args=["--endpoint", "http://collector:4318"]))
    assert (third.tracer, third.args) == ("tcpconnect", ["-p", "42"])


def test_no_tracers_key_means_the_default_set_and_an_empty_list_means_none() -> None:
    assert build(parse("store: {}\n"), Overrides()).default_tracers == DEFAULT_TRACERS
    assert build(parse("tracers: []\n"), Overrides()).default_tracers == ()


@pytest.mark.parametrize(("entry", "message"), [
    ("{args: {}}", "tracers[0].name: Field required"),
    ("{name: Open-Snoop}", "tracers[0].name: String should match pattern"),
    ("{name: opensnoop, id: 'bad id'}", "tracers[0].id: String should match pattern"),
    ("{name: opensnoop, args: 42}", "tracers[0].args: expected a mapping {parameter: value} or a list of bcc-style "
                                    "flags such as ['-p', '42'], not int"),
    ("{name: opensnoop, args: '-p 42'}", "tracers[0].args: expected a mapping"),
    ("{name: opensnoop, args: ['-p', 42]}", "tracers[0].args: bcc-style flags must all be text (quote numbers: "
                                            "'42'), not [42]"),
    ("{name: opensnoop, args: {1: x}}", "tracers[0].args: parameter names must be text, not [1]"),
    ("{name: opensnoop, export_handlers: prometheus}", "tracers[0].export_handlers: Input should be a valid list"),
    ("{name: opensnoop, export_handlers: [{args: []}]}", "tracers[0].export_handlers[0].name: Field required"),
    ("{name: opensnoop, export_handlers: [{name: ''}]}", "tracers[0].export_handlers[0].name: String should have at "
                                                         "least 1 character"),
    ("{name: opensnoop, export_handlers: [{name: p, args: 3}]}", "tracers[0].export_handlers[0].args: expected a "
                                                                 "mapping"),
    ("{name: opensnoop, export_handlers: [{name: p, port: 3}]}", "tracers[0].export_handlers[0].port: Extra inputs"),
    ("opensnoop", "tracers[0]: Input should be a valid dictionary"),
])
def test_bad_tracer_entries(entry: str, message: str) -> None:
    assert message in one_problem(f"tracers:\n  - {entry}\n")


def test_tracers_must_be_a_list() -> None:
    assert "tracers: Input should be a valid list" in one_problem("tracers: {name: process}\n")


def test_instance_ids_must_be_unique() -> None:
    text = "tracers:\n  - {name: process, id: a}\n  - {name: opensnoop, id: b}\n  - {name: opensnoop, id: a}\n"
    assert one_problem(text) == "eunomia.yaml:1: tracers: tracers[2].id: 'a' is already the id of tracers[0]"


# ------------------------------------------------------------------ durations and numbers


@pytest.mark.parametrize(("value", "seconds"), [
    (5, 5.0), (0.5, 0.5), ("30", 30.0), ("500ms", 0.5), ("30s", 30.0), ("10m", 600.0), ("12h", 43200.0),
    ("7d", 604800.0), (" 2 s ", 2.0),
])
def test_durations(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize(("value", "message"), [
    ("'7 weeks'", "'7 weeks' is not a duration"),
    ("true", "expected a duration, not true/false"),
    ("0", "Input should be greater than 0"),
    ("-3s", "is not a duration"),
])
def test_bad_durations(value: str, message: str) -> None:
    assert message in one_problem(f"store:\n  retention:\n    events_max_age: {value}\n")


def test_retention() -> None:
    config = build(parse("store:\n  path: /data/e.db\n  retention: {max_events: 10, events_max_age: 1d, "
                         "samples_max_age: 2h, prune_interval: 30s}\n"), Overrides())
    assert config.db_path == Path("/data/e.db")
    r = config.retention
    assert (r.max_events, r.events_max_age_s, r.samples_max_age_s, r.prune_interval_s) == (10, 86400, 7200, 30)
    assert "store.retention.max_events: Input should be greater than or equal to 1" in \
        one_problem("store: {retention: {max_events: 0}}\n")


def test_heartbeat_timeouts_must_exceed_the_interval() -> None:
    assert "heartbeat: timeout (2s) must be longer than interval (2s)" in \
        one_problem("heartbeat: {interval: 2, timeout: 2}\n")
    assert "heartbeat: worker_timeout (1s) must be longer than interval (2s)" in \
        one_problem("heartbeat: {interval: 2, timeout: 5, worker_timeout: 1}\n")
    config = build(parse("heartbeat: {interval: 500ms, timeout: 3s, worker_timeout: 8s}\n"), Overrides())
    assert (config.heartbeat_interval, config.heartbeat_timeout, config.worker_supervisor_timeout) == (0.5, 3, 8)


def test_worker_settings() -> None:
    config = build(parse("workers: {start_timeout: 2m, stop_timeout: 3, stable_after: 1h, metrics_interval: 5, "
                         "batch_interval: 10ms, batch_max: 100}\n"), Overrides())
    assert (config.start_timeout, config.stop_timeout, config.stable_after, config.metrics_interval,
            config.batch_interval, config.batch_max) == (120, 3, 3600, 5, 0.01, 100)
    assert "workers.batch_max: Input should be less than or equal to 1000000" in \
        one_problem("workers: {batch_max: 1000001}\n")


@pytest.mark.parametrize(("backoff", "message"), [
    ("{initial: 10, maximum: 5}", "backoff: backoff: need 0 < initial <= maximum"),
    ("{factor: 0.5}", "backoff.factor: Input should be greater than or equal to 1"),
    ("{jitter: 1}", "backoff.jitter: Input should be less than 1"),
    ("{max_crashes: 0}", "backoff.max_crashes: Input should be greater than or equal to 1"),
    ("{window: 0}", "backoff.window: Input should be greater than 0"),
])
def test_bad_backoff(backoff: str, message: str) -> None:
    assert message in one_problem(f"backoff: {backoff}\n")


def test_backoff_becomes_the_policy() -> None:
    policy = build(parse("backoff: {initial: 2s, maximum: 1m, factor: 3, jitter: 0, max_crashes: 2, window: 10m}\n"),
                   Overrides()).backoff
    assert (policy.initial, policy.maximum, policy.factor, policy.jitter, policy.max_crashes, policy.window) == \
        (2, 60, 3, 0, 2, 600)


# ------------------------------------------------------------------ listeners


def test_listeners_are_carried_in_the_config() -> None:
    cfg = parse("listeners:\n  metrics: {address: 0.0.0.0, port: 9100}\n  control_tcp:\n    address: '::1'\n"
                "    port: 8600\n    token_file: /etc/eunomia/token\n")
    listeners = build(cfg, Overrides()).listeners
    assert (listeners.metrics.address, listeners.metrics.port) == ("0.0.0.0", 9100)
    tcp = listeners.control_tcp
    assert (tcp.address, tcp.port, tcp.token_file, tcp.tls) == ("::1", 8600, Path("/etc/eunomia/token"), False)
    defaults = parse("listeners:\n  metrics: {}\n").listeners.metrics
    assert (defaults.address, defaults.port) == ("127.0.0.1", 9464)


@pytest.mark.parametrize(("listeners", "message"), [
    ("metrics: {address: localhost}", "listeners.metrics.address: 'localhost' is not an IP address"),
    ("metrics: {address: 10.0.0.256}", "listeners.metrics.address: '10.0.0.256' is not an IP address"),
    ("metrics: {port: 65536}", "listeners.metrics.port: Input should be less than or equal to 65535"),
    ("metrics: {port: http}", "listeners.metrics.port: Input should be a valid integer"),
    ("control_tcp: {port: 8600}", "listeners.control_tcp.token_file: Field required"),
    ("control_tcp: {token_file: token}", "listeners.control_tcp.token_file: 'token' must be an absolute path"),
    ("control_tcp: {token_file: /t, tls_cert: /c}", "listeners.control_tcp: tls_cert and tls_key go together"),
    ("control_tcp: {token_file: /t, tls_key: /k}", "listeners.control_tcp: tls_cert and tls_key go together"),
    ("{metrics: {port: 9000}, control_tcp: {port: 9000, token_file: /t}}",
     "listeners: metrics and control_tcp both want port 9000 on overlapping addresses (127.0.0.1, 127.0.0.1)"),
    ("{metrics: {address: 0.0.0.0, port: 9000}, control_tcp: {address: 10.1.2.3, port: 9000, token_file: /t}}",
     "listeners: metrics and control_tcp both want port 9000"),
])
def test_bad_listeners(listeners: str, message: str) -> None:
    text = f"listeners: {listeners}\n" if listeners.startswith("{") else f"listeners:\n  {listeners}\n"
    assert message in one_problem(text)


def test_same_port_on_different_addresses_is_fine() -> None:
    cfg = parse("listeners: {metrics: {address: 10.0.0.1, port: 9000}, "
                "control_tcp: {address: 10.0.0.2, port: 9000, token_file: /t}}\n")
    assert cfg.listeners.metrics.port == cfg.listeners.control_tcp.port == 9000


# ------------------------------------------------------------------ flags override the file


def test_flags_override_the_file() -> None:
    cfg = parse("runtime_dir: /file/run\napi_socket: /file/api.sock\nstore: {path: /file/db}\n"
                "tracer_path: [/file/tracers]\ntracers: [{name: process}]\nheartbeat: {timeout: 7}\n"
                "workers: {metrics_interval: 30}\n")
    from_file = build(cfg, Overrides())
    assert (from_file.runtime_dir, from_file.api_socket, from_file.db_path) == \
        (Path("/file/run"), Path("/file/api.sock"), Path("/file/db"))
    assert from_file.tracer_path == [*default_search_path(), Path("/file/tracers")]
    assert (from_file.heartbeat_timeout, from_file.metrics_interval) == (7, 30)
    flags = Overrides(runtime_dir=Path("/flag/run"), db=Path("/flag/db"), socket=Path("/flag/api.sock"),
                      tracers=["opensnoop", "tcpconnect"], tracer_path=[Path("/flag/tracers")],
                      heartbeat_timeout=2, metrics_interval=1)
    config = build(cfg, flags, Path("/etc/x.yaml"))
    assert (config.runtime_dir, config.api_socket, config.db_path) == \
        (Path("/flag/run"), Path("/flag/api.sock"), Path("/flag/db"))
    assert [r.tracer for r in config.default_tracers] == ["opensnoop", "tcpconnect"]
    assert config.tracer_path == [*default_search_path(), Path("/file/tracers"), Path("/flag/tracers")]
    assert (config.heartbeat_timeout, config.metrics_interval, config.config_file) == (2, 1, Path("/etc/x.yaml"))
    assert build(cfg, Overrides(no_default_tracers=True)).default_tracers == ()


# ------------------------------------------------------------------ which file


def test_choose_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    default = tmp_path / "eunomia.yaml"
    monkeypatch.setattr(config_file, "DEFAULT_CONFIG", default)
    monkeypatch.delenv("EUNOMIA_CONFIG", raising=False)
    assert choose_file(None, False) is None  # no default file: built-in defaults
    default.write_text("")
    assert choose_file(None, False) == default
    assert choose_file(None, True) is None
    assert choose_file(Path("/x.yaml"), False) == Path("/x.yaml")
    monkeypatch.setenv("EUNOMIA_CONFIG", "/env.yaml")
    assert choose_file(None, False) == Path("/env.yaml")
    assert choose_file(Path("/x.yaml"), False) == Path("/x.yaml")


def test_load_file_problems(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=r"nope.yaml: \(top level\): file not found"):
        load_file(missing)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"store: \xff\n")
    os.chmod(binary, 0o600)
    with pytest.raises(ConfigError, match=r"not UTF-8 text \(byte 7\)"):
        load_file(binary)
    writable = tmp_path / "writable.yaml"
    writable.write_text("tracers: []\n")
    os.chmod(writable, 0o664)
    with pytest.raises(ConfigError, match=r"mode 0664 lets others change it; `chmod go-w "):
        load_file(writable)
    os.chmod(writable, 0o644)
    assert load_file(writable)[0].tracers == []
    monkeypatch.setattr(os, "geteuid", lambda: os.stat(writable).st_uid + 1)
    with pytest.raises(ConfigError, match=r"owned by uid \d+; it must belong to the agent's user"):
        load_file(writable)


# ------------------------------------------------------------------ token file and TLS


def token_file(tmp_path: Path, content: str = TOKEN, mode: int = 0o600) -> Path:
    path = tmp_path / "token"
    path.write_text(content)
    os.chmod(path, mode)
    return path


def tcp_problems(**kwargs: object) -> list[str]:
    return [str(p) for p in check_control_tcp(ControlTcpListener(**kwargs))]


def test_a_good_token_file(tmp_path: Path) -> None:
    assert tcp_problems(token_file=token_file(tmp_path, TOKEN + "\n")) == []
    assert tcp_problems(token_file=token_file(tmp_path, mode=0o400)) == []


@pytest.mark.parametrize(("content", "mode", "message"), [
    (TOKEN, 0o640, "mode 0640 lets others read it; `chmod 0600"),
    (TOKEN, 0o604, "mode 0604 lets others read it"),
    (TOKEN, 0o660, "mode 0660 lets others read it"),
    ("", 0o600, "the token is empty"),
    ("short", 0o600, "the token is too short; use at least 16 characters"),
    ("two words but long enough", 0o600, "the token must be one word of printable ASCII"),
    ("é" * 20, 0o600, "the token must be printable ASCII"),
])
def test_bad_token_files(tmp_path: Path, content: str, mode: int, message: str) -> None:
    found = tcp_problems(token_file=token_file(tmp_path, content, mode))
    assert len(found) == 1 and found[0].startswith("listeners.control_tcp.token_file: ") and message in found[0], found


def test_token_file_missing_symlink_directory_or_foreign(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert "no such file; create it with `install -m 0600 /dev/null" in \
        tcp_problems(token_file=tmp_path / "absent")[0]
    link = tmp_path / "link"
    link.symlink_to(token_file(tmp_path))
    assert "Too many levels of symbolic links" in tcp_problems(token_file=link)[0]
    assert "not a regular file" in tcp_problems(token_file=tmp_path)[0]
    real = token_file(tmp_path)
    monkeypatch.setattr(os, "geteuid", lambda: os.stat(real).st_uid + 1)
    assert "owned by uid" in tcp_problems(token_file=real)[0]


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "eunomia-test")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    os.chmod(key_path, 0o600)
    return cert_path, key_path


def test_tls_files(tmp_path: Path) -> None:
    token = token_file(tmp_path)
    cert, key = self_signed(tmp_path)
    assert tcp_problems(token_file=token, tls_cert=cert, tls_key=key) == []
    os.chmod(key, 0o644)
    assert tcp_problems(token_file=token, tls_cert=cert, tls_key=key) == [
        f"listeners.control_tcp.tls_key: {key} is readable by everyone (mode 0644); `chmod o-rwx {key}`"]
    os.chmod(key, 0o600)
    os.chmod(cert, 0o600)
    found = tcp_problems(token_file=token, tls_cert=key, tls_key=cert)  # swapped
    assert len(found) == 1 and found[0].startswith(f"listeners.control_tcp.tls_cert: cannot load {key} with {cert}")
    found = tcp_problems(token_file=token, tls_cert=cert, tls_key=tmp_path / "nokey.pem")
    assert found == [f"listeners.control_tcp.tls_key: {tmp_path / 'nokey.pem'}: No such file or directory"]


# ------------------------------------------------------------------ tracers against the catalog


def test_tracers_are_checked_against_the_catalog() -> None:
    catalog = Catalog.discover(default_search_path())
    cfg = parse("tracers:\n  - name: process\n  - name: nosuch\n  - name: opensnoop\n    args: {pid: -1}\n"
                "  - name: opensnoop\n    args: ['--bogus']\n")
    found = [str(p) for p in check_tracers(build(cfg, Overrides()), catalog, from_file=True)]
    assert found[0].startswith("tracers[1].name: no tracer named 'nosuch' (known: ")
    assert found[1] == "tracers[2].args: parameter 'pid': -1 is below the minimum 0"
    assert found[2].startswith("tracers[3].args: unknown option '--bogus' for tracer opensnoop")
    assert len(found) == 3
    flags = build(ConfigFile(), Overrides(tracers=["process", "nosuch"]))
    found = [str(p) for p in check_tracers(flags, catalog, from_file=False)]
    assert len(found) == 1 and found[0].startswith("--tracer nosuch: no tracer named 'nosuch'")


def test_resolve_gathers_file_problems_with_their_lines(tmp_path: Path) -> None:
    path = tmp_path / "eunomia.yaml"
    path.write_text(f"tracers:\n  - name: nosuch\nlisteners:\n  control_tcp:\n    token_file: {tmp_path}/absent\n")
    os.chmod(path, 0o600)
    with pytest.raises(ConfigError) as info:
        config_file.resolve(path, Overrides())
    lines = info.value.lines()
    assert lines[0].startswith(f"{path}:5: listeners.control_tcp.token_file: {tmp_path}/absent: no such file")
    assert lines[1].startswith(f"{path}:2: tracers[0].name: no tracer named 'nosuch'")
    assert config_file.resolve(None, Overrides(no_default_tracers=True)).default_tracers == ()


def test_a_heartbeat_timeout_flag_is_checked_against_the_files_interval(tmp_path: Path) -> None:
    path = tmp_path / "eunomia.yaml"
    path.write_text("tracers: []\nheartbeat: {interval: 2s, timeout: 10s}\n")
    os.chmod(path, 0o600)
    with pytest.raises(ConfigError) as info:
        config_file.resolve(path, Overrides(heartbeat_timeout=1.5))
    assert info.value.lines() == ["command line: --heartbeat-timeout: 1.5s must be longer than heartbeat.interval (2s)"]
    assert config_file.resolve(path, Overrides(heartbeat_timeout=3)).heartbeat_timeout == 3


def test_clients_find_the_socket_the_config_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from supervisor.config import client_socket

    path = tmp_path / "eunomia.yaml"
    monkeypatch.setattr(config_file, "DEFAULT_CONFIG", path)
    monkeypatch.delenv("EUNOMIA_CONFIG", raising=False)
    monkeypatch.delenv("EUNOMIA_SOCKET", raising=False)
    assert client_socket() == Path("/run/eunomia/eunomia.sock")  # no file
    path.write_text("runtime_dir: /run/other\n")
    os.chmod(path, 0o600)
    assert client_socket() == Path("/run/other/eunomia.sock")
    path.write_text("runtime_dir: /run/other\napi_socket: /run/api.sock\n")
    assert client_socket() == Path("/run/api.sock")
    assert client_socket("/explicit.sock") == Path("/explicit.sock")
    monkeypatch.setenv("EUNOMIA_SOCKET", "/env.sock")
    assert client_socket() == Path("/env.sock")
    monkeypatch.delenv("EUNOMIA_SOCKET")
    path.write_text("runtime_dir: [broken\n")
    assert client_socket() == Path("/run/eunomia/eunomia.sock")  # a broken file: the default, the agent reports it


# ------------------------------------------------------------------ custom tracers and their limits


def test_custom_tracers_and_isolation_from_the_file() -> None:
    cfg = parse("custom_tracers:\n  allow_api: true\n  allow: [/srv/eunomia/tracers]\n"
                "isolation:\n  custom: [memory=128M, cpu=0.25, event-rate=500]\n  builtin: [memory=1G]\n")
    config = build(cfg, Overrides())
    assert config.custom_tracers.api_enabled and config.custom_tracers.allow_dirs == (Path("/srv/eunomia/tracers"),)
    custom, builtin = config.isolation.custom, config.isolation.builtin
    assert (custom.memory_bytes, custom.cpu, custom.event_rate) == (128 << 20, 0.25, 500)
    assert builtin is not None and builtin.memory_bytes == 1 << 30


def test_without_the_sections_custom_tracers_stay_off_and_builtins_unlimited() -> None:
    config = build(parse("store: {}\n"), Overrides())
    assert not config.custom_tracers.api_enabled and config.isolation.builtin is None


@pytest.mark.parametrize(("text", "where"), [
    ("isolation:\n  custom: [memory=lots]\n", "isolation.custom"),
    ("isolation:\n  custom: [speed=9]\n", "isolation.custom"),
    ("custom_tracers:\n  allow: [relative/dir]\n", "custom_tracers.allow"),
    ("custom_tracers:\n  allow: ['sha256:abc']\n", "custom_tracers.allow"),
])
def test_bad_custom_tracer_settings_name_the_field(text: str, where: str) -> None:
    assert where in one_problem(text)
