"""The handler SDK: the types a task handler is written against.

A handler receives a :class:`TaskContext` and returns a :class:`TaskResult`::

    from cronlet.sdk import TaskContext, TaskHandler, TaskResult

    class SampleHandler(TaskHandler):
        def execute(self, context: TaskContext) -> TaskResult:
            context.logger.info("batch size %s", context.parameters["batchSize"])
            return TaskResult.success("processed 100 rows")

``execute`` may be ``async def``. How a run ends decides whether Cronlet retries it:

- ``TaskResult.success(...)``                     -> succeeded, exit code 0
- ``TaskResult.failure(..., retryable=True)``      -> failed, retried (exit code 1)
- any exception other than ``PermanentError``       -> failed, retried (exit code 1)
- ``TaskResult.failure(..., retryable=False)``     -> failed, not retried (exit code 2)
- ``PermanentError``                                -> failed, not retried (exit code 2)

This is Cronlet's public Python API (``__all__``); everything else under ``cronlet`` is private. It is
imported into every handler image, so it must import only the standard library and pydantic: never kopf,
the Kubernetes client or another ``cronlet`` module. tests/unit/test_layers.py enforces it.
"""

from __future__ import annotations

import abc
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, overload

import pydantic
import pydantic_core

__all__ = [
    "TERMINATION_MESSAGE_LIMIT",
    "HandlerFunction",
    "PermanentError",
    "TaskContext",
    "TaskHandler",
    "TaskResult",
    "__version__",
]

# The release of Cronlet this SDK belongs to (both distributions carry it; a unit test checks they agree).
__version__ = "0.1.0"

# Kubernetes keeps at most 4096 bytes of a container's termination message and cuts the rest, which
# would leave the operator with half a JSON document.
TERMINATION_MESSAGE_LIMIT = 4096

_TRUNCATED_MARK = " …[truncated]"
_DATA_TOO_LARGE = " [data omitted: too large for the termination message]"
_DATA_NOT_JSON = " [data omitted: not JSON-serializable]"
# Below this, not even the fixed fields and the marks fit; no caller has a reason to go there.
_MIN_LIMIT = 256


class PermanentError(Exception):
    """Raised by a handler for a failure that retrying cannot fix (bad parameters, a missing resource)."""


class _SuccessFactory(Protocol):
    def __call__(self, message: str = "", data: dict[str, Any] | None = None) -> TaskResult: ...


class _SuccessAttribute:
    """What type checkers see as ``TaskResult.success``: a constructor on the class, a bool on a result.

    A pydantic model cannot declare a field and a classmethod under one name, yet the public API has
    both (``TaskResult.success("done")`` and ``result.success``). At run time the classmethod is attached
    after the model is built; an instance reads its field from ``__dict__``, which wins over a
    non-data descriptor such as a classmethod. This class exists only to tell mypy the same story.
    """

    @overload
    def __get__(self, instance: None, owner: type[TaskResult]) -> _SuccessFactory: ...

    @overload
    def __get__(self, instance: TaskResult, owner: type[TaskResult]) -> bool: ...

    def __get__(self, instance: TaskResult | None, owner: type[TaskResult]) -> _SuccessFactory | bool:
        raise NotImplementedError  # never used at run time, see above

    def __set__(self, instance: TaskResult, value: bool) -> None:
        raise NotImplementedError


