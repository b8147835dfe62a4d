"""Settings: MAILACCOUNTS_* names, flags over environment over defaults, bad values refused."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest
from mailaccounts_server.config import (
    Settings,
    add_common_arguments,
    add_serve_arguments,
    flag_name,
    settings_from,
)
from mailaccounts_server.credentials import ConfigurationError
from support.factories import clean_env


def _serve_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_common_arguments(parser)
    add_serve_arguments(parser)
    return parser


def _settings(*flags: str) -> Settings:
    return settings_from(_serve_parser().parse_args(list(flags)))


def test_environment_variables_set_their_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILACCOUNTS_DATABASE_URL", "sqlite:///env.db")
    monkeypatch.setenv("MAILACCOUNTS_DB_POOL_SIZE", "7")
    monkeypatch.setenv("MAILACCOUNTS_RETENTION_DAYS", "1.5")
    monkeypatch.setenv("MAILACCOUNTS_TLS_VERIFY", "0")
    monkeypatch.setenv("MAILACCOUNTS_ALLOW_NETWORKS", "10.0.0.0/8, 192.168.0.0/16,")
    monkeypatch.setenv("MAILACCOUNTS_POLICY", "/etc/policy.toml")
    monkeypatch.setenv("MAILACCOUNTS_LOG_LEVEL", "debug")
    monkeypatch.setenv("MAILACCOUNTS_AUTH", "MTLS")
    monkeypatch.setenv("MAILACCOUNTS_REFLECTION", "off")
    monkeypatch.setenv("MAILACCOUNTS_CREDENTIAL_KEYS", "k1,k2")
    monkeypatch.setenv("MAILACCOUNTS_KEY_FILE", "")  # empty means unset, as before
    monkeypatch.setenv("MAILACCOUNTS_REQUIRE_SERVICES", "1")  # not a setting: ignored
    settings = _settings()
    assert settings.database_url == "sqlite:///env.db"
    assert settings.db_pool_size == 7
    assert settings.retention_days == 1.5
    assert settings.tls_verify is False
    assert settings.allow_networks == ("10.0.0.0/8", "192.168.0.0/16")
    assert settings.policy_file == "/etc/policy.toml"
    assert settings.log_level == "DEBUG"
    assert settings.auth == "mtls"
    assert settings.reflection is False
    assert settings.credential_keys == "k1,k2"
    assert settings.key_file is None  # beside the SQLite database (see test_key_file.py)
    assert "k1,k2" not in repr(settings)


def test_policy_file_spelling_of_the_variable_works_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILACCOUNTS_POLICY_FILE", "/etc/other.toml")
    assert _settings().policy_file == "/etc/other.toml"


def test_a_flag_beats_the_environment_which_beats_the_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert _settings().db_pool_size == Settings.model_fields["db_pool_size"].default
    monkeypatch.setenv("MAILACCOUNTS_DB_POOL_SIZE", "6")
    monkeypatch.setenv("MAILACCOUNTS_ALLOW_NETWORKS", "10.0.0.0/8")
    monkeypatch.setenv("MAILACCOUNTS_POLICY", "/env.toml")
    monkeypatch.setenv("MAILACCOUNTS_TLS_VERIFY", "1")
    monkeypatch.setenv("MAILACCOUNTS_MIGRATE_ON_START", "1")
    from_env = _settings()
    assert from_env.db_pool_size == 6
    assert from_env.allow_networks == ("10.0.0.0/8",)
    assert from_env.migrate_on_start is True
    flagged = _settings(
        "--db-pool-size", "3",
        "--allow-network", "172.16.0.0/12", "--allow-network", "fd00::/8",
        "--policy", "/flag.toml",
        "--no-tls-verify",
        "--no-migrate",
    )  # fmt: skip
    assert flagged.db_pool_size == 3
    assert flagged.allow_networks == ("172.16.0.0/12", "fd00::/8")
    assert flagged.policy_file == "/flag.toml"
    assert flagged.tls_verify is False
    assert flagged.migrate_on_start is False


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("MAILACCOUNTS_DB_POOL_SIZE", "abc", "MAILACCOUNTS_DB_POOL_SIZE (--db-pool-size)"),
        ("MAILACCOUNTS_DB_POOL_SIZE", "0", "MAILACCOUNTS_DB_POOL_SIZE (--db-pool-size)"),
        ("MAILACCOUNTS_GRACE_SECONDS", "-1", "MAILACCOUNTS_GRACE_SECONDS (--grace-seconds)"),
        ("MAILACCOUNTS_RETENTION_DAYS", "inf", "MAILACCOUNTS_RETENTION_DAYS (--retention-days)"),
        ("MAILACCOUNTS_TLS_VERIFY", "maybe", "MAILACCOUNTS_TLS_VERIFY (--tls-verify)"),
        ("MAILACCOUNTS_LOG_LEVEL", "LOUD", "MAILACCOUNTS_LOG_LEVEL (--log-level)"),
        ("MAILACCOUNTS_AUTH", "kerberos", "MAILACCOUNTS_AUTH (--auth)"),
    ],
)
def test_a_bad_environment_value_names_the_setting(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, named: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError) as excinfo:
        _settings()
    assert str(excinfo.value).startswith(f"{named}: ")


def test_the_message_for_a_bad_number_says_what_is_wrong(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILACCOUNTS_DB_POOL_SIZE", "abc")
    with pytest.raises(ConfigurationError, match="valid integer"):
        _settings()


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--db-pool-size", "many"], "--db-pool-size"),
        (["--workers", "0"], "--workers"),
        (["--drain-seconds", "soon"], "--drain-seconds"),
        (["--jwt-leeway-seconds", "-5"], "--jwt-leeway-seconds"),
        (["--max-tests-total", "0"], "--max-tests-total"),
    ],
)
def test_a_bad_flag_value_names_the_setting(flags: list[str], named: str) -> None:
    with pytest.raises(ConfigurationError, match=f"\\({named}\\): "):
        _settings(*flags)


def test_every_setting_has_a_serve_flag_except_the_secret_and_the_internal_one() -> None:
    parser = _serve_parser()
    dests: dict[str, list[str]] = {}
    for action in parser._actions:  # --reflection and --no-reflection share one dest
        dests.setdefault(action.dest, []).extend(action.option_strings)
    for name in Settings.model_fields:
        if name in ("credential_keys", "worker_index"):
            assert name not in dests, name
            continue
        assert name in dests, f"{name} has no flag"
        assert flag_name(name) in dests[name], name


def test_every_setting_flag_is_in_serve_help(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mailaccounts_server", "serve", "--help"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, env=clean_env(),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    for name in Settings.model_fields:
        flag = flag_name(name)
        if flag is not None:
            assert flag in done.stdout, flag


def test_serve_with_a_bad_variable_exits_2_naming_it_without_a_traceback(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mailaccounts_server", "serve", "--listen", "127.0.0.1:0"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env={**clean_env(), "MAILACCOUNTS_DB_POOL_SIZE": "abc"},
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "configuration error" in done.stderr
    assert "MAILACCOUNTS_DB_POOL_SIZE" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "mailaccounts.db").exists()
