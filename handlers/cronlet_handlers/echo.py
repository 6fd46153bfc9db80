"""The ``echo`` handler: logs its parameters and returns them, as the message (JSON) and as ``data``.

It accepts any parameters and has no side effects; it is the smallest proof that the operator, the Job,
the executor and the termination message work together. It must stay that trivial.
"""

from __future__ import annotations

import json

from cronlet import sdk


class EchoHandler(sdk.TaskHandler):
    """Return the parameters unchanged."""

    def execute(self, context: sdk.TaskContext) -> sdk.TaskResult:
        # sort_keys: the same parameters always give the same message, whatever order the spec had.
        text = json.dumps(context.parameters, sort_keys=True, ensure_ascii=False)
        context.logger.info("parameters: %s", text)
        return sdk.TaskResult.success(text, data=dict(context.parameters))
