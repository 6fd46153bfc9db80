"""``cronlet operator``'s flags (tenancy, claiming ahead), and the CRONLET_* variables the chart sets for them."""

from __future__ import annotations

import pytest

from cronlet._cli import operator


def parse(*args: str) -> tuple[object, object]:
    ns = operator.parser().parse_args(["operator", *args])
    return ns.allowed_service_accounts, ns.pod_template_namespace_selector


def test_by_default_any_service_account_and_pod_template_anywhere() -> None:
    assert parse() == (None, None)


def test_the_flags_read_lists_and_label_pairs() -> None:
    accounts, selector = parse(
        "--allowed-service-accounts", "reporter, team-a/etl",
        "--pod-template-namespace-selector", "cronlet.dev/allow-pod-template=true,tier=trusted",
    )  # fmt: skip
    assert accounts == frozenset({"reporter", "team-a/etl"})
    assert selector == {"cronlet.dev/allow-pod-template": "true", "tier": "trusted"}
    assert parse("--allowed-service-accounts", "")[0] == frozenset()  # none allowed
    assert parse("--allowed-service-accounts", "reporter,*")[0] is None


def test_the_environment_sets_them_as_the_chart_does(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRONLET_ALLOWED_SERVICE_ACCOUNTS", "reporter")
    monkeypatch.setenv("CRONLET_POD_TEMPLATE_NAMESPACE_SELECTOR", "cronlet.dev/allow-pod-template=true")
    assert parse() == (frozenset({"reporter"}), {"cronlet.dev/allow-pod-template": "true"})


@pytest.mark.parametrize(
    "args",
    [
        ["--allowed-service-accounts", "a/b/c"],
        ["--allowed-service-accounts", "/etl"],
        ["--pod-template-namespace-selector", "tier"],
        ["--pod-template-namespace-selector", "tier!=x"],
    ],
)
def test_malformed_values_are_refused_at_start(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        parse(*args)
    assert exit_.value.code == 2 and args[1] in capsys.readouterr().err


@pytest.mark.parametrize("env,args", [("", ["--namespace", "team-*"]), ("team-a,!kube-system", [])])
def test_namespace_patterns_are_refused_at_start(
    env: str, args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # kopf drops a pattern from what it watches without a word, and the operator would never be ready.
    monkeypatch.setenv("CRONLET_NAMESPACE", env)
    with pytest.raises(SystemExit) as exit_:
        operator.main(["operator", *args])
    assert exit_.value.code == 2 and "patterns are not supported" in capsys.readouterr().err


def test_namespace_names_are_taken() -> None:
    assert operator._bad_namespaces(["team-a", "b1", "x" * 63]) == []
    assert operator._bad_namespaces(["Team", "-a", "x" * 64, "a.b"]) == ["Team", "-a", "x" * 64, "a.b"]


def test_claim_ahead_is_60_seconds_by_default_and_0_turns_it_off(monkeypatch: pytest.MonkeyPatch) -> None:
    def lead(*args: str) -> object:
        return operator.parser().parse_args(["operator", *args]).claim_ahead

    assert lead() == 60
    assert lead("--claim-ahead", "0") == 0
    monkeypatch.setenv("CRONLET_CLAIM_AHEAD", "5")
    assert lead() == 5
    with pytest.raises(SystemExit):
        lead("--claim-ahead", "-1")
