"""The built-in handlers, called directly with a TaskContext: echo, shell, http, fail, sleep.

The clock is faked where the handler waits on purpose (http retries, sleep, fail); shell runs real
processes, and http talks to a real server on 127.0.0.1 in a thread.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import logging
import socket
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cronlet import sdk
from cronlet_handlers import echo, fail, shell, sleep
from cronlet_handlers import http as http_handler


def _context(parameters: dict[str, Any], *, attempt: int = 1, handler: str = "test") -> sdk.TaskContext:
    return sdk.TaskContext(
        task="nightly",
        namespace="jobs",
        parameters=parameters,
        scheduled_time=datetime(2025, 3, 30, 1, 30, tzinfo=UTC),
        attempt=attempt,
        run_id="nightly-1",
        handler=handler,
        logger=logging.getLogger(f"cronlet.handler.{handler}"),
    )


class FakeSleep:
    """Records requested waits instead of waiting."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


# --- echo -----------------------------------------------------------------------------------------------


def test_echo_returns_its_parameters_as_message_and_data(caplog: pytest.LogCaptureFixture) -> None:
    parameters = {"b": [1, 2], "a": "x"}
    with caplog.at_level(logging.INFO):
        result = echo.EchoHandler().execute(_context(parameters))
    assert result.success
    assert json.loads(result.message) == parameters
    assert result.message == '{"a": "x", "b": [1, 2]}'  # sorted, so stable
    assert result.data == parameters
    assert '{"a": "x", "b": [1, 2]}' in caplog.text


def test_echo_with_no_parameters() -> None:
    assert echo.EchoHandler().execute(_context({})) == sdk.TaskResult.success("{}", data={})


# --- shell ----------------------------------------------------------------------------------------------


def _shell(parameters: dict[str, Any]) -> sdk.TaskResult:
    return shell.ShellHandler().execute(_context(parameters, handler="shell"))


def test_shell_list_command_succeeds_with_its_output() -> None:
    result = _shell({"command": [sys.executable, "-c", "print('hello')"]})
    assert result.success
    assert result.message == "command succeeded: hello"
    assert result.data == {"exitCode": 0}


def test_shell_string_command_runs_through_sh() -> None:
    result = _shell({"command": "echo one; echo two | tr a-z A-Z"})
    assert result.success
    assert result.message == "command succeeded: one\nTWO"


