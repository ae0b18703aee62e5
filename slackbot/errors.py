"""Every exception class the bot defines, with who sees it.

None of these texts reach Slack on their own: people see the fixed sentences of `messages.py`
(a `FileRefused` carries one of them). The operator sees a `ConfigError`'s text as the one line
`slackbot` prints before it exits.
"""

from __future__ import annotations


class ConfigError(Exception):
    """A setting is missing or malformed; its text is the one line the operator sees."""


class ModelRefused(ConfigError):
    """The configured model cannot be used; the text is the one line the operator sees."""


class UsageError(Exception):
    """`slackbot usage`: a bad argument or an unreadable database; the text is the one line the
    operator sees."""


class StreamCutOff(Exception):
    """Claude's stream ended without `message_stop`: the reply is incomplete. People see
    `messages.claude_failure`'s wording for a broken connection."""


class StoreUnavailable(Exception):
    """A store call made after the store was closed; the turn fails like any store error (the
    person sees the generic apology, the log has the rest)."""


class AlreadyRunning(ConfigError):
    """Another bot process serves the same SQLite file (its start-up recovery would close the
    first one's live replies); the text is the one line the operator sees."""


class FileRefused(Exception):
    """An attachment the bot will not use, raised from wherever that turns out (the lookup, the
    download, the decode) so the rest of that file's work is skipped.

    Its `text` is one of `messages.py`'s file notes: `attachments.py` shows it to the person under
    the reply, and the turn goes on with the other files.
    """

    def __init__(self, name: str, text: str) -> None:
        super().__init__(text)
        self.name = name
        self.text = text


class NotConvertible(Exception):
    """A document converter's reason for not using a file, raised in the bot or in the child
    process that converts it (and sent back from there as JSON).

    `problem` names one of `messages.py`'s file notes and `details` fill it in; `attachments.py`
    turns it into a `FileRefused`, so the person sees that note under the reply.
    """

    def __init__(self, problem: str, **details: object) -> None:
        super().__init__(problem)
        self.problem = problem
        self.details = details
