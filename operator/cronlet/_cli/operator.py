"""``cronlet`` command line: ``cronlet operator`` runs the operator; ``cronlet crd`` prints the CRD.

Every option also reads an environment variable ``CRONLET_<NAME>`` (the Helm chart sets those).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Sequence

from cronlet import sdk
from cronlet._common import logs


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
    op.set_defaults(env_namespaces=env_ns)
    sub.add_parser("crd", help="print the ScheduledTask CRD")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "crd":
        from cronlet._core import crd

        sys.stdout.write(crd.render())
        return 0
    from cronlet._controller import runtime

    _setup_logging(args.log_format)
    opts = runtime.Options(
        namespaces=args.namespace or args.env_namespaces,
        executor_image=args.executor_image,
        metrics_port=args.metrics_port,
        log_format=args.log_format,
        per_task_metrics=args.per_task_metrics,
        workers=args.workers,
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(runtime.run(opts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
