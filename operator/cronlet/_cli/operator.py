"""``cronlet`` command line: ``cronlet operator`` runs the operator; ``cronlet crd`` prints the CRD.

Every option also reads an environment variable ``CRONLET_<NAME>`` (the Helm chart sets those).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import re
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

from cronlet import sdk
from cronlet._common import logs

# Measured with tools/bench_scale.py (docs/operations.md, "Sizing"): see the commit that set them.
DEFAULT_QPS = 100.0
DEFAULT_BURST = 2000
_SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


def _env(name: str, default: str) -> str:
    return os.environ.get(f"CRONLET_{name}", default)


def _env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(f"CRONLET_{name}")
    return default if raw is None else raw.strip().lower() in ("1", "true", "yes", "on")


def _setup_logging(fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logs.formatter(fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    logging.getLogger("kopf").setLevel(logging.WARNING)  # kopf's per-event chatter is not ours to show
    logging.getLogger("kopf.activities.probe").setLevel(logging.WARNING)


def _duration(text: str | float) -> float:
    """A duration flag (15s, 500ms, 1m) in seconds."""
    if isinstance(text, float):
        return text
    from cronlet._core import schedule

    try:
        return schedule.parse_duration(text).total_seconds()
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


def _bad_namespaces(names: Sequence[str]) -> list[str]:
    """Watched namespaces are names, not patterns: kopf would drop a pattern without a word, and the operator
    would wait for ever for its listing."""
    return [n for n in names if not _NAMESPACE.fullmatch(n)]


def _non_negative(text: str) -> int:
    """A count flag: a whole number, 0 or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"want a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"want 0 or more, got {value}")
    return value


def _service_accounts(text: str) -> frozenset[str] | None:
    """``--allowed-service-accounts``: ``*`` (any, the default), or a comma list of ``name`` / ``ns/name``."""
    entries = [e.strip() for e in text.split(",") if e.strip()]
    if "*" in entries:
        return None
    for entry in entries:
        if entry.count("/") > 1 or not all(part for part in entry.split("/")) or " " in entry:
            raise argparse.ArgumentTypeError(f"{entry!r} is not a service account name or namespace/name")
    return frozenset(entries)


def _namespace_selector(text: str) -> dict[str, str] | None:
    """``--pod-template-namespace-selector``: ``key=value[,key=value]`` (all must match); empty: off."""
    selector: dict[str, str] = {}
    for pair in (p.strip() for p in text.split(",") if p.strip()):
        key, sep, value = pair.partition("=")
        if not sep or not key.strip() or "=" in value or "!" in key:
            raise argparse.ArgumentTypeError(
                f"{pair!r}: want key=value pairs separated by commas (labels the namespace must carry)"
            )
        selector[key.strip()] = value.strip()
    return selector or None


