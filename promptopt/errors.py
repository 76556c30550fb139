"""The one exception type users see: its message is a single sentence for stderr."""


class UserError(Exception):
    """Bad input or an unusable environment, explained in one sentence naming what and why."""
