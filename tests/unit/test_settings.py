"""Settings: URLs with secrets come from a variable or from a file; a deployment has no
built-in database."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatroute.errors import SettingsError
from chatroute.settings import DEFAULT_DATABASE_URL, SECRET_VARS, Settings

URLS = {
    "CHATROUTE_DATABASE_URL": ("database_url", "postgresql://chatroute:pw-db@db/chatroute"),
    "CHATROUTE_AMQP_URL": ("amqp_url", "amqps://chatroute:pw-mq@mq:5671/chatroute"),
    "CHATROUTE_REDIS_URL": ("redis_url", "rediss://:pw-redis@redis:6380/0"),
}


@pytest.mark.parametrize("name", SECRET_VARS)
def test_each_url_with_a_secret_comes_from_its_variable(name: str) -> None:
    field, url = URLS[name]
    assert getattr(Settings.from_env({name: url}), field) == url


@pytest.mark.parametrize("name", SECRET_VARS)
def test_or_from_the_file_its_FILE_variable_names(name: str, tmp_path: Path) -> None:
    # Given a secret file as Docker mounts it, ending in a newline
    field, url = URLS[name]
    secret = tmp_path / "secret"
    secret.write_text(url + "\n")
    # Then the setting is the file's contents, trimmed
    assert getattr(Settings.from_env({f"{name}_FILE": str(secret)}), field) == url


@pytest.mark.parametrize("name", SECRET_VARS)
def test_both_at_once_is_an_error(name: str, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text(URLS[name][1])
    with pytest.raises(SettingsError, match=f"set {name} or {name}_FILE, not both"):
        Settings.from_env({name: URLS[name][1], f"{name}_FILE": str(secret)})


def test_an_unreadable_or_empty_file_is_an_error_that_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(SettingsError, match=f"cannot read {missing}: No such file"):
        Settings.from_env({"CHATROUTE_AMQP_URL_FILE": str(missing)})
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(SettingsError, match="is empty"):
        Settings.from_env({"CHATROUTE_DATABASE_URL_FILE": str(empty)})


def test_the_embedded_default_serves_the_tools_but_no_deployed_process() -> None:
    # Given no database setting at all
    settings = Settings.from_env({})
    # Then replay, stats, report and history have the contract's default ...
    assert settings.database_url == DEFAULT_DATABASE_URL
    # ... and a process of a deployment refuses it, naming what to set
    with pytest.raises(SettingsError, match="CHATROUTE_DATABASE_URL_FILE"):
        settings.require_database("gateway")
    assert settings.with_database("sqlite:///x.db").require_database("gateway")
    configured = Settings.from_env({"CHATROUTE_DATABASE_URL": "sqlite:///x.db"})
    assert configured.require_database("worker") is configured


def test_queues_are_classic_queues_unless_set_quorum() -> None:
    assert Settings.from_env({}).queue_type == "classic"
    assert Settings.from_env({"CHATROUTE_QUEUE_TYPE": "quorum"}).queue_type == "quorum"
    with pytest.raises(SettingsError, match="CHATROUTE_QUEUE_TYPE='lazy': expected one of quorum"):
        Settings.from_env({"CHATROUTE_QUEUE_TYPE": "lazy"})