class TaskResult(pydantic.BaseModel):
    """How one attempt of a task ended; written as JSON to the executor's termination message."""

    model_config = pydantic.ConfigDict(frozen=True)

    if TYPE_CHECKING:
        success: _SuccessAttribute
    else:
        success: bool
    message: str = ""
    retryable: bool = True
    data: dict[str, Any] | None = None

    @pydantic.field_validator("message")
    @classmethod
    def _encodable_message(cls, value: str) -> str:
        # Output decoded with errors="surrogateescape" carries lone surrogates, which UTF-8 (and so the
        # termination message) cannot hold; replace them here rather than fail when the result is written.
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-8", errors="replace").decode("utf-8")
        return value

    @classmethod
    def failure(cls, message: str, retryable: bool = True, data: dict[str, Any] | None = None) -> TaskResult:
        """A failed attempt; Cronlet retries it (within ``spec.maxRetries``) unless ``retryable`` is false."""
        return cls(success=False, message=message, retryable=retryable, data=data)

    def to_termination_message(self, *, limit: int = TERMINATION_MESSAGE_LIMIT) -> str:
        """This result as JSON of at most ``limit`` UTF-8 bytes.

        When it does not fit, the end of the message is cut (and marked as truncated); ``data`` is kept
        if it takes at most half the limit, else dropped with a note in the message, since the operator
        keeps only the message. The result is always valid JSON.
        """
        if limit < _MIN_LIMIT:
            raise ValueError(f"limit must be at least {_MIN_LIMIT} bytes, got {limit}")
        data, note = self.data, ""
        try:
            full = self.model_dump_json()
        except pydantic_core.PydanticSerializationError:
            data, note = None, _DATA_NOT_JSON
        else:
            if _size(full) <= limit:
                return full
            if data is not None and _size(pydantic_core.to_json(data).decode("utf-8")) > limit // 2:
                data, note = None, _DATA_TOO_LARGE
        candidate = self._render(message=self.message + note, data=data)
        if _size(candidate) <= limit:
            return candidate
        # Binary search for the longest head of the message that fits: the encoded size only grows
        # with the number of characters kept, and JSON escaping makes it impossible to compute directly.
        low, high = 0, len(self.message)
        while low < high:
            middle = (low + high + 1) // 2
            rendered = self._render(message=self.message[:middle] + _TRUNCATED_MARK + note, data=data)
            if _size(rendered) <= limit:
                low = middle
            else:
                high = middle - 1
        return self._render(message=self.message[:low] + _TRUNCATED_MARK + note, data=data)

    def _render(self, *, message: str, data: dict[str, Any] | None) -> str:
        # model_copy skips validation, which is right here: the message only got shorter.
        return self.model_copy(update={"message": message, "data": data}).model_dump_json()


def _success(cls: type[TaskResult], message: str = "", data: dict[str, Any] | None = None) -> TaskResult:
    """A successful attempt."""
    return cls(success=True, message=message, data=data)


# See _SuccessAttribute for why this is attached after the class is built.
TaskResult.success = classmethod(_success)  # type: ignore[assignment]


def _size(text: str) -> int:
    return len(text.encode("utf-8"))


@dataclasses.dataclass(frozen=True, kw_only=True)
class TaskContext:
    """Everything a handler knows about the attempt it runs.

    ``attempt`` counts from 1 (the first try); ``scheduled_time`` is the run's due time in UTC, the same
    for every attempt of a run, so a handler can use it (with ``run_id``) to make its work idempotent.
    """

    task: str
    namespace: str
    scheduled_time: datetime
    run_id: str
    handler: str
    parameters: dict[str, Any] = dataclasses.field(default_factory=dict)
    attempt: int = 1
    logger: logging.Logger = dataclasses.field(
        default_factory=lambda: logging.getLogger("cronlet.handler"), compare=False, repr=False
    )

    def __post_init__(self) -> None:
        if self.scheduled_time.tzinfo is None or self.scheduled_time.utcoffset() is None:
            # A naive time would be read in the executor's local zone, which differs between images.
            raise ValueError(f"scheduled_time must be timezone-aware, got {self.scheduled_time!r}")
        if self.attempt < 1:
            raise ValueError(f"attempt counts from 1, got {self.attempt}")
        # Frozen, so normalise through object.__setattr__: handlers should not have to think about zones.
        object.__setattr__(self, "scheduled_time", self.scheduled_time.astimezone(UTC))


class TaskHandler(abc.ABC):
    """Base class of task handlers. The executor instantiates a subclass with no arguments.

    Override :meth:`execute`, as a plain or an ``async`` method.
    """

    @abc.abstractmethod
    def execute(self, context: TaskContext) -> TaskResult | Awaitable[TaskResult]:
        """Run one attempt of the task and say how it ended."""


HandlerFunction = Callable[[TaskContext], TaskResult | Awaitable[TaskResult]]
"""A handler written as a function (or any callable) instead of a TaskHandler subclass."""
