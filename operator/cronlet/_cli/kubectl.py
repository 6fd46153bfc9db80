"""``kubectl cronlet``: run, suspend, resume, inspect and validate ScheduledTasks from the command line.

Installed as the console script ``kubectl-cronlet``, so ``kubectl cronlet ...`` finds it on PATH; also
runnable as ``python -m cronlet._cli.kubectl``.

Commands that touch the cluster (``run``, ``suspend``, ``resume``, ``history``, ``next NAME``) make one
read or one merge patch each. ``next --schedule`` and ``validate`` are offline: they never load a
kubeconfig, and they use the operator's own rules (``_core.schedule``, ``_core.validation``) so that what
the plugin accepts is what the operator accepts.

This module must not write ``status`` (that is the operator's alone); ``run`` writes an annotation and
``suspend``/``resume`` write ``spec.suspend``, as a user editing the object would.

Exit codes: 0 success, 1 the API failed or the task does not exist, 2 a usage or validation error.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import urllib3.exceptions
import yaml

from cronlet._common import handlerref, times
from cronlet._core import manifests, model, schedule, validation

EXIT_OK = 0
EXIT_API = 1
EXIT_USAGE = 2

REQUEST_TIMEOUT = 30  # seconds per API request: a CLI should fail, not hang
MESSAGE_WIDTH = 60  # characters of a history message shown in the table
_MAX_COUNT = 1000
_SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class CommandError(Exception):
    """A failure to report on stderr with an exit code (EXIT_API or EXIT_USAGE)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# --------------------------------------------------------------------------- pure helpers


def parse_instant(text: str) -> datetime:
    """An RFC 3339 instant with an explicit offset (``Z`` or ``+02:00``), as UTC."""
    return times.parse(text)


def task_schedule(body: Mapping[str, Any]) -> schedule.Schedule:
    """The schedule of a ScheduledTask as read from the cluster, compiled exactly as the operator does.

    Raises InvalidSpec for a task the operator could not run either.
    """
    _, sched = validation.compile_task(manifests.task_view(body, known_handlers=None))
    return sched


def next_start(body: Mapping[str, Any], now: datetime) -> datetime:
    """Where the next due times of a task are counted from: now, or status.lastDueTime if that is later.

    The operator never runs a due time at or before lastDueTime again, so those are not "next".
    """
    last_due = (body.get("status") or {}).get("lastDueTime")
    if last_due:
        with contextlib.suppress(ValueError):
            return max(now, parse_instant(str(last_due)))
    return now


def format_elapsed(delta: timedelta) -> str:
    secs = delta.total_seconds()
    if secs < 0:
        return "-"
    if secs < 10 and secs != int(secs):
        return f"{secs:.1f}s"
    return schedule.format_duration(timedelta(seconds=round(secs)))


def clip(text: str, width: int) -> str:
    one_line = " ".join(text.split())
    if len(one_line) <= width:
        return one_line
    return one_line[: max(width - 3, 0)] + "..."


HISTORY_COLUMNS = ("SCHEDULED", "OUTCOME", "ATTEMPTS", "DURATION", "JOB", "MESSAGE")


def history_rows(
    history: Sequence[Mapping[str, Any]], *, message_width: int = MESSAGE_WIDTH
) -> list[list[str]]:
    """One table row per ``status.history`` entry (newest first, as stored)."""
    rows = []
    for entry in history:
        duration = "-"
        start, end = entry.get("startTime"), entry.get("completionTime")
        if start and end:
            with contextlib.suppress(ValueError):
                duration = format_elapsed(parse_instant(str(end)) - parse_instant(str(start)))
        rows.append(
            [
                str(entry.get("scheduledTime") or "-"),
                str(entry.get("outcome") or "-"),
                str(entry.get("attempts", 0)),
                duration,
                str(entry.get("jobName") or "-"),
                clip(str(entry.get("message") or ""), message_width),
            ]
        )
    return rows


def render_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns separated by three spaces, like ``kubectl get``; the last column is not padded."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])] + [row[-1]]
        lines.append("   ".join(cells).rstrip())
    return "\n".join(lines) + "\n"


def known_handlers() -> frozenset[str]:
    """Handler short names registered in this Python environment (the operator checks its own the same way)."""
    return frozenset(handlerref.registered())


# --------------------------------------------------------------------------- validate (offline)


def _read_documents(source: str) -> list[object]:
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except OSError as exc:
        raise CommandError(EXIT_USAGE, f"cannot read {source}: {exc.strerror or exc}") from exc
    try:
        docs = list(yaml.safe_load_all(io.StringIO(text)))
    except yaml.YAMLError as exc:
        raise CommandError(EXIT_USAGE, f"{source}: invalid YAML: {exc}") from exc
    out: list[object] = []
    for doc in docs:
        # `kubectl get -o yaml` writes a List; check its items as documents.
        if (
            isinstance(doc, Mapping)
            and str(doc.get("kind", "")).endswith("List")
            and isinstance(doc.get("items"), list)
        ):
            out.extend(doc["items"])
        else:
            out.append(doc)
    return out


