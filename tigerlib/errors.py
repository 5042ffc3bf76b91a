"""One error type whose message is a single line that says what went wrong and how to fix it."""


class TigerError(Exception):
    """A user-facing problem: bad input, a missing artefact, an unusable setting.

    The CLI prints ``error: <message>`` and exits with status 2; notebooks show the same line.
    """
