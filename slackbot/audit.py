"""`slackbot audit`: every change of a channel's instructions (who, when, old, new).

Reads the database alone, read-only (`db_read`, like `slackbot usage`), so it runs beside a
live bot and needs no credentials.
"""

from __future__ import annotations

from datetime import UTC, datetime

from slackbot.db_read import reading


def report(source: str, *, channel: str | None = None) -> str:
    """The changes, oldest first; `channel` keeps one channel's. `source`: the SQLite file's
    path or the PostgreSQL URL."""
    with reading(source) as db:
        if not db.has_table("prompt_audit"):
            return "No channel instructions have been changed."
        sql = "SELECT at, team, channel, user_id, old_text, new_text FROM prompt_audit"
        args: list[str] = []
        if channel:
            sql += " WHERE channel = ?"
            args.append(channel)
        rows = db.rows(sql + " ORDER BY at, id", args)
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
