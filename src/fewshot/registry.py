"""Name -> object registries, so configs and the CLI name components by string."""
from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from fewshot.errors import FewShotError

T = TypeVar("T")


class Registry(Generic[T]):
    """A mapping from names to objects that lists the valid names on a miss.

    ``inputs`` are the keyword arguments every registered class or factory takes from its caller
    (an encoder's ``in_channels``), as opposed to its options, which a user chooses by name.

    Example:
        >>> ENCODERS = Registry("encoder", inputs=("in_channels", "image_size"))
        >>> @ENCODERS.register("conv4")
        ... def conv4(in_channels, image_size, hidden=64): ...
        >>> ENCODERS.get("conv4") is conv4
        True
        >>> ENCODERS.build("conv4", in_channels=1, image_size=28, hidden=32)
    """

    def __init__(self, kind: str, inputs: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self.inputs = inputs
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

    def options(self, name: str) -> list[str] | None:
        """The options (keyword arguments other than :attr:`inputs`) that ``name`` takes; ``None``: any."""
        parameters = inspect.signature(self.get(name)).parameters.values()
        if any(p.kind is p.VAR_KEYWORD for p in parameters):
            return None
        return sorted(p.name for p in parameters
                      if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in self.inputs)

    def build(self, name: str, /, **arguments: Any) -> Any:
        """Call the class or factory registered as ``name`` with ``arguments`` (its inputs and options).

        An option it does not take is refused with a :class:`FewShotError` that names the ones it does.
        """
        valid = self.options(name)
        extra = sorted(set(arguments) - set(self.inputs) - set(valid)) if valid is not None else []
        if extra:
            raise FewShotError(f"the {name} {self.kind} takes no option {', '.join(extra)}; "
                               f"its options: {', '.join(valid) or 'none'}")
        return self.get(name)(**arguments)

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