def test_shell_output_is_logged_line_by_line(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        _shell({"command": "echo first; echo second >&2"})
    messages = [record.getMessage() for record in caplog.records]
    assert "stdout: first" in messages
    assert "stderr: second" in messages


def test_shell_non_zero_exit_is_a_retryable_failure_with_the_stderr_tail() -> None:
    result = _shell({"command": "echo progress; echo 'disk full' >&2; exit 3"})
    assert not result.success
    assert result.retryable
    assert result.message == "command exited with status 3: disk full"
    assert result.data == {"exitCode": 3}


def test_shell_failure_without_stderr_shows_the_stdout_tail() -> None:
    result = _shell({"command": "echo only on stdout; exit 1"})
    assert result.message == "command exited with status 1: only on stdout"


def test_shell_failure_message_keeps_only_the_tail() -> None:
    result = _shell({"command": "for i in $(seq 1 500); do echo line-$i >&2; done; exit 1"})
    assert result.message.endswith("line-500")
    assert "line-1\n" not in result.message
    assert len(result.message) < 2000


def test_shell_killed_by_a_signal_says_so() -> None:
    result = _shell({"command": "kill -KILL $$"})
    assert not result.success
    assert result.retryable
    assert result.message == "command was killed by SIGKILL"


def test_shell_timeout_is_a_retryable_failure() -> None:
    started = time.monotonic()
    result = _shell({"command": "echo started; sleep 30", "timeoutSeconds": 2})
    assert time.monotonic() - started < 10
    assert not result.success
    assert result.retryable
    assert result.message == "command timed out after 2s: started"


def _process_gone(pid: int) -> bool:
    # In a container nothing may reap the orphan, so a killed process can linger as a zombie.
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "State:\tZ" in status


def test_shell_timeout_stops_the_whole_process_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    result = _shell({"command": f"sleep 30 & echo $! > {pid_file}; wait", "timeoutSeconds": 2})
    assert "timed out" in result.message
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while not _process_gone(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _process_gone(child)


def test_shell_env_and_working_dir(tmp_path: Path) -> None:
    result = _shell(
        {
            "command": 'echo "$GREETING $COUNT $(pwd)"',
            "env": {"GREETING": "hi", "COUNT": 3},
            "workingDir": str(tmp_path),
        }
    )
    assert result.success
    assert result.message == f"command succeeded: hi 3 {tmp_path}"


def test_shell_list_items_may_be_numbers() -> None:
    result = _shell({"command": [sys.executable, "-c", "import sys; print(sys.argv[1])", 42]})
    assert result.message == "command succeeded: 42"


def test_shell_missing_executable_is_permanent() -> None:
    with pytest.raises(sdk.PermanentError, match=r"cannot start the command.*no-such-executable-here"):
        _shell({"command": ["no-such-executable-here"]})


def test_shell_missing_working_dir_is_permanent(tmp_path: Path) -> None:
    with pytest.raises(sdk.PermanentError, match="cannot start the command"):
        _shell({"command": ["true"], "workingDir": str(tmp_path / "absent")})


@pytest.mark.parametrize(
    ("parameters", "expected"),
    [
        ({}, "command: Field required"),
        ({"command": ""}, "command: the command string is empty"),
        ({"command": []}, "command: the command list is empty"),
        ({"command": {"run": "x"}}, "command: must be a string"),
        ({"command": "true", "timeoutSeconds": 0}, "timeoutSeconds: Input should be greater than 0"),
        ({"command": "true", "timeout": 5}, "timeout: unknown parameter"),
    ],
)
def test_shell_bad_parameters_are_permanent(parameters: dict[str, Any], expected: str) -> None:
    with pytest.raises(sdk.PermanentError, match="invalid parameters for the shell handler") as raised:
        _shell(parameters)
    assert expected in str(raised.value)


# --- http -----------------------------------------------------------------------------------------------


class Server:
    """A scripted HTTP server: each path answers with its list of (status, body), the last one repeating."""

    def __init__(self) -> None:
        self.script: dict[str, list[tuple[int, str]]] = {}
        self.locations: dict[str, str] = {}  # path -> Location header of its answer (redirects)
        self.delay_seconds = 0.0
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode("utf-8")
                with server._lock:
                    server.requests.append(
                        {
                            "method": self.command,
                            "path": self.path,
                            "body": body,
                            "headers": dict(self.headers),
                        }
                    )
                    answers = server.script.get(self.path, [(200, "ok")])
                    status, text = answers.pop(0) if len(answers) > 1 else answers[0]
                if server.delay_seconds:
                    time.sleep(server.delay_seconds)
                payload = text.encode("utf-8")
                # A client that timed out has hung up by now; that is the point of the delay, not an error.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.send_response(status)
                    if self.path in server.locations:
                        self.send_header("Location", server.locations[self.path])
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output clean

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        # A short poll interval: shutdown() waits for it, once per test.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    # A proxy from the environment would send 127.0.0.1 requests elsewhere.
    for variable in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(variable, raising=False)
    running = Server()
    yield running
    running.close()


def _http(parameters: dict[str, Any], *, fake_sleep: FakeSleep | None = None) -> sdk.TaskResult:
    handler = http_handler.HttpHandler(sleep=fake_sleep or FakeSleep())
    return handler.execute(_context(parameters, handler="http"))


def test_http_200_is_a_success(server: Server) -> None:
    server.script["/health"] = [(200, "all fine")]
    result = _http({"url": f"{server.url}/health"})
    assert result.success
    assert result.message == f"GET {server.url}/health -> 200"
    assert result.data == {"status": 200, "body": "all fine"}
    assert server.requests[0]["method"] == "GET"
    assert server.requests[0]["headers"]["User-Agent"].startswith("cronlet/")


def test_http_500_then_200_is_retried_within_the_attempt(server: Server) -> None:
    server.script["/flaky"] = [(500, "oops"), (200, "recovered")]
    waits = FakeSleep()
    result = _http({"url": f"{server.url}/flaky"}, fake_sleep=waits)
    assert result.success
    assert len(server.requests) == 2
    assert waits.calls == [0.5]


@pytest.mark.parametrize("status", [502, 503, 504])
def test_http_gateway_errors_are_retried_with_exponential_waits(server: Server, status: int) -> None:
    server.script["/down"] = [(status, "unavailable")]
    waits = FakeSleep()
    result = _http({"url": f"{server.url}/down", "retries": 3}, fake_sleep=waits)
    assert not result.success
    assert result.retryable
    assert result.message == f"GET {server.url}/down -> {status}, expected 2xx: unavailable"
    assert len(server.requests) == 4
    assert waits.calls == [0.5, 1.0, 2.0]


def test_http_404_is_a_permanent_failure_without_retries(server: Server) -> None:
    server.script["/gone"] = [(404, "no such page")]
    waits = FakeSleep()
    result = _http({"url": f"{server.url}/gone"}, fake_sleep=waits)
    assert not result.success
    assert not result.retryable
    assert result.message == f"GET {server.url}/gone -> 404, expected 2xx: no such page"
    assert len(server.requests) == 1
    assert waits.calls == []


@pytest.mark.parametrize("status", [408, 429])
def test_http_408_and_429_are_retryable_failures(server: Server, status: int) -> None:
    server.script["/busy"] = [(status, "")]
    result = _http({"url": f"{server.url}/busy"})
    assert not result.success
    assert result.retryable
    assert len(server.requests) == 1


def test_http_expected_status_overrides_2xx(server: Server) -> None:
    server.script["/deleted"] = [(404, "")]
    server.script["/ok"] = [(200, "")]
    assert _http({"url": f"{server.url}/deleted", "expectedStatus": [404, 410]}).success
    result = _http({"url": f"{server.url}/ok", "expectedStatus": [204]})
    assert not result.success
    assert result.retryable
    assert "expected 204" in result.message


def test_http_expected_5xx_is_not_retried(server: Server) -> None:
    server.script["/teapot-down"] = [(503, "")]
    result = _http({"url": f"{server.url}/teapot-down", "expectedStatus": [503]})
    assert result.success
    assert len(server.requests) == 1


def test_http_json_body_and_headers_are_sent(server: Server) -> None:
    result = _http(
        {
            "method": "post",
            "url": f"{server.url}/hook",
            "headers": {"Authorization": "Bearer t", "X-Count": 3},
            "body": {"event": "nightly", "rows": [1, 2]},
        }
    )
    assert result.success
    request = server.requests[0]
    assert request["method"] == "POST"
    assert json.loads(request["body"]) == {"event": "nightly", "rows": [1, 2]}
    assert request["headers"]["Content-Type"] == "application/json"
    assert request["headers"]["Authorization"] == "Bearer t"
    assert request["headers"]["X-Count"] == "3"


def test_http_string_body_is_sent_as_is(server: Server) -> None:
    _http(
        {
            "method": "PUT",
            "url": f"{server.url}/raw",
            "body": "a=1&b=2",
            "headers": {"content-type": "application/x-www-form-urlencoded"},
        }
    )
    request = server.requests[0]
    assert request["body"] == "a=1&b=2"
    assert request["headers"]["Content-Type"] == "application/x-www-form-urlencoded"


def test_http_connection_refused_is_retried_then_a_retryable_failure() -> None:
    # A port that was free a moment ago: nothing listens on it.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    waits = FakeSleep()
    result = _http({"url": f"http://127.0.0.1:{port}/", "retries": 2}, fake_sleep=waits)
    assert not result.success
    assert result.retryable
    assert result.message.startswith(
        f"GET http://127.0.0.1:{port}/ failed after 3 tries: ConnectionRefusedError"
    )
    assert waits.calls == [0.5, 1.0]


def test_http_timeout_is_retried_then_a_retryable_failure(server: Server) -> None:
    server.delay_seconds = 1.0
    result = _http({"url": f"{server.url}/slow", "timeoutSeconds": 0.1, "retries": 1})
    assert not result.success
    assert result.retryable
    assert "failed after 2 tries" in result.message
    assert "timed out" in result.message


@pytest.mark.parametrize(
    ("parameters", "expected"),
    [
        ({}, "url: Field required"),
        ({"url": "ftp://example.com/x"}, "url: must be an http:// or https:// URL"),
        ({"url": "http://user:secret@example.com/"}, "url: must not contain credentials"),
        ({"url": "http://example.com", "method": "GET /"}, "method: String should match pattern"),
        ({"url": "http://example.com", "expectedStatus": [99]}, "expectedStatus.0: Input should be greater"),
        ({"url": "http://example.com", "expectedStatus": []}, "expectedStatus: List should have at least 1"),
        ({"url": "http://example.com", "retries": -1}, "retries: Input should be greater than or equal to 0"),
        ({"url": "http://example.com", "timeout": 3}, "timeout: unknown parameter"),
    ],
)
def test_http_bad_parameters_are_permanent(parameters: dict[str, Any], expected: str) -> None:
    with pytest.raises(sdk.PermanentError, match="invalid parameters for the http handler") as raised:
        _http(parameters)
    assert expected in str(raised.value)


# --- fail -----------------------------------------------------------------------------------------------


def _fail(
    parameters: dict[str, Any], *, attempt: int = 1, fake_sleep: FakeSleep | None = None
) -> sdk.TaskResult:
    handler = fail.FailHandler(sleep=fake_sleep or FakeSleep())
    return handler.execute(_context(parameters, attempt=attempt, handler="fail"))


def test_fail_fails_retryably_by_default() -> None:
    assert _fail({}) == sdk.TaskResult.failure("failed on purpose", retryable=True)


def test_fail_can_fail_permanently_with_a_message() -> None:
    result = _fail({"message": "bad day", "retryable": False})
    assert result == sdk.TaskResult.failure("bad day", retryable=False)


@pytest.mark.parametrize(
    ("attempt", "succeeds"),
    [(1, False), (2, False), (3, True), (4, True)],
)
def test_fail_succeeds_from_the_given_attempt(attempt: int, succeeds: bool) -> None:
    result = _fail({"succeedOnAttempt": 3}, attempt=attempt)
    assert result.success is succeeds
    if not succeeds:
        assert result.retryable


def test_fail_waits_before_ending_the_attempt() -> None:
    waits = FakeSleep()
    _fail({"exitAfterSeconds": 2.5}, fake_sleep=waits)
    assert waits.calls == [2.5]


@pytest.mark.parametrize(
    ("parameters", "expected"),
    [
        ({"succeedOnAttempt": 0}, "succeedOnAttempt: Input should be greater than or equal to 1"),
        ({"exitAfterSeconds": -1}, "exitAfterSeconds: Input should be greater than or equal to 0"),
        ({"retryable": "perhaps"}, "retryable: Input should be a valid boolean"),
        ({"succeed_after": 2}, "succeed_after: unknown parameter"),
    ],
)
def test_fail_bad_parameters_are_permanent(parameters: dict[str, Any], expected: str) -> None:
    with pytest.raises(sdk.PermanentError, match="invalid parameters for the fail handler") as raised:
        _fail(parameters)
    assert expected in str(raised.value)


# --- sleep ----------------------------------------------------------------------------------------------


def test_sleep_waits_then_succeeds() -> None:
    waits = FakeSleep()
    result = sleep.SleepHandler(sleep=waits).execute(_context({"seconds": 2.5}, handler="sleep"))
    assert result == sdk.TaskResult.success("slept 2.5s")
    assert waits.calls == [2.5]


def test_sleep_really_sleeps_by_default() -> None:
    started = time.monotonic()
    assert sleep.SleepHandler().execute(_context({"seconds": 0.05}, handler="sleep")).success
    assert time.monotonic() - started >= 0.05


@pytest.mark.parametrize(
    ("parameters", "expected"),
    [
        ({}, "seconds: Field required"),
        ({"seconds": -1}, "seconds: Input should be greater than or equal to 0"),
        ({"seconds": "soon"}, "seconds: Input should be a valid number"),
    ],
)
def test_sleep_bad_parameters_are_permanent(parameters: dict[str, Any], expected: str) -> None:
    with pytest.raises(sdk.PermanentError) as raised:
        sleep.SleepHandler(sleep=FakeSleep()).execute(_context(parameters, handler="sleep"))
    assert expected in str(raised.value)


# --------------------------------------------------------------------------- http: secrets and redirects


def test_http_headers_from_the_environment_carry_credentials(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("API_TOKEN", "Bearer s3cret")
    result = _http({"url": f"{server.url}/x", "headersFrom": {"Authorization": "API_TOKEN"}})
    assert result.success
    assert server.requests[0]["headers"]["Authorization"] == "Bearer s3cret"
    assert "s3cret" not in result.message


def test_http_headers_from_a_missing_variable_is_permanent(server: Server) -> None:
    with pytest.raises(sdk.PermanentError, match="NO_SUCH_VARIABLE is not set"):
        _http({"url": f"{server.url}/x", "headersFrom": {"Authorization": "NO_SUCH_VARIABLE"}})
    assert server.requests == []


def test_http_redirects_are_not_followed_by_default_so_302_can_be_expected(server: Server) -> None:
    server.script["/old"] = [(302, "moved")]
    server.locations["/old"] = f"{server.url}/new"
    result = _http({"url": f"{server.url}/old", "method": "POST", "body": "x", "expectedStatus": [302]})
    assert result.success, result.message
    assert [r["path"] for r in server.requests] == ["/old"]  # not followed, and not turned into a GET


def test_http_followed_redirects_stay_on_the_host_with_credentials(server: Server) -> None:
    server.script["/old"] = [(302, "moved")]
    server.locations["/old"] = f"{server.url}/new"
    ok = _http(
        {"url": f"{server.url}/old", "followRedirects": True, "headers": {"Authorization": "Bearer t"}}
    )
    assert ok.success and [r["path"] for r in server.requests] == ["/old", "/new"]
    other = Server()
    try:
        server.locations["/old"] = f"{other.url}/steal"
        with pytest.raises(sdk.PermanentError, match="another host with credentials"):
            _http(
                {
                    "url": f"{server.url}/old",
                    "followRedirects": True,
                    "headers": {"Authorization": "Bearer t"},
                }
            )
        assert other.requests == []  # the token never reached the other host
    finally:
        other.close()


def test_http_never_follows_https_down_to_http() -> None:
    redirects = http_handler._Redirects(follow=True, credentials=False)
    request = http_handler.urllib.request.Request("https://example.invalid/a")
    with pytest.raises(http_handler._UnsafeRedirect, match="from https to http"):
        redirects.redirect_request(request, None, 302, "Found", {}, "http://example.invalid/b")


def test_http_messages_do_not_show_query_strings(server: Server) -> None:
    server.script["/hook"] = [(404, "nope")]
    result = _http({"url": f"{server.url}/hook?token=s3cret&x=1"})
    assert "s3cret" not in result.message and f"{server.url}/hook?…" in result.message


def test_shell_output_can_be_kept_out_of_the_result_message(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    result = _shell({"command": "echo the-secret-token; exit 3", "includeOutput": False})
    assert not result.success and "the-secret-token" not in result.message
    assert result.message == "command exited with status 3"
    assert "the-secret-token" in caplog.text  # still in the pod's log
