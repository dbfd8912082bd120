"""ServerConfig: defaults, DECONV_* variables, flag precedence, validation; the server CLI."""

from __future__ import annotations

import dataclasses
import re

import pytest
from deconv_server import cli
from deconv_server.cli import build_parser
from deconv_server.config import (
    ENV_VARS,
    SETTINGS,
    ConfigError,
    Kind,
    ServerConfig,
    format_default,
)


def test_defaults() -> None:
    c = ServerConfig.from_env({})
    assert (c.host, c.port, c.max_message_bytes) == ("127.0.0.1", 50051, 256 * 1024 * 1024)
    assert c.warmup is True and c.auth_token is None
    assert c.address == "127.0.0.1:50051"


def test_environment_and_overrides() -> None:
    env = {
        "DECONV_HOST": "0.0.0.0",
        "DECONV_PORT": "6000",
        "DECONV_MAX_MESSAGE_BYTES": "0x100000",
        "DECONV_MAX_TENSOR_ELEMENTS": "1000",
        "DECONV_WORKERS": "3",
        "DECONV_WARMUP": "off",
        "DECONV_LOG_LEVEL": "debug",
        "DECONV_GRACE_SECONDS": "2.5",
    }
    c = ServerConfig.from_env(env)
    assert (c.host, c.port, c.max_message_bytes, c.max_tensor_elements) == (
        "0.0.0.0",
        6000,
        1 << 20,
        1000,
    )
    assert (c.workers, c.warmup, c.grace_seconds) == (3, False, 2.5)
    c = ServerConfig.from_env(env, port=7000, workers=None)
    assert c.port == 7000 and c.workers == 3


def test_ipv6_address_is_bracketed() -> None:
    assert ServerConfig(host="::", port=1).address == "[::]:1"


