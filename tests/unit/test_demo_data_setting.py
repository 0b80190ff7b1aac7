"""Development defaults never reach real data: when ``gencharge serve`` loads the demo
set (which includes an admin with a documented password) - pure unit tests of the
setting; tests/ops/test_workers.py checks a real serve on external databases."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from server.core.config import Environment, Settings

PG = "postgresql://u@db.internal/gencharge"
MONGO = "mongodb://mongo.internal/gencharge"


def _settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({}, True),  # the embedded default: demo data, as `make run` shows it
        ({"database_url": PG, "mongo_url": MONGO}, False),  # configured databases
        ({"database_url": PG, "mongo_url": MONGO, "load_demo_data": True}, True),
        ({"load_demo_data": False}, False),
    ],
)
def test_demo_data_only_where_it_cannot_reach_real_data(
    values: dict[str, object], expected: bool
) -> None:
    assert _settings(**values).demo_data is expected


def test_never_in_production() -> None:
    production = _settings(
        environment=Environment.PRODUCTION,
        database_url=PG,
        mongo_url=MONGO,
        load_demo_data=True,
        jwt_private_key=SecretStr("unused"),
    )
    assert production.demo_data is False


def test_the_environment_variable_still_decides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENCHARGE_DATABASE_URL", PG)
    monkeypatch.setenv("GENCHARGE_MONGO_URL", MONGO)
    assert _settings().demo_data is False
    monkeypatch.setenv("GENCHARGE_LOAD_DEMO_DATA", "true")
    assert _settings().demo_data is True
