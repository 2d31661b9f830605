"""Frozen, typed records without the cost of ``dataclasses``.

``import dataclasses`` pulls in ``inspect`` and costs ~6.6 ms inside pam_python,
more than the whole per-login budget (1.15x a bare module, ~2.5 ms). A
``Record`` subclass gets the same keyword-only, immutable, comparable shape from
its annotations for ~5 µs a class, and mypy checks it as a frozen dataclass
through ``dataclass_transform``.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, Self, TypeVar, dataclass_transform

    _T = TypeVar("_T")
else:

    def dataclass_transform(**_kwargs: object) -> Callable[[_T], _T]:
        return lambda f: f


class FrozenInstanceError(AttributeError):
    """Raised on any attempt to change a frozen record."""


_MISSING = object()


@dataclass_transform(frozen_default=True, kw_only_default=True)
class Record:
    """Base of immutable keyword-only records of the annotated fields."""

    __record_fields__: tuple[str, ...] = ()
    __record_defaults__: dict[str, Any] = {}  # noqa: RUF012 (set once per class)

    def __init_subclass__(cls) -> None:
        names = list(cls.__record_fields__)
        for name in vars(cls).get("__annotations__", {}):
            if name not in names and not name.startswith("__"):
                names.append(name)
        cls.__record_fields__ = tuple(names)
        cls.__record_defaults__ = {
            n: getattr(cls, n) for n in names if getattr(cls, n, _MISSING) is not _MISSING
        }

    def __init__(self, **kwargs: Any) -> None:
        defaults = self.__record_defaults__
        for name in self.__record_fields__:
            value = kwargs.pop(name, _MISSING)
            if value is _MISSING:
                value = defaults.get(name, _MISSING)
                if value is _MISSING:
                    raise TypeError(f"{type(self).__name__}: missing field {name!r}")
            object.__setattr__(self, name, value)
        if kwargs:
            raise TypeError(f"{type(self).__name__}: unknown field(s) {sorted(kwargs)}")

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__record_fields__)
        return f"{type(self).__name__}({inner})"

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in self.__record_fields__)

    def __hash__(self) -> int:
        return hash(tuple(getattr(self, n) for n in self.__record_fields__))

    def __setattr__(self, name: str, value: object) -> None:
        raise FrozenInstanceError(f"{type(self).__name__} is frozen: cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"{type(self).__name__} is frozen: cannot delete {name!r}")

    def replace(self, **changes: Any) -> Self:
        """A copy with some fields changed (like ``dataclasses.replace``)."""
        values = {name: getattr(self, name) for name in self.__record_fields__}
        values.update(changes)
        return type(self)(**values)

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__record_fields__}
