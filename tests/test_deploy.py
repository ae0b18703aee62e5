"""The Dockerfile and compose.yaml: no Docker daemon runs here, so their shape is what is
checked: they parse, name the installed entry point, run as a non-root user, check /healthz,
and compose runs PostgreSQL and two Socket Mode replicas with health on SLACKBOT_METRICS_PORT."""

from __future__ import annotations

import json
import tomllib
from importlib.metadata import entry_points
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from slackbot.config import load_settings

ROOT = Path(__file__).resolve().parent.parent


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction: continuation lines joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pending = f"{pending} {line}" if pending else line
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip()
            continue
        logical.append(pending)
        pending = ""
    assert not pending, "a continuation line runs off the end"
    instructions = []
    for line in logical:
        keyword, _, arguments = line.partition(" ")
        assert keyword.isupper(), line
        instructions.append((keyword, arguments.strip()))
    return instructions


def the_entry_point() -> str:
    """The console script pyproject.toml declares, and the one installed under that name."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    (name,) = scripts
    (installed,) = entry_points(group="console_scripts", name=name)
    assert installed.value == scripts[name] == "slackbot.cli:main"
    return name


def test_the_dockerfile_runs_the_installed_entry_point_as_a_user_with_a_health_check() -> None:
    steps = dockerfile()
    keywords = [keyword for keyword, _ in steps]
    assert keywords[0] == "FROM"
    base = steps[0][1]
    assert base.startswith("python:") and base.endswith("-slim")
    assert any(k == "RUN" and "pip install ." in args for k, args in steps)

    users = [args for k, args in steps if k == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert keywords.index("USER") > max(i for i, k in enumerate(keywords) if k == "RUN")

    (health,) = [args for k, args in steps if k == "HEALTHCHECK"]
    assert "/healthz" in health and "SLACKBOT_METRICS_PORT" in health and "PORT" in health
    command = json.loads(health[health.index("CMD") + 3 :].strip())
    assert command[:2] == ["python", "-c"]
    compile(command[2], "HEALTHCHECK", "exec")  # the check itself is valid Python

    (entry,) = [args for k, args in steps if k == "ENTRYPOINT"]
    assert json.loads(entry) == [the_entry_point()]
    (cmd,) = [args for k, args in steps if k == "CMD"]
    assert json.loads(cmd) == ["run"]


def compose() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def test_compose_runs_postgresql_and_two_socket_mode_replicas() -> None:
    services = compose()["services"]
    assert set(services) == {"postgres", "bot"}
    assert services["postgres"]["image"].startswith("postgres:")
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])

    bot = services["bot"]
    assert bot["build"] == "."  # the Dockerfile above
    assert bot["command"] == ["run"]
    assert bot["deploy"]["replicas"] == 2
    assert bot["depends_on"]["postgres"]["condition"] == "service_healthy"
    env = bot["environment"]
    assert "SLACK_APP_TOKEN" in env  # Socket Mode
    url = urlsplit(env["DATABASE_URL"])
    assert (url.scheme, url.hostname, url.path) == ("postgresql", "postgres", "/slackbot")

    port = env["SLACKBOT_METRICS_PORT"]
    assert port in bot["expose"]
    assert f"127.0.0.1:{port}/healthz" in " ".join(bot["healthcheck"]["test"])
    assert bot["stop_grace_period"] == "30s"  # the drain takes up to 20 s


def test_the_bot_accepts_the_settings_compose_gives_it() -> None:
    env = dict(compose()["services"]["bot"]["environment"])
    env.update(SLACK_BOT_TOKEN="xoxb-1", SLACK_APP_TOKEN="xapp-1", ANTHROPIC_API_KEY="sk-ant-1")
    settings = load_settings(env)
    assert settings.socket_mode
    assert settings.metrics_port == int(env["SLACKBOT_METRICS_PORT"])
    assert settings.log_format == "json"
