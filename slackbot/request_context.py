"""What Claude needs to know about this mention that the thread doesn't say: when, where, who.

The date and time in the asker's time zone (Slack's `users.info`), where the conversation is
(the channel's name, or a DM) and who is asking. It is sent as the last block of the request,
after the prompt-cache breakpoints, so that it can change on every mention without breaking the
cached prefix of the thread, and it is never stored: the next mention gets a fresh one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from slackbot.channels import Channels
from slackbot.events import Incoming
from slackbot.people import People, Person

#: How the block starts: it is the app speaking, not a person in the thread.
HEADER = "[Context from the Slack app for this reply; not part of the conversation]"


def _zone(person: Person) -> ZoneInfo | None:
    try:
        return ZoneInfo(person.tz) if person.tz else None
    except (ZoneInfoNotFoundError, ValueError):
        return None


def describe(msg: Incoming, person: Person, where: str | None, now: datetime) -> str:
    """The context block's text."""
    zone = _zone(person)
    local = now.astimezone(zone or UTC)
    offset = local.strftime("%z")
    when = f"{local:%A} {local.day} {local:%B %Y, %H:%M}"
    zone_name = f"{person.tz}, UTC{offset[:3]}:{offset[3:]}" if zone else "UTC"
    if msg.is_dm:
        place = f"a direct message between you and {person.name}"
    elif where:
        place = f"the Slack channel {where}" if where.startswith("#") else where
    else:
        place = "a Slack channel"
    return "\n".join(
        [
            HEADER,
            f"Now: {when} ({zone_name}, the asker's time zone)",
            f"Where: {place}",
            f"Asking: {person.name}",
        ]
    )


async def context_for(
    msg: Incoming, *, people: People, channels: Channels, now: datetime | None = None
) -> str:
    person = await people.person(msg.user) if msg.user else Person("", "someone")
    where = None if msg.is_dm else await channels.name(msg.channel)
    return describe(msg, person, where, now or datetime.now(UTC))