def _own_namespace() -> str:
    """The pod's namespace (its service account's), else ``default``."""
    try:
        return Path(_SERVICE_ACCOUNT_NAMESPACE).read_text().strip() or "default"
    except OSError:
        return "default"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cronlet", description="Cronlet: scheduled tasks, the Kubernetes way.")
    p.add_argument("--version", action="version", version=f"cronlet {sdk.__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    op = sub.add_parser("operator", help="run the operator (uses in-cluster config, else KUBECONFIG)")
    env_ns = [n for n in _env("NAMESPACE", "").split(",") if n]
    op.add_argument(
        "--namespace",
        action="append",
        default=None,
        metavar="NS",
        help="watch this namespace (repeatable; default: all). Env CRONLET_NAMESPACE=a,b",
    )
    op.add_argument(
        "--executor-image",
        default=_env("EXECUTOR_IMAGE", "cronlet:0.1.0"),
        help="image of executor containers when a task sets no spec.image",
    )
    op.add_argument(
        "--metrics-port",
        type=int,
        default=int(_env("METRICS_PORT", "8080")),
        help="port of /metrics, /healthz and /readyz (default 8080)",
    )
    op.add_argument("--log-format", choices=["text", "json"], default=_env("LOG_FORMAT", "text"))
    op.add_argument(
        "--per-task-metrics",
        action=argparse.BooleanOptionalAction,
        default=_env_bool("PER_TASK_METRICS", True),
        help="label metrics with namespace and task (turn off for very many tasks)",
    )
    op.add_argument(
        "--per-task-metrics-limit",
        type=_non_negative,
        default=_env("PER_TASK_METRICS_LIMIT", "1000"),
        metavar="N",
        help="tasks with series of their own (default 1000; 0: no limit); the others are summed under "
        'task="_other" of their namespace',
    )
    op.add_argument(
        "--workers",
        type=int,
        default=int(_env("WORKERS", "32")),
        help="tasks reconciled at once (default 32)",
    )
    op.add_argument(
        "--claim-ahead",
        type=_non_negative,
        default=_env("CLAIM_AHEAD", "60"),
        metavar="SECONDS",
        help="claim a task's next run up to this long before its due time, so that only the Job's create is "
        "left at that time; 0: claim at the due time (default 60; with event sinks always 0)",
    )
    tenancy = op.add_argument_group(
        "tenancy",
        "what a task's podTemplate may do (creating a ScheduledTask is creating pods): docs/operations.md",
    )
    tenancy.add_argument(
        "--allowed-service-accounts",
        type=_service_accounts,
        default=_env("ALLOWED_SERVICE_ACCOUNTS", "*"),
        metavar="LIST",
        help="service accounts a podTemplate may name: a comma list of NAME (any namespace) or NAMESPACE/NAME; "
        "'' allows none, '*' any (default *). Env CRONLET_ALLOWED_SERVICE_ACCOUNTS",
    )
    tenancy.add_argument(
        "--pod-template-namespace-selector",
        type=_namespace_selector,
        default=_env("POD_TEMPLATE_NAMESPACE_SELECTOR", ""),
        metavar="KEY=VALUE,...",
        help="allow podTemplate only in namespaces with all these labels, e.g. cronlet.dev/allow-pod-template=true "
        "(default: in every namespace). Watches namespaces. Env CRONLET_POD_TEMPLATE_NAMESPACE_SELECTOR",
    )
    limits = op.add_argument_group(
        "client-side rate limit",
        "kube-controller-manager's flags: a token bucket every API request takes from; when it is short, "
        "launches (claims and Job creates) go before status writes of finished runs and Events",
    )
    limits.add_argument(
        "--kube-api-qps",
        type=float,
        default=float(_env("KUBE_API_QPS", str(DEFAULT_QPS))),
        metavar="QPS",
        help=f"requests per second, sustained; 0 turns the limit off (default {DEFAULT_QPS:g}). "
        "Env CRONLET_KUBE_API_QPS",
    )
    limits.add_argument(
        "--kube-api-burst",
        type=int,
        default=int(_env("KUBE_API_BURST", str(DEFAULT_BURST))),
        metavar="N",
        help=f"requests at once above the sustained rate (default {DEFAULT_BURST}). Env CRONLET_KUBE_API_BURST",
    )
    election = op.add_argument_group(
        "leader election",
        "kube-controller-manager's flags: one replica acts, the others wait as warm standbys",
    )
    election.add_argument(
        "--leader-elect",
        action=argparse.BooleanOptionalAction,
        default=_env_bool("LEADER_ELECT", True),
        help="elect a leader on a Lease before acting (default on; --no-leader-elect for one replica only)",
    )
    for flag, env, default, what in (
        (
            "lease-duration",
            "LEASE_DURATION",
            "15s",
            "how long a standby waits, after the leader's last renew it saw, before it takes over",
        ),
        (
            "renew-deadline",
            "RENEW_DEADLINE",
            "10s",
            "the leader stops acting when it could not renew for this long",
        ),
        ("retry-period", "RETRY_PERIOD", "2s", "how often to try to acquire or renew"),
    ):
        election.add_argument(
            f"--leader-elect-{flag}",
            type=_duration,
            default=_env(f"LEADER_ELECT_{env}", default),
            metavar="DURATION",
            help=f"{what} (default {default})",
        )
    election.add_argument(
        "--leader-elect-resource-name",
        default=_env("LEADER_ELECT_RESOURCE_NAME", "cronlet"),
        help="name of the Lease (default cronlet)",
    )
    election.add_argument(
        "--leader-elect-resource-namespace",
        default=_env("LEADER_ELECT_RESOURCE_NAMESPACE", ""),
        help="namespace of the Lease (default: the pod's own namespace, else default)",
    )
    election.add_argument(
        "--leader-elect-identity",
        default=_env("LEADER_ELECT_IDENTITY", ""),
        help="this replica's name in the Lease (default: the host name, which is the pod's name)",
    )
    ev = op.add_argument_group(
        "task events",
        "CloudEvents for every run transition, at least once, in order per task, to Kafka and/or HTTP (no sink: "
        "no events are recorded). Credentials only from the environment: CRONLET_EVENTS_KAFKA_SASL_USERNAME, "
        "CRONLET_EVENTS_KAFKA_SASL_PASSWORD, CRONLET_EVENTS_HTTP_HEADERS ('Name: value' lines)",
    )
    ev.add_argument(
        "--events-kafka-bootstrap-servers",
        default=_env("EVENTS_KAFKA_BOOTSTRAP_SERVERS", ""),
        metavar="HOST:PORT,...",
        help="publish to Kafka through these brokers (needs the cronlet[kafka] extra, which the image has)",
    )
    ev.add_argument(
        "--events-kafka-topic",
        default=_env("EVENTS_KAFKA_TOPIC", "task-events"),
        help="(default task-events)",
    )
    ev.add_argument(
        "--events-kafka-content-mode",
        choices=["binary", "structured"],
        default=_env("EVENTS_KAFKA_CONTENT_MODE", "binary"),
        help="binary: data as the value, attributes as ce_* headers (default); structured: one JSON document",
    )
    ev.add_argument(
        "--events-kafka-security-protocol",
        choices=["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"],
        default=_env("EVENTS_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT"),
    )
    ev.add_argument(
        "--events-kafka-sasl-mechanism",
        choices=["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"],
        default=_env("EVENTS_KAFKA_SASL_MECHANISM", "") or None,
    )
    for name in ("cafile", "certfile", "keyfile"):
        ev.add_argument(
            f"--events-kafka-ssl-{name}",
            default=_env(f"EVENTS_KAFKA_SSL_{name.upper()}", ""),
            metavar="PATH",
            help=f"TLS {name} (a mounted Secret)",
        )
    ev.add_argument(
        "--events-http-url", default=_env("EVENTS_HTTP_URL", ""), help="POST each event to this URL"
    )
    ev.add_argument(
        "--events-http-content-mode",
        choices=["binary", "structured"],
        default=_env("EVENTS_HTTP_CONTENT_MODE", "binary"),
        help="binary: ce-* headers and the data as the body (default); structured: application/cloudevents+json",
    )
    ev.add_argument(
        "--events-http-headers-file",
        default=_env("EVENTS_HTTP_HEADERS_FILE", ""),
        metavar="PATH",
        help="extra headers ('Name: value' lines, e.g. Authorization) from a mounted Secret, re-read on change",
    )
    ev.add_argument(
        "--events-outbox-max-entries",
        type=int,
        default=int(_env("EVENTS_OUTBOX_MAX_ENTRIES", "100")),
        help="unacknowledged events kept per task, the oldest dropped (and counted) beyond (default 100)",
    )
    ev.add_argument(
        "--events-outbox-max-bytes",
        type=int,
        default=int(_env("EVENTS_OUTBOX_MAX_BYTES", "32768")),
        help="the same cap in bytes of the task's status (default 32768)",
    )
    op.set_defaults(env_namespaces=env_ns)
    sub.add_parser("crd", help="print the ScheduledTask CRD")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if args.command == "operator" and (bad := _bad_namespaces(args.namespace or args.env_namespaces)):
        p.error(f"--namespace / CRONLET_NAMESPACE: not namespace names (patterns are not supported): {bad}")
    if args.command == "crd":
        from cronlet._core import crd

        sys.stdout.write(crd.render())
        return 0
    from cronlet._controller import election, runtime, sinks
    from cronlet._core.views import Tenancy

    _setup_logging(args.log_format)
    opts = runtime.Options(
        namespaces=args.namespace or args.env_namespaces,
        executor_image=args.executor_image,
        metrics_port=args.metrics_port,
        log_format=args.log_format,
        per_task_metrics=args.per_task_metrics,
        per_task_metrics_limit=args.per_task_metrics_limit,
        workers=args.workers,
        claim_ahead=args.claim_ahead,
        leader_elect=args.leader_elect,
        tenancy=Tenancy(
            allowed_service_accounts=args.allowed_service_accounts,
            pod_template_selector=args.pod_template_namespace_selector,
        ),
        events=runtime.EventOptions(
            kafka_bootstrap_servers=args.events_kafka_bootstrap_servers,
            kafka_topic=args.events_kafka_topic,
            kafka_mode=args.events_kafka_content_mode,
            kafka_security_protocol=args.events_kafka_security_protocol,
            kafka_sasl_mechanism=args.events_kafka_sasl_mechanism or "",
            kafka_sasl_username=_env("EVENTS_KAFKA_SASL_USERNAME", ""),
            kafka_sasl_password=_env("EVENTS_KAFKA_SASL_PASSWORD", ""),
            kafka_ssl_cafile=args.events_kafka_ssl_cafile,
            kafka_ssl_certfile=args.events_kafka_ssl_certfile,
            kafka_ssl_keyfile=args.events_kafka_ssl_keyfile,
            http_url=args.events_http_url,
            http_mode=args.events_http_content_mode,
            http_headers_file=args.events_http_headers_file,
            http_headers=_env("EVENTS_HTTP_HEADERS", ""),
            outbox_max_entries=args.events_outbox_max_entries,
            outbox_max_bytes=args.events_outbox_max_bytes,
        ),
        kube_api_qps=args.kube_api_qps,
        kube_api_burst=args.kube_api_burst,
        election=election.Settings(
            name=args.leader_elect_resource_name,
            namespace=args.leader_elect_resource_namespace or _own_namespace(),
            identity=args.leader_elect_identity or socket.gethostname(),
            lease_duration=_duration(args.leader_elect_lease_duration),
            renew_deadline=_duration(args.leader_elect_renew_deadline),
            retry_period=_duration(args.leader_elect_retry_period),
        ),
    )
    if opts.kube_api_qps > 0 and opts.kube_api_burst < 1:
        print("cronlet: --kube-api-burst must be at least 1 when --kube-api-qps is set", file=sys.stderr)
        return 2
    if not opts.election.retry_period < opts.election.renew_deadline < opts.election.lease_duration:
        print(
            "cronlet: want --leader-elect-retry-period < --leader-elect-renew-deadline < "
            "--leader-elect-lease-duration",
            file=sys.stderr,
        )
        return 2
    try:
        event_sinks = opts.events.sinks()
    except sinks.SinkConfigError as exc:
        print(f"cronlet: task events: {exc}", file=sys.stderr)
        return 2
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # a broker down is ours to report, once per send
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(runtime.run(opts, event_sinks))
    return 0


if __name__ == "__main__":
    sys.exit(main())