# --------------------------------------------------------------------------- cluster access


@dataclass(frozen=True)
class Target:
    api: Any  # kubernetes.client.ApiClient
    namespace: str


def _context_namespace(config_file: str, context: str | None) -> str | None:
    from kubernetes import config

    contexts, active = config.list_kube_config_contexts(config_file=config_file)
    chosen = next((c for c in contexts if c.get("name") == context), None) if context else active
    ns = ((chosen or {}).get("context") or {}).get("namespace")
    return str(ns) if ns else None


def connect(*, kubeconfig: str | None, context: str | None, namespace: str | None) -> Target:
    """An API client from the kubeconfig (``--kubeconfig``, else $KUBECONFIG, else ~/.kube/config), else
    the in-cluster service account; and the namespace: ``-n``, else the context's, else ``default``."""
    from kubernetes import client, config

    config_file = kubeconfig or os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
    try:
        cfg = client.Configuration()
        # persist_config=False: refreshing a token must not rewrite the user's kubeconfig.
        config.load_kube_config(
            config_file=config_file, context=context, client_configuration=cfg, persist_config=False
        )
        return Target(
            client.ApiClient(cfg), namespace or _context_namespace(config_file, context) or "default"
        )
    except config.ConfigException as exc:
        kube_error = exc
    if not kubeconfig and not context:
        try:
            cfg = client.Configuration()
            config.load_incluster_config(client_configuration=cfg)
        except config.ConfigException:
            pass
        else:
            in_cluster_ns = namespace
            if in_cluster_ns is None:
                with contextlib.suppress(OSError):
                    in_cluster_ns = _SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
            return Target(client.ApiClient(cfg), in_cluster_ns or "default")
    raise CommandError(EXIT_API, f"cannot load Kubernetes configuration from {config_file}: {kube_error}")


def _call(target: Target, name: str, fn: Callable[[Any], Any]) -> dict[str, Any]:
    """Run one request against the ScheduledTask ``name``; turn API failures into CommandError(EXIT_API)."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    from cronlet._controller import kube

    custom = client.CustomObjectsApi(target.api)
    try:
        return dict(fn(custom))
    except ApiException as exc:
        if exc.status == 404:
            details: Mapping[str, Any] = {}
            with contextlib.suppress(TypeError, ValueError, AttributeError):
                details = json.loads(exc.body).get("details") or {}
            if details.get("name") == name:
                raise CommandError(
                    EXIT_API, f'scheduledtask "{name}" not found in namespace "{target.namespace}"'
                ) from exc
            raise CommandError(
                EXIT_API,
                f"the API {model.API_VERSION} is not served by this cluster (is the "
                f"Cronlet CRD installed?): {kube.api_message(exc)}",
            ) from exc
        raise CommandError(
            EXIT_API, f"scheduledtask/{name}: {kube.api_message(exc)} (HTTP {exc.status})"
        ) from exc
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        host = getattr(target.api.configuration, "host", "?")
        raise CommandError(EXIT_API, f"cannot reach the Kubernetes API server at {host}: {exc}") from exc


def get_task(target: Target, name: str) -> dict[str, Any]:
    return _call(
        target,
        name,
        lambda api: api.get_namespaced_custom_object(
            model.GROUP, model.VERSION, target.namespace, model.PLURAL, name, _request_timeout=REQUEST_TIMEOUT
        ),
    )


def patch_task(target: Target, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON merge patch (RFC 7386) on the ScheduledTask: only the keys in ``patch`` change."""
    return _call(
        target,
        name,
        lambda api: api.patch_namespaced_custom_object(
            model.GROUP,
            model.VERSION,
            target.namespace,
            model.PLURAL,
            name,
            dict(patch),
            _content_type="application/merge-patch+json",
            _request_timeout=REQUEST_TIMEOUT,
        ),
    )


# --------------------------------------------------------------------------- commands


def _target(args: argparse.Namespace) -> Target:
    return connect(
        kubeconfig=getattr(args, "kubeconfig", None),
        context=getattr(args, "context", None),
        namespace=getattr(args, "namespace", None),
    )


def _utcnow() -> datetime:
    return datetime.now(UTC)


def cmd_run(args: argparse.Namespace) -> int:
    name = str(args.name)
    target = _target(args)
    token = times.rfc3339(_utcnow())
    patch_task(target, name, {"metadata": {"annotations": {model.RUN_NOW_ANNOTATION: token}}})
    print(f"scheduledtask/{name}: run requested (token {token})")
    return EXIT_OK


