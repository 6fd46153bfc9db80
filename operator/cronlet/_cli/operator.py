"""``cronlet`` command line: ``cronlet operator`` runs the operator; ``cronlet crd`` prints the CRD.

Every option also reads an environment variable ``CRONLET_<NAME>`` (the Helm chart sets those).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
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
        "--workers", type=int, default=int(_env("WORKERS", "8")), help="tasks reconciled at once (default 8)"
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
    op.set_defaults(env_namespaces=env_ns)
    sub.add_parser("crd", help="print the ScheduledTask CRD")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "crd":
        from cronlet._core import crd

        sys.stdout.write(crd.render())
        return 0
    from cronlet._controller import election, runtime

    _setup_logging(args.log_format)
    opts = runtime.Options(
        namespaces=args.namespace or args.env_namespaces,
        executor_image=args.executor_image,
        metrics_port=args.metrics_port,
        log_format=args.log_format,
        per_task_metrics=args.per_task_metrics,
        workers=args.workers,
        leader_elect=args.leader_elect,
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
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(runtime.run(opts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
