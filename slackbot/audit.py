"""`slackbot audit`: every change of a channel's instructions (who, when, old, new).

Reads the database alone, read-only (like `slackbot usage`), so it runs beside a live bot and
needs no credentials.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from slackbot.errors import UsageError


def report(db_path: str, *, channel: str | None = None) -> str:
    """The changes, oldest first; `channel` keeps one channel's."""
    if not Path(db_path).exists():
        raise UsageError(f"no database at {db_path}: set SLACKBOT_DB to the bot's database")
    try:
        conn = sqlite3.connect(f"{Path(db_path).resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise UsageError(f"cannot open {db_path}: {exc}") from None
    try:
        conn.execute("PRAGMA busy_timeout=5000")
        if not conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='prompt_audit'"
        ).fetchone():
            return "No channel instructions have been changed."
        sql = "SELECT at, team, channel, user_id, old_text, new_text FROM prompt_audit"
        args: list[str] = []
        if channel:
            sql += " WHERE channel = ?"
            args.append(channel)
        rows = conn.execute(sql + " ORDER BY at, id", args).fetchall()
    except sqlite3.Error as exc:
        raise UsageError(f"cannot read {db_path}: {exc}") from None
    finally:
        conn.close()
    if not rows:
        return "No channel instructions have been changed."
    out = []
    for at, team, where, user, old, new in rows:
        when = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        action = "cleared" if new is None else "set"
        out.append(f"{when}  {team}  {where}  {action} by {user}")
        out.append(f"  old: {_shown(old)}")
        out.append(f"  new: {_shown(new)}")
    return "\n".join(out)


def _shown(text: str | None) -> str:
    if text is None:
        return "(none)"
    return text.replace("\n", "\n       ")