@pytest.mark.parametrize(
    ("env", "pattern"),
    [
        ({"DECONV_PORT": "http"}, "DECONV_PORT='http' must be an integer"),
        ({"DECONV_PORT": "70000"}, r"port=70000 must be in \[0, 65535\]"),
        ({"DECONV_WORKERS": "0"}, "workers=0"),
        ({"DECONV_WARMUP": "maybe"}, "DECONV_WARMUP='maybe'"),
        ({"DECONV_LOG_LEVEL": "chatty"}, "log_level='chatty'"),
        ({"DECONV_GRACE_SECONDS": "-1"}, "grace_seconds=-1.0"),
    ],
)
def test_bad_values(env: dict[str, str], pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        ServerConfig.from_env(env)


def test_cli_flags_map_to_fields() -> None:
    args = build_parser().parse_args(["--port", "0", "--no-warmup", "--workers", "2"])
    c = ServerConfig.from_env({"DECONV_PORT": "9"}, **vars(args))
    assert c.port == 0 and c.warmup is False and c.workers == 2


# -- derived from the field metadata: every setting has a variable, a flag and help -------------

FIELDS = [f.name for f in dataclasses.fields(ServerConfig)]
#: Settings that only make sense with others (cross-field rules), as env vars.
COMPANIONS = {
    "tls_cert": {"tls_key": "key.pem"},
    "tls_key": {"tls_cert": "cert.pem"},
    "tls_client_ca": {"tls_cert": "cert.pem", "tls_key": "key.pem"},
}


def _other_value(name: str) -> tuple[str, object]:
    """A valid value of ``name`` other than its default: (as text, as the field holds it)."""
    s, default = SETTINGS[name], getattr(ServerConfig(), name)
    if s.kind is Kind.INT:
        value = s.lo if s.lo != default else s.lo + 1
        return hex(value), value
    if s.kind is Kind.SECONDS:
        return f"{default + 1.5}", default + 1.5
    if s.kind is Kind.BOOL:
        return ("off" if default else "on"), not default
    if s.choices:
        other = next(c for c in s.choices if c != default)
        return other, other
    if s.kind is Kind.LEVEL:
        return "debug", "debug"
    text = {Kind.STR: "::1", Kind.PATH: f"/etc/{name}.pem", Kind.SECRET: "s3cret"}[s.kind]
    return text, text


def test_every_field_has_an_env_var_derived_from_its_name() -> None:
    assert list(ENV_VARS) == FIELDS == list(SETTINGS)
    derived = {n: v for n, v in ENV_VARS.items() if v == "DECONV_" + n.upper()}
    assert set(ENV_VARS) - set(derived) == {"max_flops_per_request"}
    assert ENV_VARS["max_flops_per_request"] == "DECONV_MAX_FLOPS"  # kept for compatibility
    assert len(set(ENV_VARS.values())) == len(FIELDS)


@pytest.mark.parametrize("name", FIELDS)
def test_every_env_var_is_read(name: str) -> None:
    text, value = _other_value(name)
    env = {ENV_VARS[k]: v for k, v in COMPANIONS.get(name, {}).items()}
    env[ENV_VARS[name]] = text
    config = ServerConfig.from_env(env)
    assert getattr(config, name) == value
    others = set(FIELDS) - {name} - set(COMPANIONS.get(name, {}))
    assert all(getattr(config, k) == getattr(ServerConfig(), k) for k in others)


@pytest.mark.parametrize("name", FIELDS)
def test_every_field_has_a_flag_that_wins_over_its_env_var(name: str) -> None:
    text, value = _other_value(name)
    flag = cli.flag(name)
    assert flag == "--" + name.replace("_", "-")
    if SETTINGS[name].kind is Kind.BOOL:
        argv = [flag if value else "--no-" + flag[2:]]
        env_text = "on" if not value else "off"
    else:
        argv, env_text = [flag, text], None
    for companion, path in COMPANIONS.get(name, {}).items():
        argv += [cli.flag(companion), path]
    args = build_parser().parse_args(argv)
    assert vars(args)[name] == value
    env = {ENV_VARS[name]: env_text} if env_text else {}
    assert getattr(ServerConfig.from_env(env, **vars(args)), name) == value
    assert all(v is None for k, v in vars(build_parser().parse_args([])).items())


def test_help_lists_every_flag_with_its_env_var_and_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "1000")  # no wrapping inside the help texts
    text = build_parser().format_help()
    # One entry per option: its flags, then its help (on the same line or the next).
    entries = {e.split()[0].rstrip(","): " ".join(e.split()) for e in re.split(r"\n  (?=-)", text)}
    for name in FIELDS:
        entry = entries.get(cli.flag(name), "")
        assert f"{SETTINGS[name].help} (env {ENV_VARS[name]}, default {format_default(name)})" in (
            entry
        ), name
    assert "--warmup, --no-warmup" in text
    assert "(env DECONV_MAX_MESSAGE_BYTES, default 268435456)" in text
    assert "(env DECONV_MAX_FLOPS, default 2000000000000)" in text
    assert "(env DECONV_AUTH_TOKEN, default unset)" in text


def test_docstring_attributes_come_from_the_metadata() -> None:
    doc = ServerConfig.__doc__ or ""
    for name in FIELDS:
        assert f"    {name} : " in doc and f"(env {ENV_VARS[name]}, " in doc


#: kind -> a field of that kind, good env texts with the value each gives, bad env texts.
KIND_CASES: dict[Kind, tuple[str, list[tuple[str, object]], list[str]]] = {
    Kind.INT: ("workers", [("3", 3), ("0x10", 16), (" 7 ", 7)], ["three", "2.5", "1e3"]),
    Kind.SECONDS: ("grace_seconds", [("2.5", 2.5), ("0", 0.0), ("1e1", 10.0)], ["soon", "1s"]),
    Kind.BOOL: (
        "warmup",
        [("1", True), ("YES", True), ("on", True), ("0", False), ("False", False), ("off", False)],
        ["maybe", "2", "y"],
    ),
    Kind.STR: ("log_format", [("text", "text"), ("json", "json")], ["xml", "JSON"]),
    Kind.LEVEL: ("log_level", [("debug", "debug"), ("WARNING", "WARNING")], ["chatty"]),
    Kind.PATH: ("auth_token_file", [("/run/token", "/run/token")], []),
    Kind.SECRET: ("auth_token", [("t0ken", "t0ken")], []),
}


