"""Config.from_env: a value the server cannot use stops it at start, naming the variable."""

from __future__ import annotations

import pytest

from cluster.config import Config, ConfigError


def test_defaults_and_a_usable_database_url() -> None:
    cfg = Config.from_env({"DATABASE_URL": " postgresql://u@127.0.0.1:5432/jobs "})
    assert cfg.database_url == "postgresql://u@127.0.0.1:5432/jobs"
    assert Config.from_env({}).database_url is None


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"DATABASE_URL": "postgresql://h/d?sslmode=require"}, "DATABASE_URL"),
        ({"DATABASE_URL": "mysql://h/d"}, "DATABASE_URL"),
        ({"WORKERS": "0"}, "WORKERS"),
        ({"PORT": "http"}, "PORT"),
    ],
)
def test_unusable_values_are_refused_by_name(env: dict[str, str], names: str) -> None:
    with pytest.raises(ConfigError, match=names):
        Config.from_env(env)
