"""Settings, read once from the environment into one frozen dataclass.

This is the only module that reads `os.environ`; every default lives here. It imports nothing
heavy, so that `slackbot` can reject a missing setting within a fraction of a second, before Bolt
or the Anthropic SDK are loaded.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from slackbot.errors import ConfigError

DEFAULT_MODEL = "claude-sonnet-5-5"
#: The Models API line of `DEFAULT_MODEL`: if that model is retired (or unknown to the API) and
#: CLAUDE_MODEL is unset, the bot uses the newest active model of this line instead.
DEFAULT_MODEL_LINE = "sonnet"
#: Adaptive thinking at high effort spends output tokens before the answer: 8,192 cut answers
#: short. Lowered to what the model allows.
DEFAULT_MAX_TOKENS = 32_000
DEFAULT_SLACK_API_URL = "https://slack.com/api/"
MB = 1024 * 1024
#: The largest attachment downloaded (SLACKBOT_MAX_FILE_MB); the file code's default too.
DEFAULT_MAX_FILE_BYTES = 20 * MB
#: Where a text-like attachment is cut (SLACKBOT_MAX_TEXT_FILE_KB); the file code's default too.
DEFAULT_MAX_TEXT_FILE_BYTES = 512 * 1024
DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful assistant that lives in Slack. People talk to you by @-mentioning you in "
    "channel threads or by direct message. Several people may speak in one thread: each of their "
    "messages starts with the speaker's name. Answer the latest message, using the thread as "
    "context. Your reply is shown in Slack, which renders standard Markdown (headings, bold, "
    "lists, links, code blocks): use it where it helps, keep answers focused, and prefer short "
    "paragraphs to walls of text."
)


@dataclass(frozen=True)
class Settings:
    """Everything the bot can be configured with (see the README's table)."""

    slack_bot_token: str
    anthropic_api_key: str
    slack_signing_secret: str | None = None
    slack_app_token: str | None = None
    anthropic_base_url: str | None = None
    slack_api_url: str = DEFAULT_SLACK_API_URL
    slack_file_hosts: tuple[str, ...] = ()
    db_path: str = "slackbot.db"
    #: PostgreSQL instead of SQLite (many instances on one database); None: SQLite at db_path.
    database_url: str | None = None
    #: PostgreSQL: an instance silent this long is taken for dead; a live one closes its replies.
    instance_timeout: float = 30.0
    port: int = 3000
    claude_model: str = DEFAULT_MODEL
    claude_model_is_default: bool = True
    claude_max_tokens: int = DEFAULT_MAX_TOKENS
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    dm_idle_hours: float = 24.0
    edit_interval: float = 1.0
    edit_budget_per_minute: float = 45.0
    edit_burst: int = 5
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    claude_read_timeout: float = 90.0
    log_level: str = "INFO"
    #: `text` (lines for people) or `json` (one object per line, for a log pipeline).
    log_format: str = "text"
    #: Socket Mode has no HTTP listener: this port serves `/metrics` and `/healthz` (in HTTP
    #: mode as well as `PORT`). None: no such listener.
    metrics_port: int | None = None
    #: Claude's effort setting (`output_config.effort`); None sends none (the model's default).
    claude_effort: str | None = None
    #: Claude's server tools the bot offers, in the order given.
    tools: tuple[str, ...] = ("web_search", "web_fetch")
    #: Web searches one reply may make (a `pause_turn` continuation gets what is left).
    web_search_max_uses: int = 5
    #: Domains the web tools may (or may not) use; the API refuses both lists at once.
    web_allowed_domains: tuple[str, ...] = ()
    web_blocked_domains: tuple[str, ...] = ()
    #: A text-like attachment (or a converted Office document) is cut past this many bytes.
    max_text_file_bytes: int = DEFAULT_MAX_TEXT_FILE_BYTES
    #: Operator price overrides for `slackbot usage`: (model id, id prefix or line, USD per
    #: million input tokens, USD per million output tokens).
    prices: tuple[tuple[str, float, float], ...] = ()
    #: USD per 1,000 web searches for `slackbot usage` (`"web_search"` in SLACKBOT_PRICES).
    web_search_price: float | None = None
    #: `sessions`: a top-level DM is answered in its own thread, which is the conversation;
    #: `conversation`: top-level DMs are one running conversation (until idle or `reset`).
    dm_mode: str = "sessions"
    #: `auto` (native streaming in DM threads, `chat.update` elsewhere), `native` or `update`.
    streaming: str = "auto"
    #: The Messages tab's suggested prompts as (title, message); empty means the built-in ones.
    suggested_prompts: tuple[tuple[str, str], ...] = ()
    #: Who may use the bot (Slack IDs; empty = everyone). Denied wins over allowed; DMs are
    #: allowed whatever the channel list says (see `access.py`).
    allowed_channels: tuple[str, ...] = ()
    allowed_users: tuple[str, ...] = ()
    denied_users: tuple[str, ...] = ()
    #: Slack Connect users from another organisation, and guests: refused unless opened.
    allow_external: bool = False
    allow_guests: bool = False
    #: Whom a refused person should ask (free text, shown in the refusal).
    admin_contact: str | None = None
    #: May change channel prompts; exempt from the per-user token limit.
    admins: tuple[str, ...] = ()
    #: Input (cache reads and writes included) plus output tokens per person per UTC day.
    user_daily_tokens: int | None = None
    #: Estimated USD per workspace (or Grid enterprise) per UTC day, web searches included.
    workspace_daily_usd: float | None = None
    #: Conversations idle longer than this many days are deleted (None: kept forever).
    retention_days: float | None = None

    def is_admin(self, user_id: str | None) -> bool:
        """One of SLACKBOT_ADMINS: may change channel prompts, has no per-user token limit."""
        return bool(user_id) and user_id in self.admins

    @property
    def socket_mode(self) -> bool:
        """Socket Mode when an app-level token is given; HTTP mode otherwise (the issue's rule)."""
        return bool(self.slack_app_token)


#: Every field's default, as written once in `Settings`: `load_settings` falls back to these.
_DEFAULT: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(Settings)}


