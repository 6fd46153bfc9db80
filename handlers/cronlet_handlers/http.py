"""The ``http`` handler: sends one HTTP request and checks the response status.

Parameters: ``url`` (required), ``method`` (GET), ``headers`` ({}), ``headersFrom`` ({} : header name ->
the name of an environment variable holding its value, for credentials: fill the variable from a Secret in
the task's ``podTemplate``, never put them in ``parameters``), ``body`` (a string, or a JSON object or array
sent as JSON), ``expectedStatus`` (list of codes; default any 2xx), ``timeoutSeconds`` (10, per try),
``retries`` (2) and ``followRedirects`` (false).

Redirects are not followed by default: a 3xx is the answer (so ``expectedStatus: [302]`` works). With
``followRedirects: true`` up to 5 are followed, but never from https to http, and never to another host while
the request carries credentials (``Authorization``, ``Cookie``, ``Proxy-Authorization`` or any ``headersFrom``
header): those end the attempt as a permanent failure instead of sending the credentials elsewhere.

The URL in messages and logs has its query string replaced by ``?…``: query strings often carry tokens, and
messages end up in ``status.history`` and Events, readable by anyone who may read the task.

How a request ends::

    expected status                                  -> success
    connection error, timeout, 500/502/503/504       -> tried again within this attempt, up to `retries`
                                                        more times with exponential waits; if still
                                                        failing -> retryable failure
    4xx other than 408 and 429                       -> permanent failure (the request itself is wrong)
    any other unexpected status                      -> retryable failure

The in-attempt retries absorb blips (a pod restarting behind a Service) without spending one of the
task's ``maxRetries``, which each cost a new Job. 500 is retried like 502/503/504 because servers use it
for transient faults as often as for bugs; a persistent 500 still ends as a retryable failure.

Uses only the standard library's urllib (so executor images need no HTTP client) plus tenacity. Must not
follow the response any further than its status and the head of its body.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Annotated, Any

import pydantic
import tenacity

from cronlet import sdk
from cronlet_handlers import _params

TRANSIENT_STATUSES = frozenset({500, 502, 503, 504})
# Client errors that say "not now" rather than "never": a later attempt may succeed.
RETRYABLE_CLIENT_STATUSES = frozenset({408, 429})

_WAIT_MULTIPLIER_SECONDS = 0.5
_WAIT_MAX_SECONDS = 10.0
# Enough of a response to show in a message or hand back as data, without holding a large download.
_MAX_BODY_BYTES = 64 * 1024
_MESSAGE_BODY_CHARS = 300
_DATA_BODY_CHARS = 2000


class HttpParameters(pydantic.BaseModel):
    # Numbers become strings so that YAML such as `headers: {X-Count: 3}` works.
    model_config = _params.PARAMETERS_CONFIG | pydantic.ConfigDict(coerce_numbers_to_str=True)

    method: str = pydantic.Field("GET", pattern=r"^[A-Za-z]+$", description="HTTP method.")
    url: str = pydantic.Field(description="http:// or https:// URL to send the request to.")
    headers: dict[str, str] = pydantic.Field(default_factory=dict, description="Request headers.")
    headers_from: dict[str, str] = pydantic.Field(
        default_factory=dict,
        description="Header name -> environment variable holding its value (credentials).",
    )
    follow_redirects: bool = pydantic.Field(False, description="Follow up to 5 redirects (safely).")
    body: str | dict[str, Any] | list[Any] | None = pydantic.Field(
        None, description="Request body: a string as is, a JSON object or array as application/json."
    )
    expected_status: list[Annotated[int, pydantic.Field(ge=100, le=599)]] | None = pydantic.Field(
        None, min_length=1, description="Status codes that mean success; default any 2xx."
    )
    timeout_seconds: float = pydantic.Field(
        10.0, gt=0, allow_inf_nan=False, description="Timeout of one try, in seconds."
    )
    retries: int = pydantic.Field(2, ge=0, le=10, description="Extra tries after a transient error.")

    @pydantic.field_validator("method")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()

    @pydantic.field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urllib.parse.urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"must be an http:// or https:// URL with a host, got {value!r}")
        if parts.username is not None or parts.password is not None:
            # urllib does not send them, and they would end up in logs and messages: use a header.
            raise ValueError(
                "must not contain credentials; send them with headersFrom (an Authorization header)"
            )
        return value

    def is_expected(self, status: int) -> bool:
        if self.expected_status is None:
            return 200 <= status <= 299
        return status in self.expected_status

    def describe_expected(self) -> str:
        if self.expected_status is None:
            return "2xx"
        return ", ".join(str(status) for status in self.expected_status)


@dataclasses.dataclass(frozen=True)
class _Response:
    status: int
    body: bytes

    def text(self, limit: int) -> str:
        return self.body.decode("utf-8", errors="replace")[:limit]


class _TransientError(Exception):
    """A try that may work if repeated; ``response`` is set when the server did answer."""

    def __init__(self, description: str, *, response: _Response | None = None) -> None:
        super().__init__(description)
        self.response = response


class HttpHandler(sdk.TaskHandler):
    """Send one HTTP request."""

    def __init__(self, *, sleep: Callable[[float], None] = time.sleep) -> None:
        # Injectable so that tests fake the clock between retries instead of waiting.
        self._sleep = sleep

    def execute(self, context: sdk.TaskContext) -> sdk.TaskResult:
        parameters = _params.parse(HttpParameters, context.parameters, handler="http")
        request = _build_request(parameters, secrets=_secret_headers(parameters))
        target = f"{parameters.method} {redact(parameters.url)}"

        def before_sleep(state: tenacity.RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome is not None else None
            wait = state.next_action.sleep if state.next_action is not None else 0.0
            context.logger.warning(
                "%s: try %d failed (%s), trying again in %.1fs", target, state.attempt_number, error, wait
            )

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(parameters.retries + 1),
            wait=tenacity.wait_exponential(multiplier=_WAIT_MULTIPLIER_SECONDS, max=_WAIT_MAX_SECONDS),
            retry=tenacity.retry_if_exception_type(_TransientError),
            sleep=self._sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        context.logger.info("sending %s", target)
        try:
            response = retrying(_send, request, parameters=parameters, timeout=parameters.timeout_seconds)
        except _TransientError as exc:
            if exc.response is None:
                return sdk.TaskResult.failure(f"{target} failed after {parameters.retries + 1} tries: {exc}")
            response = exc.response
        return _judge(response, parameters=parameters, target=target)


def redact(url: str) -> str:
    """The URL without its query string (it often carries tokens) nor fragment, for messages and logs."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, "…" if parts.query else "", ""))


