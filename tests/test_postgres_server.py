"""The tests' PostgreSQL is a real server: it starts, answers, and each test gets its own
empty database."""

from __future__ import annotations

import psycopg

from fakes.postgres_server import PostgresServer


def test_each_test_gets_a_fresh_database_on_a_real_server(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    with psycopg.connect(postgres_url) as conn:
        [version] = conn.execute("SHOW server_version").fetchone() or [""]
        assert int(str(version).split(".")[0]) >= 13
        conn.execute("CREATE TABLE t (x int)")
    other = postgres_server.create_database()
    with psycopg.connect(other) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()
        assert tables == (0,)
