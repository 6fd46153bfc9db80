"""Parameter validation shared by the built-in handlers: turns pydantic errors into a PermanentError.

Pure: no I/O. Handler-specific rules belong in each handler's own model, not here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import pydantic
import pydantic.alias_generators
import pydantic_core

from cronlet import sdk

ModelT = TypeVar("ModelT", bound=pydantic.BaseModel)

# Parameters are written in the camelCase of Kubernetes manifests (timeoutSeconds); an unknown key is an
# error, because a misspelt optional parameter would otherwise be silently ignored.
PARAMETERS_CONFIG = pydantic.ConfigDict(
    alias_generator=pydantic.alias_generators.to_camel,
    populate_by_name=True,
    extra="forbid",
    frozen=True,
)


def parse(model: type[ModelT], parameters: Mapping[str, Any], *, handler: str) -> ModelT:
    """Validate ``parameters`` against ``model``; raises PermanentError with every problem listed."""
    try:
        return model.model_validate(dict(parameters))
    except pydantic.ValidationError as exc:
        problems = "; ".join(_describe(error) for error in exc.errors(include_url=False))
        raise sdk.PermanentError(f"invalid parameters for the {handler} handler: {problems}") from None


def _describe(error: pydantic_core.ErrorDetails) -> str:
    location = ".".join(str(part) for part in error["loc"])
    message = error["msg"]
    if error["type"] == "extra_forbidden":
        message = "unknown parameter"
    elif error["type"] == "value_error" and "ctx" in error:
        # Our own validators' messages, without pydantic's "Value error, " prefix.
        message = str(error["ctx"]["error"])
    return f"{location}: {message}" if location else message
