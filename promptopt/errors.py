"""The one exception type users see: its message is a single sentence for stderr."""


CONTEXT_ERROR = "context window exceeded"  # how the error record of a prompt too long for its model begins


class UserError(Exception):
    """Bad input or an unusable environment, explained in one sentence naming what and why."""


def shown(part: object) -> str:
    """A name from a user's file as a sentence shows it: as it is when printable, else quoted
    with its escapes (a key holding a newline must not break the sentence in two)."""
    text = str(part)
    return text if text.isprintable() and text.strip() == text and text else repr(text)
