"""The one exception type for user mistakes.

Every error a user can cause (bad data, an impossible episode, an unknown name,
a wrong file) is raised as :class:`FewShotError` with a message that says what
is wrong and what to do instead. The CLI prints such errors as one line, without
a traceback.
"""


class FewShotError(ValueError):
    """A user-facing error: the message says what is wrong and how to fix it."""
