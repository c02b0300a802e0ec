"""Class names of a gallery: what a name may be, checked before anything is stored."""
from __future__ import annotations

import unicodedata

from fewshot.errors import FewShotError

MAX_NAME_LENGTH = 100


def check_class_name(name: object) -> str:
    """The name, NFC-normalised, or a :class:`FewShotError` saying what is wrong with it.

    A name is 1 to 100 characters, without control or format characters (newlines, tabs,
    zero-width marks) and without surrounding spaces.

    Example:
        >>> check_class_name("alpha")
        'alpha'
    """
    if not isinstance(name, str):
        raise FewShotError(f"a class name is text, got {type(name).__name__}")
    name = unicodedata.normalize("NFC", name)
    if not name.strip():
        raise FewShotError("the class name is empty; pass a name such as --name alpha")
    if name != name.strip():
        raise FewShotError(f"the class name {name!r} starts or ends with spaces; remove them")
    if len(name) > MAX_NAME_LENGTH:
        raise FewShotError(f"the class name is {len(name)} characters long; use at most {MAX_NAME_LENGTH}")
    bad = sorted({c for c in name if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn")})
    if bad:
        shown = ", ".join(f"U+{ord(c):04X}" for c in bad)
        raise FewShotError(f"the class name {name!r} holds control or invisible characters ({shown}); remove them")
    return name
