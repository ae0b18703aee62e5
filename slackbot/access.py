"""Who may use the bot, and where: checked before anything is stored or Claude is called.

The rules, in order (the first that applies decides):

1. `SLACKBOT_DENIED_USERS` are refused everywhere (denied wins over allowed).
2. With `SLACKBOT_ALLOWED_USERS`, only those people (and `SLACKBOT_ADMINS`) are served.
3. With `SLACKBOT_ALLOWED_CHANNELS`, only those channels are; a DM is always allowed (a person
   who passed 1 and 2 may talk to the bot privately).
4. External people (Slack Connect: another organisation) and guests are refused unless
   `SLACKBOT_ALLOW_EXTERNAL` / `SLACKBOT_ALLOW_GUESTS` open them. `users.info` (cached, see
   `people.py`) says who they are: a person whose team is not the installing team and, on
   Enterprise Grid, whose enterprise is not the installing enterprise, is external (sibling
   workspaces of one Grid org are not), and so is anyone Slack marks `is_stranger`. When
   `users.info` can't see the person at all, the event's `user_team` decides; a person Slack
   won't describe and whose event names no team is taken as external (Slack hides strangers,
   not members), but a lookup that failed on the network is not held against anyone.

The same rules apply to the `/claude` command (`commands.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from slackbot.config import Settings
from slackbot.people import People, Person

Reason = Literal["denied", "channel", "external", "guest"]


@dataclass(frozen=True)
class Where:
    """Where a request comes from: the installation it reached, and the channel."""

    team: str
    enterprise: str | None
    channel: str
    is_dm: bool


@dataclass
class Access:
    settings: Settings
    people: People
    #: The installation's own team and Grid enterprise, from `auth.test` at start-up (until
    #: then, what each request's envelope says).
    home_team: str | None = None
    home_enterprise: str | None = None

    def is_admin(self, user_id: str | None) -> bool:
        return self.settings.is_admin(user_id)

    async def refusal(
        self, user_id: str, where: Where, event: dict[str, Any] | None = None
    ) -> Reason | None:
        """Why `user_id` may not use the bot here, or None if they may. `event` (the Slack
        event, if any) lends its `user_profile` and `user_team` for people `users.info` can't
        see."""
        settings = self.settings
        if user_id in settings.denied_users:
            return "denied"
        if (
            settings.allowed_users
            and user_id not in settings.allowed_users
            and not self.is_admin(user_id)
        ):
            return "denied"
        if (
            settings.allowed_channels
            and not where.is_dm
            and where.channel not in settings.allowed_channels
        ):
            return "channel"
        if settings.allow_external and settings.allow_guests:
            return None
        event = event or {}
        where = Where(
            self.home_team or where.team,
            self.home_enterprise or where.enterprise,
            where.channel,
            where.is_dm,
        )
        self.people.learn_profile(user_id, event.get("user_profile"))
        person = await self.people.person(user_id)
        if not settings.allow_external and _is_external(person, where, event):
            return "external"
        if not settings.allow_guests and person.is_guest:
            return "guest"
        return None


def _is_external(person: Person, where: Where, event: dict[str, Any]) -> bool:
    if person.is_stranger:
        return True
    if person.known:
        return not _same_org(person.team_id, person.enterprise_id, where)
    team = event.get("user_team") or (event.get("user_profile") or {}).get("team")
    if team:
        return not _same_org(str(team), str(team) if str(team).startswith("E") else None, where)
    return person.lookup_error == "user_not_found"


def _same_org(team: str | None, enterprise: str | None, where: Where) -> bool:
    if where.enterprise and enterprise == where.enterprise:
        return True  # a sibling workspace of the same Grid org
    if where.enterprise and team == where.enterprise:
        return True  # an org-level id in place of a team
    return team is not None and team == where.team