def _set_suspend(args: argparse.Namespace, *, suspend: bool) -> int:
    name = str(args.name)
    target = _target(args)
    patch_task(target, name, {"spec": {"suspend": suspend}})
    print(f"scheduledtask/{name}: {'suspended' if suspend else 'resumed'}")
    return EXIT_OK


def cmd_suspend(args: argparse.Namespace) -> int:
    return _set_suspend(args, suspend=True)


def cmd_resume(args: argparse.Namespace) -> int:
    return _set_suspend(args, suspend=False)


def cmd_history(args: argparse.Namespace) -> int:
    name = str(args.name)
    target = _target(args)
    history = list((get_task(target, name).get("status") or {}).get("history") or [])
    if args.output == "json":
        print(json.dumps(history, indent=2))
        return EXIT_OK
    if not history:
        print(f"No history for scheduledtask/{name} in namespace {target.namespace} yet.", file=sys.stderr)
        return EXIT_OK
    rows = history_rows(history, message_width=10_000)
    # Fit the message into the terminal when it is narrower than usual, but never below 20 characters.
    used = sum(max(len(r[i]) for r in [HISTORY_COLUMNS, *rows]) + 3 for i in range(len(HISTORY_COLUMNS) - 1))
    columns = shutil.get_terminal_size((used + MESSAGE_WIDTH, 24)).columns
    width = max(20, min(MESSAGE_WIDTH, columns - used))
    sys.stdout.write(render_table(HISTORY_COLUMNS, history_rows(history, message_width=width)))
    return EXIT_OK


def cmd_next(args: argparse.Namespace) -> int:
    count = int(args.count)
    after: datetime | None = args.after
    if args.schedule is not None:
        try:
            sched: schedule.Schedule = schedule.compile_cron(
                str(args.schedule), time_zone=str(args.tz or "UTC"), hash_key=str(args.hash_key or "")
            )
        except schedule.ScheduleError as exc:
            raise CommandError(EXIT_USAGE, f"{exc.reason}: {exc.message}") from exc
        start = after or _utcnow()
    else:
        if args.tz is not None or args.hash_key is not None:
            raise CommandError(
                EXIT_USAGE,
                "--tz and --hash-key go with --schedule; for NAME they come from the "
                "task (spec.timeZone, namespace/name)",
            )
        name = str(args.name)
        target = _target(args)
        body = get_task(target, name)
        try:
            sched = task_schedule(body)
        except validation.InvalidSpec as exc:
            raise CommandError(EXIT_USAGE, f"scheduledtask/{name}: {exc.reason}: {exc.message}") from exc
        except (KeyError, ValueError) as exc:  # no or a malformed creationTimestamp: not from an API server
            raise CommandError(EXIT_USAGE, f"scheduledtask/{name}: InvalidSpec: {exc}") from exc
        if (body.get("spec") or {}).get("suspend"):
            print(
                f"note: scheduledtask/{name} is suspended: these times run only if it is resumed first",
                file=sys.stderr,
            )
        start = after or next_start(body, _utcnow())
    due_times = schedule.upcoming(sched, start, count)
    for moment in due_times:
        print(times.rfc3339(moment))
    if len(due_times) < count:
        print(f"note: only {len(due_times)} due time(s) found", file=sys.stderr)
    return EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    now = _utcnow().replace(microsecond=0)  # as a creationTimestamp would be
    handlers = known_handlers()
    namespace = getattr(args, "namespace", None) or "default"
    invalid = checked = 0
    for source in args.file:
        for index, doc in enumerate(_read_documents(source), start=1):
            verdict = validation.check_manifest(
                doc, index=index, namespace=namespace, now=now, handlers=handlers
            )
            if verdict is None:
                continue
            if isinstance(verdict, validation.Skipped):
                print(f"note: {source}: skipping {verdict.what}: not a ScheduledTask", file=sys.stderr)
                continue
            checked += 1
            invalid += not verdict.ok
            print(verdict.line())
    if checked == 0:
        print("note: no ScheduledTask documents found", file=sys.stderr)
    return EXIT_USAGE if invalid else EXIT_OK


# --------------------------------------------------------------------------- command line


