"""Shared fixtures: one embedded PostgreSQL server for the session, a fresh database per need.

The server lives under a short temporary RECON_HOME (unix socket paths are limited to ~100
bytes) and is stopped at the end. `fresh_database` creates an empty database on that server,
so tests that roll migrations back and forth never disturb the migrated `recon` database.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import create_database, drop_database

from resources import migrations
from resources.database import resolve_database_url
from resources.embedded import stop_embedded_server

# pipelines.definitions binds its resources to EnvVar("RECON_HOME") only when RECON_HOME is set
# as it is imported (for test modules importing it at top level: at collection); each test's
# fixture then points the variable at its own home, which the EnvVar reads at run time
os.environ.setdefault("RECON_HOME", str(Path(tempfile.gettempdir()) / "rt-collection"))
os.environ.pop("RECON_DATABASE_URL", None)

REPO_ROOT = Path(__file__).resolve().parent.parent
# fixtures that bring up the embedded server (and so PostgreSQL, Dagster's instance, ...)
SERVER_FIXTURES = {"recon_home", "database_url", "fresh_database", "own_home"}
# fixtures that load the real embedding model (tests may also carry @pytest.mark.model)
MODEL_FIXTURES = {"model"}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--fast",
        action="store_true",
        help="only the tests that need no database (pure functions): `make test-fast`",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "slow: starts its own server or `recon` processes, or loads the real model "
        "(left out of `make test-fast`)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """With --fast, deselect every test that needs the embedded server or the real model."""
    if not config.getoption("--fast"):
        return
    slow = [
        i
        for i in items
        if (SERVER_FIXTURES | MODEL_FIXTURES) & set(getattr(i, "fixturenames", ()))
        or i.get_closest_marker("slow") is not None
    ]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [i for i in items if i not in slow]


@pytest.fixture(scope="session")
def recon_home() -> Iterator[Path]:
    home = Path(tempfile.mkdtemp(prefix="rt-", dir="/tmp"))
    saved = {k: os.environ.get(k) for k in ("RECON_HOME", "RECON_DATABASE_URL", "DAGSTER_HOME")}
    os.environ["RECON_HOME"] = str(home)
    os.environ.pop("RECON_DATABASE_URL", None)
    os.environ.pop("DAGSTER_HOME", None)
    yield home
    stop_embedded_server(home)
    shutil.rmtree(home, ignore_errors=True)
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def database_url(recon_home: Path) -> str:
    """The embedded `recon` database, migrated to the newest version."""
    url = resolve_database_url()
    migrations.migrate(url)
    return url


@pytest.fixture()
def fresh_database(database_url: str) -> Iterator[Callable[[], str]]:
    """A factory of empty databases on the session's server; all dropped afterwards."""
    created: list[str] = []

    def make() -> str:
        name, url = create_database(database_url)
        created.append(name)
        return url

    yield make
    for name in created:
        drop_database(database_url, name)