def test_kind_cases_cover_every_kind_in_use() -> None:
    assert {s.kind for s in SETTINGS.values()} == set(KIND_CASES) == set(Kind)
    assert all(SETTINGS[field].kind is kind for kind, (field, _, _) in KIND_CASES.items())


@pytest.mark.parametrize("kind", list(KIND_CASES), ids=lambda k: k.value)
def test_each_kind_parses_and_rejects_text(kind: Kind) -> None:
    name, good, bad = KIND_CASES[kind]
    var = ENV_VARS[name]
    for text, value in good:
        assert getattr(ServerConfig.from_env({var: text}), name) == value, text
    for text in bad:
        with pytest.raises(ConfigError, match=rf"^({var}={text!r}|{name}=)"):
            ServerConfig.from_env({var: text})
        if kind is not Kind.BOOL:  # the flag refuses it too: a usage error, before serving
            with pytest.raises(SystemExit) as exited:
                cli.main([cli.flag(name), text])
            assert exited.value.code == 2


@pytest.mark.parametrize(
    ("overrides", "pattern"),
    [
        ({"port": -1}, r"^port=-1 must be in \[0, 65535\]$"),
        ({"port": True}, r"^port=True must be an integer$"),
        ({"port": 80.0}, r"^port=80.0 must be an integer$"),
        ({"max_message_bytes": 1023}, r"^max_message_bytes=1023 must be in \[1024, 2147483647\]$"),
        ({"max_flops_per_request": 0}, r"max_flops_per_request=0 must be in \[1, 461168"),
        ({"max_inflight_bytes": 0}, r"^max_inflight_bytes=0 must be in \[1, "),
        ({"workers": 1025}, r"^workers=1025 must be in \[1, 1024\]$"),
        ({"metrics_port": 65536}, r"^metrics_port=65536 must be in \[0, 65535\]$"),
        ({"grace_seconds": -0.5}, r"^grace_seconds=-0.5 must be a number of seconds >= 0$"),
        ({"grace_seconds": float("nan")}, r"^grace_seconds=nan must be a number of seconds"),
        ({"grace_seconds": "1"}, r"^grace_seconds='1' must be a number of seconds$"),
        ({"upload_timeout_s": 0}, r"^upload_timeout_s=0 must be a number of seconds > 0$"),
        ({"keepalive_time_s": 0.0}, r"^keepalive_time_s=0.0 must be a number of seconds in \(0, "),
        ({"keepalive_timeout_s": -1}, r"^keepalive_timeout_s=-1 must be a number of seconds in"),
        ({"max_connection_age_s": float("inf")}, r"^max_connection_age_s=inf .* in \[0, 2147483"),
        ({"shutdown_delay_s": -1}, r"^shutdown_delay_s=-1 must be a number of seconds >= 0$"),
        ({"warmup": 1}, r"^warmup=1 must be a bool$"),
        ({"host": ""}, r"^host must be a non-empty string$"),
        ({"log_format": "xml"}, r"^log_format='xml' must be 'json' or 'text'$"),
        ({"log_level": "chatty"}, r"^log_level='chatty' is not a logging level name$"),
        ({"auth_token": ""}, r"^auth_token must be unset or non-empty$"),
        ({"tls_cert": "", "tls_key": "k"}, r"^tls_cert='' must be unset or a file path$"),
        ({"auth_token": "t", "auth_token_file": "f"}, r"^set auth_token or auth_token_file, not"),
        ({"tls_key": "k"}, r"^tls_cert and tls_key must be set together$"),
        ({"tls_client_ca": "ca"}, r"^tls_client_ca \(mutual TLS\) needs tls_cert and tls_key$"),
    ],
)
def test_validation_messages(overrides: dict[str, object], pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        ServerConfig(**overrides)  # type: ignore[arg-type]


def test_secret_is_never_echoed() -> None:
    with pytest.raises(ConfigError) as info:
        ServerConfig(auth_token=12345)  # type: ignore[arg-type]
    assert "12345" not in str(info.value)


def test_unknown_override_is_refused() -> None:
    with pytest.raises(ConfigError, match="unknown setting 'prot'"):
        ServerConfig.from_env({}, prot=1)