CREDENTIAL_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})
MAX_REDIRECTS = 5


def _secret_headers(parameters: HttpParameters) -> dict[str, str]:
    """``headersFrom``: each header's value from the executor's environment (filled from a Secret)."""
    found: dict[str, str] = {}
    for header, variable in parameters.headers_from.items():
        value = os.environ.get(variable)
        if value is None:
            raise sdk.PermanentError(
                f"headersFrom.{header}: the environment variable {variable} is not set (set it from a Secret "
                "in the task's podTemplate)"
            )
        found[header] = value
    return found


class _Redirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects only when asked, and never where credentials must not go."""

    max_redirections = MAX_REDIRECTS

    def __init__(self, *, follow: bool, credentials: bool) -> None:
        super().__init__()
        self.follow = follow
        self.credentials = credentials

    def redirect_request(
        self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any, newurl: str
    ) -> urllib.request.Request | None:
        if not self.follow:
            return None  # the 3xx is the answer
        old, new = urllib.parse.urlsplit(req.full_url), urllib.parse.urlsplit(newurl)
        if old.scheme == "https" and new.scheme != "https":
            raise _UnsafeRedirect(f"refused a redirect from https to {new.scheme}: {redact(newurl)}")
        if self.credentials and (new.hostname, new.port) != (old.hostname, old.port):
            raise _UnsafeRedirect(f"refused a redirect to another host with credentials: {redact(newurl)}")
        method = req.get_method()
        if code in (307, 308):
            return urllib.request.Request(
                newurl, data=req.data, headers=dict(req.header_items()), method=method
            )
        # 301/302 after a POST and every 303 become a GET without a body, as clients do.
        keep = method if code in (301, 302) and method != "POST" else "GET"
        headers_kept = {
            k: v for k, v in req.header_items() if k.lower() not in ("content-type", "content-length")
        }
        return urllib.request.Request(newurl, headers=headers_kept, method=keep)


class _UnsafeRedirect(Exception):
    pass


def _build_request(parameters: HttpParameters, *, secrets: dict[str, str]) -> urllib.request.Request:
    headers = {**parameters.headers, **secrets}
    names = {name.lower() for name in headers}
    data: bytes | None = None
    if isinstance(parameters.body, str):
        data = parameters.body.encode("utf-8")
        content_type = "text/plain; charset=utf-8"
    elif parameters.body is not None:
        data = json.dumps(parameters.body).encode("utf-8")
        content_type = "application/json"
    # Without this urllib would label any body application/x-www-form-urlencoded.
    if data is not None and "content-type" not in names:
        headers["Content-Type"] = content_type
    if "user-agent" not in names:
        headers["User-Agent"] = f"cronlet/{sdk.__version__}"
    return urllib.request.Request(parameters.url, data=data, headers=headers, method=parameters.method)


def _send(request: urllib.request.Request, *, parameters: HttpParameters, timeout: float) -> _Response:
    """One try; raises _TransientError for what another try may fix."""
    names = {name.lower() for name, _ in request.header_items()}
    credentials = bool(names & CREDENTIAL_HEADERS) or bool(parameters.headers_from)
    opener = urllib.request.build_opener(
        _Redirects(follow=parameters.follow_redirects, credentials=credentials)
    )
    try:
        with opener.open(request, timeout=timeout) as answer:
            response = _Response(status=answer.status, body=answer.read(_MAX_BODY_BYTES))
    except urllib.error.HTTPError as exc:
        # urllib raises for every status outside 2xx; for us that is still an answer to judge.
        with exc:
            response = _Response(status=exc.code, body=exc.read(_MAX_BODY_BYTES))
    except _UnsafeRedirect as exc:
        raise sdk.PermanentError(str(exc)) from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        raise _TransientError(f"{type(reason).__name__}: {reason}") from exc
    if response.status in TRANSIENT_STATUSES and not parameters.is_expected(response.status):
        raise _TransientError(f"status {response.status}", response=response)
    return response


def _judge(response: _Response, *, parameters: HttpParameters, target: str) -> sdk.TaskResult:
    status = response.status
    if parameters.is_expected(status):
        return sdk.TaskResult.success(
            f"{target} -> {status}", data={"status": status, "body": response.text(_DATA_BODY_CHARS)}
        )
    message = f"{target} -> {status}, expected {parameters.describe_expected()}"
    snippet = response.text(_MESSAGE_BODY_CHARS).strip()
    if snippet:
        message += f": {snippet}"
    permanent = 400 <= status <= 499 and status not in RETRYABLE_CLIENT_STATUSES
    return sdk.TaskResult.failure(message, retryable=not permanent, data={"status": status})