def _count(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= n <= _MAX_COUNT:
        raise argparse.ArgumentTypeError(f"must be between 1 and {_MAX_COUNT}")
    return n


def _instant(text: str) -> datetime:
    try:
        return parse_instant(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _connection_options() -> argparse.ArgumentParser:
    # SUPPRESS: an option given before the command must not be reset by the command's default.
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("cluster options")
    group.add_argument(
        "--kubeconfig",
        default=argparse.SUPPRESS,
        metavar="FILE",
        help="kubeconfig file (default: $KUBECONFIG, else ~/.kube/config, else in-cluster)",
    )
    group.add_argument("--context", default=argparse.SUPPRESS, help="kubeconfig context to use")
    group.add_argument(
        "-n",
        "--namespace",
        default=argparse.SUPPRESS,
        metavar="NS",
        help="namespace of the task (default: the context's namespace, else 'default')",
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _connection_options()
    p = argparse.ArgumentParser(
        prog="kubectl cronlet",
        parents=[common],
        description="Work with Cronlet ScheduledTasks: run one now, suspend or resume it, show its history and "
        "next due times, and validate manifests offline.",
        epilog="Exit codes: 0 ok, 1 API error or task not found, 2 usage or validation error.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def task_command(
        command: str, func: Callable[[argparse.Namespace], int], *, help: str, description: str
    ) -> argparse.ArgumentParser:
        """A subcommand that acts on one ScheduledTask, named by its NAME argument."""
        parser = sub.add_parser(command, parents=[common], help=help, description=description)
        parser.add_argument("name", metavar="NAME", help="name of the ScheduledTask")
        parser.set_defaults(func=func)
        return parser

    task_command(
        "run",
        cmd_run,
        help="start one run now (sets the cronlet.dev/run-now annotation)",
        description="Start one run of the task now, whatever its schedule, by setting the annotation "
        "cronlet.dev/run-now to the current UTC time. The operator starts one run per "
        "distinct value and records it in status.lastRunNowToken.",
    )
    task_command(
        "suspend",
        cmd_suspend,
        help="stop starting new runs (spec.suspend=true)",
        description="Set spec.suspend to true: no new runs start; active runs finish. Due times that "
        "pass while suspended are not run later.",
    )
    task_command(
        "resume",
        cmd_resume,
        help="start runs again (spec.suspend=false)",
        description="Set spec.suspend to false: the task runs again from its next due time.",
    )
    history = task_command(
        "history",
        cmd_history,
        help="show recent runs (status.history)",
        description="Show the task's recent runs, newest first, from status.history: due "
        "time, outcome, attempts, duration, last Job and the handler's message.",
    )
    history.add_argument(
        "-o",
        "--output",
        choices=["table", "json"],
        default="table",
        help="table (default) or json (the status.history entries as stored)",
    )

    nxt = sub.add_parser(
        "next",
        parents=[common],
        help="print the next due times of a task or of a cron expression",
        description="Print the next due times, one RFC 3339 UTC instant per line. With NAME, of a ScheduledTask "
        "in the cluster (counted from now, or from status.lastDueTime if later). With --schedule, of "
        "a cron expression, offline.",
        epilog="examples:\n  kubectl cronlet next nightly-report -n jobs\n"
        '  kubectl cronlet next --schedule "30 2 * * *" --tz Europe/Berlin --count 3',
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    which = nxt.add_mutually_exclusive_group(required=True)
    which.add_argument("name", metavar="NAME", nargs="?", default=None, help="name of the ScheduledTask")
    which.add_argument(
        "--schedule",
        metavar="EXPR",
        help="a cron expression (5 fields, or 6 with seconds first, or a macro such as @daily)",
    )
    nxt.add_argument(
        "-c", "--count", type=_count, default=5, metavar="N", help="how many due times (default 5)"
    )
    nxt.add_argument(
        "--after",
        type=_instant,
        default=None,
        metavar="RFC3339",
        help="count from this instant instead of now (e.g. 2026-01-01T00:00:00Z)",
    )
    nxt.add_argument(
        "--tz", default=None, metavar="ZONE", help="with --schedule: IANA time zone (default UTC)"
    )
    nxt.add_argument(
        "--hash-key",
        default=None,
        metavar="KEY",
        help="with --schedule: key for H fields (the operator uses the task's namespace/name)",
    )
    nxt.set_defaults(func=cmd_next)

    validate = sub.add_parser(
        "validate",
        parents=[common],
        help="check ScheduledTask manifests offline",
        description="Check every ScheduledTask in the given YAML files (multi-document; '-' reads stdin) with "
        "the rules of the API server (schema) and of the operator (cron expression, time zone, "
        "handler, durations), without a cluster. Prints 'NAME: ok (next: TIME)' or "
        "'NAME: Reason: message' per task; exits 2 if any is invalid. Handler short names are "
        "checked against the handlers installed here (entry points of cronlet.handlers); a task with "
        "spec.image is not checked for them. Other kinds of documents are skipped.",
    )
    validate.add_argument(
        "-f",
        "--filename",
        dest="file",
        action="append",
        required=True,
        metavar="FILE",
        help="YAML file to check ('-' for stdin); repeatable",
    )
    validate.set_defaults(func=cmd_validate)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2, already printed)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except CommandError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