def _required(env: Mapping[str, str], name: str, *, prefix: str | None = None) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigError(f"{name} is not set: see the README's settings table")
    if prefix and not value.startswith(prefix):
        raise ConfigError(f"{name} must start with {prefix!r}")
    return value


def _optional(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def _number(env: Mapping[str, str], name: str, default: float, *, minimum: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum:g}, got {raw!r}")
    return value


def _integer(env: Mapping[str, str], name: str, default: int, *, minimum: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {raw!r}")
    return value


def _port(env: Mapping[str, str], name: str) -> int | None:
    """A TCP port to listen on, or None when unset."""
    if not _optional(env, name):
        return None
    port = _integer(env, name, 0, minimum=1)
    if port > 65535:
        raise ConfigError(f"{name} must be a port number (1-65535), got {port}")
    return port


def _url(env: Mapping[str, str], name: str, default: str | None) -> str | None:
    raw = _optional(env, name)
    if raw is None:
        return default
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{name} must be an http(s) URL, got {raw!r}")
    return raw


def _edit_budget(env: Mapping[str, str]) -> tuple[float, int]:
    """`SLACKBOT_EDIT_BUDGET` is "45" (per minute) or "45/5" (per minute / burst)."""
    raw = env.get("SLACKBOT_EDIT_BUDGET", "").strip()
    default_burst = _DEFAULT["edit_burst"]
    if not raw:
        return _DEFAULT["edit_budget_per_minute"], default_burst
    rate, _, burst = raw.partition("/")
    try:
        per_minute = float(rate)
        burst_n = int(burst) if burst else default_burst
    except ValueError:
        raise ConfigError(
            f"SLACKBOT_EDIT_BUDGET must look like '45' or '45/5', got {raw!r}"
        ) from None
    if per_minute <= 0 or burst_n < 1:
        raise ConfigError(f"SLACKBOT_EDIT_BUDGET must be positive, got {raw!r}")
    return per_minute, burst_n


def _prices(env: Mapping[str, str]) -> tuple[tuple[tuple[str, float, float], ...], float | None]:
    """`SLACKBOT_PRICES` is JSON: {"sonnet": [3, 15], "claude-opus-4-6": [5, 25]} — USD per
    million input and output tokens, keyed by model id, id prefix or model line — and
    optionally "web_search": 10, USD per 1,000 searches."""
    raw = env.get("SLACKBOT_PRICES", "").strip()
    if not raw:
        return (), None
    example = '{"sonnet": [3, 15], "web_search": 10}'
    search_price: float | None = None
    try:
        table = json.loads(raw)
        if not isinstance(table, dict):
            raise ValueError
        rows = []
        for key, pair in table.items():
            if key == "web_search":
                if isinstance(pair, bool) or not isinstance(pair, int | float) or pair < 0:
                    raise ValueError
                search_price = float(pair)
                continue
            if not isinstance(pair, list) or len(pair) != 2:
                raise ValueError
            price_in, price_out = (float(x) for x in pair)
            if price_in < 0 or price_out < 0:
                raise ValueError
            rows.append((str(key), price_in, price_out))
    except (ValueError, TypeError):
        raise ConfigError(
            f"SLACKBOT_PRICES must be JSON like {example} (USD per million input/output tokens;"
            " per 1,000 web searches)"
        ) from None
    return tuple(rows), search_price


#: Slack pins at most this many suggested prompts.
MAX_SUGGESTED_PROMPTS = 4


def _suggested_prompts(env: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """`SLACKBOT_SUGGESTED_PROMPTS`: JSON, a list of 1-4 {"title": …, "message": …}."""
    raw = env.get("SLACKBOT_SUGGESTED_PROMPTS", "").strip()
    if not raw:
        return ()
    try:
        items = json.loads(raw)
        if not isinstance(items, list) or not 1 <= len(items) <= MAX_SUGGESTED_PROMPTS:
            raise ValueError
        prompts = []
        for item in items:
            title, message = item["title"], item["message"]
            if not (isinstance(title, str) and isinstance(message, str)):
                raise ValueError
            if not title.strip() or not message.strip():
                raise ValueError
            prompts.append((title.strip(), message.strip()))
    except (ValueError, TypeError, KeyError):
        raise ConfigError(
            "SLACKBOT_SUGGESTED_PROMPTS must be a JSON list of 1 to "
            f'{MAX_SUGGESTED_PROMPTS} objects like {{"title": "Summarise", "message": "…"}}'
        ) from None
    return tuple(prompts)


EFFORTS = ("low", "medium", "high", "xhigh", "max")
DM_MODES = ("sessions", "conversation")
STREAMING_MODES = ("auto", "native", "update")
LOG_FORMATS = ("text", "json")
TOOLS = ("web_search", "web_fetch", "code_execution")


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str | None:
    raw = _optional(env, name)
    if raw is None:
        return None
    if raw.lower() not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw.lower()


def _listed(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    return tuple(part.strip().lower() for part in env.get(name, "").split(",") if part.strip())


def _ids(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """Comma-separated Slack IDs (`U123`, `C123`): kept as written (IDs are case-sensitive)."""
    ids = tuple(
        dict.fromkeys(part.strip() for part in env.get(name, "").split(",") if part.strip())
    )
    bad = [i for i in ids if not i.isalnum()]
    if bad:
        raise ConfigError(
            f"{name} must be comma-separated Slack IDs like U0123ABCD, got {bad[0]!r}"
        )
    return ids


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise ConfigError(f"{name} must be 1 or 0, got {raw!r}")


def _limit(env: Mapping[str, str], name: str) -> float | None:
    """A positive number, or None when unset (no limit)."""
    if not env.get(name, "").strip():
        return None
    value = _number(env, name, 0.0, minimum=0)
    if value <= 0:
        raise ConfigError(f"{name} must be more than 0 (leave it unset for no limit)")
    return value


def _tools(env: Mapping[str, str]) -> tuple[str, ...]:
    """`SLACKBOT_TOOLS`: comma-separated server tools, or `none`."""
    if not _optional(env, "SLACKBOT_TOOLS"):
        return tuple(_DEFAULT["tools"])
    tools = _listed(env, "SLACKBOT_TOOLS")
    if tools == ("none",):
        return ()
    unknown = [tool for tool in tools if tool not in TOOLS]
    if unknown:
        raise ConfigError(
            f"SLACKBOT_TOOLS must name tools from {', '.join(TOOLS)} (or be 'none'), "
            f"got {', '.join(unknown)!r}"
        )
    return tuple(dict.fromkeys(tools))


def _web_domains(env: Mapping[str, str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    allowed = _listed(env, "SLACKBOT_WEB_ALLOWED_DOMAINS")
    blocked = _listed(env, "SLACKBOT_WEB_BLOCKED_DOMAINS")
    if allowed and blocked:
        raise ConfigError(
            "SLACKBOT_WEB_ALLOWED_DOMAINS and SLACKBOT_WEB_BLOCKED_DOMAINS can't both be set "
            "(the API takes one or the other): keep one"
        )
    return allowed, blocked


def _database_url(env: Mapping[str, str]) -> str | None:
    """`DATABASE_URL`: a PostgreSQL URL (Heroku's `postgres://` too), or unset for SQLite."""
    url = _optional(env, "DATABASE_URL")
    if url is None:
        return None
    if not url.startswith(("postgresql://", "postgres://")):
        scheme = url.split("://", 1)[0] if "://" in url else "no scheme"
        raise ConfigError(
            f"DATABASE_URL must be a postgresql:// (or postgres://) URL, not {scheme}"
            " (unset it to use SQLite at SLACKBOT_DB)"
        )
    return url


def load_settings(env: Mapping[str, str], *, need_slack: bool = True) -> Settings:
    """Build `Settings` from an environment mapping, or raise `ConfigError` naming the variable."""
    bot_token = _required(env, "SLACK_BOT_TOKEN", prefix="xoxb-") if need_slack else ""
    app_token = _optional(env, "SLACK_APP_TOKEN")
    if app_token and not app_token.startswith("xapp-"):
        raise ConfigError("SLACK_APP_TOKEN must start with 'xapp-'")
    signing_secret = _optional(env, "SLACK_SIGNING_SECRET")
    if need_slack and not app_token and not signing_secret:
        raise ConfigError(
            "SLACK_SIGNING_SECRET is not set: HTTP mode needs it "
            "(or set SLACK_APP_TOKEN for Socket Mode)"
        )
    api_key = _required(env, "ANTHROPIC_API_KEY") if need_slack else ""
    model = _optional(env, "CLAUDE_MODEL")
    budget, burst = _edit_budget(env)
    slack_api_url = _url(env, "SLACK_API_URL", DEFAULT_SLACK_API_URL) or DEFAULT_SLACK_API_URL
    if not slack_api_url.endswith("/"):
        slack_api_url += "/"  # slack_sdk joins method names onto it
    hosts = tuple(
        h.strip().lower() for h in env.get("SLACK_FILE_HOSTS", "").split(",") if h.strip()
    )
    allowed_domains, blocked_domains = _web_domains(env)
    prices, web_search_price = _prices(env)
    return Settings(
        slack_bot_token=bot_token,
        anthropic_api_key=api_key,
        slack_signing_secret=signing_secret,
        slack_app_token=app_token,
        anthropic_base_url=_url(env, "ANTHROPIC_BASE_URL", None),
        slack_api_url=slack_api_url,
        slack_file_hosts=hosts,
        db_path=_optional(env, "SLACKBOT_DB") or _DEFAULT["db_path"],
        database_url=_database_url(env),
        instance_timeout=_number(
            env, "SLACKBOT_INSTANCE_TIMEOUT", _DEFAULT["instance_timeout"], minimum=1
        ),
        port=_integer(env, "PORT", _DEFAULT["port"], minimum=0),
        claude_model=model or DEFAULT_MODEL,
        claude_model_is_default=model is None,
        claude_max_tokens=_integer(
            env, "CLAUDE_MAX_TOKENS", _DEFAULT["claude_max_tokens"], minimum=1
        ),
        system_prompt=_optional(env, "CLAUDE_SYSTEM_PROMPT") or _DEFAULT["system_prompt"],
        dm_idle_hours=_number(env, "SLACKBOT_DM_IDLE_HOURS", _DEFAULT["dm_idle_hours"], minimum=0),
        edit_interval=_number(env, "SLACKBOT_EDIT_INTERVAL", _DEFAULT["edit_interval"], minimum=0),
        edit_budget_per_minute=budget,
        edit_burst=burst,
        max_file_bytes=int(
            _number(env, "SLACKBOT_MAX_FILE_MB", _DEFAULT["max_file_bytes"] / MB, minimum=0.001)
            * MB
        ),
        claude_read_timeout=_number(
            env, "SLACKBOT_CLAUDE_READ_TIMEOUT", _DEFAULT["claude_read_timeout"], minimum=0.1
        ),
        log_level=(_optional(env, "SLACKBOT_LOG_LEVEL") or _DEFAULT["log_level"]).upper(),
        log_format=_choice(env, "SLACKBOT_LOG_FORMAT", LOG_FORMATS) or _DEFAULT["log_format"],
        metrics_port=_port(env, "SLACKBOT_METRICS_PORT"),
        claude_effort=_choice(env, "CLAUDE_EFFORT", EFFORTS),
        tools=_tools(env),
        web_search_max_uses=_integer(
            env, "SLACKBOT_WEB_SEARCH_MAX_USES", _DEFAULT["web_search_max_uses"], minimum=1
        ),
        web_allowed_domains=allowed_domains,
        web_blocked_domains=blocked_domains,
        max_text_file_bytes=_integer(
            env, "SLACKBOT_MAX_TEXT_FILE_KB", _DEFAULT["max_text_file_bytes"] // 1024, minimum=1
        )
        * 1024,
        prices=prices,
        web_search_price=web_search_price,
        dm_mode=_choice(env, "SLACKBOT_DM_MODE", DM_MODES) or _DEFAULT["dm_mode"],
        streaming=_choice(env, "SLACKBOT_STREAMING", STREAMING_MODES) or _DEFAULT["streaming"],
        suggested_prompts=_suggested_prompts(env),
        allowed_channels=_ids(env, "SLACKBOT_ALLOWED_CHANNELS"),
        allowed_users=_ids(env, "SLACKBOT_ALLOWED_USERS"),
        denied_users=_ids(env, "SLACKBOT_DENIED_USERS"),
        allow_external=_flag(env, "SLACKBOT_ALLOW_EXTERNAL"),
        allow_guests=_flag(env, "SLACKBOT_ALLOW_GUESTS"),
        admin_contact=_optional(env, "SLACKBOT_ADMIN_CONTACT"),
        admins=_ids(env, "SLACKBOT_ADMINS"),
        user_daily_tokens=_daily_tokens(env),
        workspace_daily_usd=_limit(env, "SLACKBOT_WORKSPACE_DAILY_USD"),
        retention_days=_limit(env, "SLACKBOT_RETENTION_DAYS"),
    )


def _daily_tokens(env: Mapping[str, str]) -> int | None:
    if not env.get("SLACKBOT_USER_DAILY_TOKENS", "").strip():
        return None
    return _integer(env, "SLACKBOT_USER_DAILY_TOKENS", 0, minimum=1)
