"""Name -> object registries, so configs and the CLI name components by string."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from fewshot.errors import FewShotError

T = TypeVar("T")


class Registry(Generic[T]):
    """A mapping from names to objects that lists the valid names on a miss.

    Example:
        >>> ENCODERS = Registry("encoder")
        >>> @ENCODERS.register("conv4")
        ... def conv4(): ...
        >>> ENCODERS.get("conv4") is conv4
        True
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            return obj

        return add

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise FewShotError(
                f"unknown {self.kind} {name!r}; valid {self.kind}s: {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
