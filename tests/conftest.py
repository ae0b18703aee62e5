"""Fixtures: fake Slack and Claude servers, and the real bot wired to them (`fakes.harness`)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest

from fakes.claude import FakeClaude
from fakes.harness import Harness, running_harness
from fakes.postgres_server import NoPostgres, PostgresServer, running_postgres
from fakes.slack import FakeSlack


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        fake.add_user("U1", display_name="Alice")
        fake.add_user("U2", display_name="Bob")
        yield fake


@pytest.fixture
async def claude() -> AsyncIterator[FakeClaude]:
    async with FakeClaude() as fake:
        yield fake


@pytest.fixture
def db_path(tmp_path: Any) -> str:
    return str(tmp_path / "slackbot.db")


@pytest.fixture
async def harness(slack: FakeSlack, claude: FakeClaude, db_path: str) -> AsyncIterator[Harness]:
    async with running_harness(slack, claude, db_path) as h:
        yield h


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """One real aiohttp session, as `create_bot` makes for the bot's downloads."""
    async with aiohttp.ClientSession() as client_session:
        yield client_session


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the session. Where none can be started the PostgreSQL
    tests are skipped with the reason, except under `SLACKBOT_REQUIRE_POSTGRES=1` (CI), where
    that is a failure."""
    servers = running_postgres()
    try:
        server = servers.__enter__()
    except NoPostgres as exc:
        if os.environ.get("SLACKBOT_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL is required here but: {exc}")
        pytest.skip(f"PostgreSQL: {exc}")
    try:
        yield server
    finally:
        servers.__exit__(None, None, None)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A fresh, empty database on the session's server."""
    return postgres_server.create_database()


@pytest.fixture(params=["sqlite", "postgres"])
def source(request: pytest.FixtureRequest, db_path: str) -> str:
    """A database on each backend in turn: the SQLite file's path, then a PostgreSQL URL."""
    if request.param == "sqlite":
        return db_path
    return str(request.getfixturevalue("postgres_url"))
