"""The ``sleep`` handler: waits ``seconds``, then succeeds.

For trying out timeouts, concurrency policies and termination. It must do nothing but wait.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pydantic

from cronlet import sdk
from cronlet_handlers import _params


class SleepParameters(pydantic.BaseModel):
    model_config = _params.PARAMETERS_CONFIG

    seconds: float = pydantic.Field(ge=0, allow_inf_nan=False, description="How long to wait.")


class SleepHandler(sdk.TaskHandler):
    """Wait, then succeed."""

    def __init__(self, *, sleep: Callable[[float], None] = time.sleep) -> None:
        # Injectable so that tests fake the clock instead of waiting.
        self._sleep = sleep

    def execute(self, context: sdk.TaskContext) -> sdk.TaskResult:
        parameters = _params.parse(SleepParameters, context.parameters, handler="sleep")
        context.logger.info("sleeping %gs", parameters.seconds)
        self._sleep(parameters.seconds)
        return sdk.TaskResult.success(f"slept {parameters.seconds:g}s")
