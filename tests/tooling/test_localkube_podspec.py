"""The fake kubelet's pure decisions (localkube.podspec), as tables of named cases: no cluster, no I/O."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from localkube import podspec

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def pod(*, containers: list[dict[str, Any]] | None = None, **meta: Any) -> dict[str, Any]:
    metadata = {"name": "p", "namespace": "ns", "uid": "u-1", **meta}
    return {
        "metadata": metadata,
        "spec": {"containers": containers or [{"name": "main", "image": "img"}], "nodeName": "fake-node-0"},
    }


STORE: dict[tuple[str, str, str], Mapping[str, str]] = {
    ("ConfigMap", "ns", "settings"): {"mode": "fast", "level": "3"},
    ("Secret", "ns", "creds"): {"token": base64.b64encode(b"s3cret").decode()},
}


def lookup(kind: str, namespace: str, name: str) -> Mapping[str, str] | None:
    return STORE.get((kind, namespace, name))


# -- $(VAR) expansion --------------------------------------------------------------------------------------

EXPANSIONS = [
    ("defined variable", "run $(A)", "run 1"),
    ("unknown reference stays", "run $(B)", "run $(B)"),
    ("escaped reference", "run $$(A)", "run $(A)"),
    ("double dollar becomes one", "echo $$ > pid", "echo $ > pid"),
    ("four dollars become two", "echo $$$$", "echo $$"),
    ("plain shell variable untouched", "echo $HOME", "echo $HOME"),
]


@pytest.mark.parametrize(("name", "text", "expected"), EXPANSIONS, ids=[c[0] for c in EXPANSIONS])
def test_expand(name: str, text: str, expected: str) -> None:
    assert podspec.expand(text, {"A": "1"}) == expected


# -- environment -------------------------------------------------------------------------------------------


def test_env_resolves_values_field_refs_config_maps_and_secrets() -> None:
    container = {
        "name": "main",
        "env": [
            {"name": "PLAIN", "value": "x"},
            {"name": "DERIVED", "value": "$(PLAIN)-y"},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "TEAM", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['team']"}}},
            {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}},
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
            {
                "name": "ABSENT",
                "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k", "optional": True}},
            },
        ],
        "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "CFG_"}],
    }

    env = podspec.container_env(pod(labels={"team": "a"}), container, lookup=lookup)

    assert env == {
        "HOSTNAME": "p",
        "CFG_mode": "fast",
        "CFG_level": "3",
        "PLAIN": "x",
        "DERIVED": "x-y",
        "POD": "p",
        "NS": "ns",
        "TEAM": "a",
        "MODE": "fast",
        "TOKEN": "s3cret",
    }


MISSING_SOURCES = [
    ("missing config map key", {"configMapKeyRef": {"name": "settings", "key": "nope"}}),
    ("missing secret", {"secretKeyRef": {"name": "nope", "key": "k"}}),
    ("unsupported field", {"fieldRef": {"fieldPath": "status.phase"}}),
    ("resource field ref", {"resourceFieldRef": {"resource": "limits.cpu"}}),
]


@pytest.mark.parametrize(("name", "source"), MISSING_SOURCES, ids=[c[0] for c in MISSING_SOURCES])
def test_env_that_cannot_be_resolved_fails_the_pod(name: str, source: dict[str, Any]) -> None:
    container = {"name": "main", "env": [{"name": "V", "valueFrom": source}]}
    with pytest.raises(podspec.UnsupportedPod) as raised:
        podspec.container_env(pod(), container, lookup=lookup)
    assert raised.value.reason == "CreateContainerConfigError"


def test_plan_keeps_the_kubelet_environment_under_the_pods() -> None:
    container = {
        "name": "main",
        "image": "img",
        "command": ["cronlet-execute", "--pod", "$(POD_NAME)"],
        "args": ["--home", "$(HOME)"],
        "env": [
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "HOME", "value": "/pod-home"},
        ],
    }
    base = {"PATH": "/venv/bin:/usr/bin", "HOME": "/root"}

    plan = podspec.plan_container(pod(), container, base_env=base, lookup=lookup, with_command=True)

    assert plan.env["PATH"] == "/venv/bin:/usr/bin"  # local console scripts still resolve
    assert plan.env["HOME"] == "/pod-home"  # the pod's value wins
    assert plan.argv == ("cronlet-execute", "--pod", "p", "--home", "/pod-home")
    assert plan.termination_path == "/dev/termination-log"
    assert plan.fallback_to_logs is False


def test_plan_without_command_is_refused_in_execute_mode_only() -> None:
    container = {"name": "main", "image": "img", "terminationMessagePath": "/tmp/msg"}
    with pytest.raises(podspec.UnsupportedPod, match="no command"):
        podspec.plan_container(pod(), container, base_env={}, lookup=lookup, with_command=True)
    plan = podspec.plan_container(pod(), container, base_env={}, lookup=lookup, with_command=False)
    assert (plan.argv, plan.termination_path) == ((), "/tmp/msg")


def test_init_containers_are_refused_rather_than_skipped() -> None:
    unsupported = pod()
    unsupported["spec"]["initContainers"] = [{"name": "init", "image": "img"}]
    with pytest.raises(podspec.UnsupportedPod, match="initContainers"):
        podspec.check_supported(unsupported)


# -- simulate mode -----------------------------------------------------------------------------------------

OUTCOMES = [
    ("no labels succeed at once", {}, 0, 0.0),
    ("succeed", {podspec.OUTCOME_LABEL: "succeed"}, 0, 0.0),
    ("fail exits 1", {podspec.OUTCOME_LABEL: "fail"}, 1, 0.0),
    ("fail-permanent exits 2", {podspec.OUTCOME_LABEL: "fail-permanent"}, 2, 0.0),
    ("duration in ms", {podspec.DURATION_LABEL: "1500"}, 0, 1.5),
]


@pytest.mark.parametrize(("name", "labels", "exit_code", "seconds"), OUTCOMES, ids=[c[0] for c in OUTCOMES])
def test_simulated_outcome(name: str, labels: dict[str, str], exit_code: int, seconds: float) -> None:
    outcome = podspec.simulated(pod(labels=labels))
    assert (outcome.exit_code, outcome.duration_seconds) == (exit_code, seconds)


@pytest.mark.parametrize(
    "labels",
    [{podspec.OUTCOME_LABEL: "explode"}, {podspec.DURATION_LABEL: "soon"}, {podspec.DURATION_LABEL: "-1"}],
    ids=["unknown outcome", "non-numeric duration", "negative duration"],
)
def test_bad_simulation_labels_are_refused(labels: dict[str, str]) -> None:
    with pytest.raises(podspec.UnsupportedPod):
        podspec.simulated(pod(labels=labels))


def test_simulated_message_comes_from_the_annotation() -> None:
    annotated = pod(annotations={podspec.MESSAGE_ANNOTATION: "done: 3 items"})
    assert podspec.simulated(annotated).message == "done: 3 items"


# -- restarts, exit codes, messages ------------------------------------------------------------------------

RESTARTS = [
    ("Never, success", "Never", 0, False),
    ("Never, failure", "Never", 1, False),
    ("OnFailure, success", "OnFailure", 0, False),
    ("OnFailure, failure", "OnFailure", 1, True),
    ("Always, success", "Always", 0, True),
    ("Always, failure", "Always", 2, True),
]


@pytest.mark.parametrize(("name", "policy", "exit_code", "restart"), RESTARTS, ids=[c[0] for c in RESTARTS])
def test_should_restart(name: str, policy: str, exit_code: int, restart: bool) -> None:
    assert podspec.should_restart(policy, exit_code) is restart


@pytest.mark.parametrize(("returncode", "exit_code"), [(0, 0), (3, 3), (-15, 143), (-9, 137)])
def test_signal_deaths_read_as_128_plus_signal(returncode: int, exit_code: int) -> None:
    assert podspec.exit_code_of(returncode) == exit_code


def test_messages_are_capped_like_the_real_kubelet() -> None:
    assert podspec.termination_message(b"x" * 5000) == "x" * 4096
    log = b"".join(f"line {i}\n".encode() for i in range(200))
    fallback = podspec.fallback_message(log)
    assert fallback.endswith("line 199\n")
    assert "line 119\n" not in fallback  # only the last 80 lines
    assert len(podspec.fallback_message(b"y" * 5000)) == 2048


# -- status documents --------------------------------------------------------------------------------------


def termination(exit_code: int, message: str = "") -> podspec.Termination:
    return podspec.Termination(
        exit_code=exit_code, message=message, started_at=T0, finished_at=T0 + timedelta(seconds=1)
    )


def test_terminal_status_succeeds_only_when_every_container_exited_0() -> None:
    two = pod(containers=[{"name": "a", "image": "i"}, {"name": "b", "image": "i"}])
    once = podspec.ContainerOutcome
    flaky = once(termination=termination(0), restarts=2, previous=termination(1, "first try"))

    ok = podspec.terminal_status(two, {"a": once(termination=termination(0, "fine"), restarts=0), "b": flaky})
    failed = podspec.terminal_status(
        two,
        {
            "a": once(termination=termination(0), restarts=0),
            "b": once(termination=termination(1), restarts=0),
        },
    )

    assert ok["status"]["phase"] == "Succeeded"
    assert failed["status"]["phase"] == "Failed"
    a, b = ok["status"]["containerStatuses"]  # both: a patch replaces the whole list
    assert a["state"]["terminated"] == {
        "exitCode": 0,
        "reason": "Completed",
        "message": "fine",
        "startedAt": "2026-01-01T00:00:00Z",
        "finishedAt": "2026-01-01T00:00:01Z",
    }
    assert "lastState" not in a
    assert "message" not in b["state"]["terminated"]  # the real kubelet omits an empty message
    assert (b["restartCount"], b["lastState"]["terminated"]["message"]) == (2, "first try")
    assert failed["status"]["containerStatuses"][1]["state"]["terminated"]["reason"] == "Error"


def test_node_is_ready_untainted_and_roomy() -> None:
    node = podspec.node_manifest("fake-node-0", now=T0, kubelet_version="v1.37.2")
    assert node["spec"] == {}
    assert node["status"]["allocatable"] == {
        "cpu": "32",
        "memory": "256Gi",
        "pods": "250",
        "ephemeral-storage": "1Ti",
    }
    [ready] = node["status"]["conditions"]
    assert (ready["type"], ready["status"]) == ("Ready", "True")


def test_delete_options_delete_at_once_and_only_this_pod() -> None:
    assert podspec.delete_options(pod()) == {
        "apiVersion": "v1",
        "kind": "DeleteOptions",
        "gracePeriodSeconds": 0,
        "preconditions": {"uid": "u-1"},
    }
