"""Cronlet's built-in task handlers, registered in the ``cronlet.handlers`` entry-point group.

=========  ============================================================================================
``echo``   logs its parameters and returns them (a smoke test of the whole pipeline)
``http``   sends one HTTP request, retrying transient errors within the attempt
``shell``  runs a command; exit status 0 is success
``sleep``  waits, then succeeds (for timeouts, concurrency and termination tests)
``fail``   fails as told, optionally until a given attempt (for retry tests)
=========  ============================================================================================

Each handler validates its parameters with a pydantic model and raises ``PermanentError`` on bad ones, so
a typo in ``spec.parameters`` fails once instead of being retried. Like the SDK they run in the executor
image: they must import only the standard library, pydantic, tenacity and ``cronlet.sdk``, never kopf,
the Kubernetes client or the operator's modules. This file imports nothing so that loading one handler
does not load the others.
"""
