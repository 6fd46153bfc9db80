"""The fake kubelet's API writes: a status the API server did not take is sent again, as the kubelet's does.

Found by CI: etcd frozen for 25 s timed out one pod's terminal status patch; the pod stayed Running, its Job
never finished, and the task (concurrencyPolicy Forbid) skipped every later run.
"""

from __future__ import annotations

import http.client

import pytest

from localkube import rest
from localkube.kubelet import transient, until_answered


class _Flaky:
    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> object:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return {}


def _no_wait(seconds: float) -> bool:
    return False


def test_timeouts_resets_and_server_errors_are_sent_again_until_taken() -> None:
    call = _Flaky(
        TimeoutError("timed out"),
        ConnectionResetError(),
        http.client.RemoteDisconnected("closed"),
        rest.ApiError(status=500, reason="InternalError", message="etcdserver: request timed out"),
        rest.ApiError(status=429, reason="TooManyRequests", message="slow down"),
    )
    delays: list[float] = []

    def wait(seconds: float) -> bool:
        delays.append(seconds)
        return False

    until_answered(call, given_up=lambda: False, wait=wait, what="test", max_delay=1.0)
    assert call.calls == 6
    assert delays == [0.2, 0.4, 0.8, 1.0, 1.0]


@pytest.mark.parametrize("status", [400, 404, 409, 422])
def test_a_refusal_is_not_sent_again(status: int) -> None:
    call = _Flaky(rest.ApiError(status=status, reason="No", message="no"))
    with pytest.raises(rest.ApiError):
        until_answered(call, given_up=lambda: False, wait=_no_wait, what="test")
    assert call.calls == 1
    assert not transient(rest.ApiError(status=status, reason="No", message="no"))


def test_sending_stops_quietly_once_the_pod_or_the_kubelet_is_gone() -> None:
    call = _Flaky(*[TimeoutError()] * 10)
    gone = iter([False, False, True])
    until_answered(call, given_up=lambda: next(gone), wait=_no_wait, what="test")
    assert call.calls == 2


def test_a_stopping_kubelet_ends_the_wait_between_tries() -> None:
    call = _Flaky(*[TimeoutError()] * 10)
    until_answered(call, given_up=lambda: False, wait=lambda seconds: True, what="test")
    assert call.calls == 1
