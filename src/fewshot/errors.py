"""The one exception type for user mistakes.

Every error a user can cause (bad data, an impossible episode, an unknown name,
a wrong file) is raised as :class:`FewShotError` with a message that says what
is wrong and what to do instead. The CLI prints such errors as one line, without
a traceback.
"""


class FewShotError(ValueError):
    """A user-facing error: the message says what is wrong and how to fix it.

    Example:
        >>> raise FewShotError("no run in runs/proto: train one with fewshot train protonet --out runs/proto")
    """


class NotFoundError(FewShotError):
    """What was asked for (a class, an example, a file) does not exist.

    Example:
        >>> gallery.remove_class("no such class")  # raises NotFoundError
    """


class BusyError(FewShotError):
    """Another process holds the resource (a gallery being written); waiting did not help. Try again later.

    Example:
        >>> try:
        ...     gallery.add("alpha", ["a1.png"])
        ... except BusyError:
        ...     pass  # another process is writing the gallery: try again later
    """
