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
