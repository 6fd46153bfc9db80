"""The ``fail`` handler: fails as told, to exercise retries, backoff and the failure paths.

With ``succeedOnAttempt: N`` it fails until attempt N and then succeeds, which tests "retried until it
worked". It must have no other side effect than waiting ``exitAfterSeconds``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pydantic

from cronlet import sdk
from cronlet_handlers import _params


class FailParameters(pydantic.BaseModel):
    model_config = _params.PARAMETERS_CONFIG

    message: str = pydantic.Field("failed on purpose", description="The failure message.")
    retryable: bool = pydantic.Field(True, description="Whether Cronlet may retry the failure.")
    exit_after_seconds: float | None = pydantic.Field(
        None, ge=0, allow_inf_nan=False, description="Wait this long before ending the attempt."
    )
    succeed_on_attempt: int | None = pydantic.Field(
        None, ge=1, description="Succeed instead, from this attempt on (1 = the first try)."
    )


class FailHandler(sdk.TaskHandler):
    """Fail (or, from ``succeedOnAttempt`` on, succeed)."""

    def __init__(self, *, sleep: Callable[[float], None] = time.sleep) -> None:
        # Injectable so that tests fake the clock instead of waiting.
        self._sleep = sleep

    def execute(self, context: sdk.TaskContext) -> sdk.TaskResult:
        parameters = _params.parse(FailParameters, context.parameters, handler="fail")
        if parameters.exit_after_seconds:
            context.logger.info("waiting %gs before ending the attempt", parameters.exit_after_seconds)
            self._sleep(parameters.exit_after_seconds)
        if parameters.succeed_on_attempt is not None and context.attempt >= parameters.succeed_on_attempt:
            return sdk.TaskResult.success(
                f"succeeded on attempt {context.attempt} (succeedOnAttempt {parameters.succeed_on_attempt})"
            )
        context.logger.info("failing on attempt %d: %s", context.attempt, parameters.message)
        return sdk.TaskResult.failure(parameters.message, retryable=parameters.retryable)
