"""Task events as CloudEvents 1.0: the event, its deterministic id, and its two encodings.

Pure: no I/O, no clock. The publisher (``cronlet._controller.publisher``) hands these to the sinks, which
only move bytes: Kafka and HTTP share the *binary* content mode (the data is the payload, every other
attribute is a header: ``ce_<name>`` on Kafka, ``ce-<name>`` on HTTP) and the *structured* mode (the whole
event as one JSON document, content type ``application/cloudevents+json``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from cronlet._core.model import (
    GROUP,
    PLURAL,
    VERSION,
    EventKind,
    EventOutbox,
    OutboxEntry,
    TaskEvents,
    dump,
    json_bytes,
)

SPEC_VERSION = "1.0"
DATA_CONTENT_TYPE = "application/json"
STRUCTURED_CONTENT_TYPE = "application/cloudevents+json; charset=UTF-8"
TYPE_PREFIX = "dev.cronlet.run."
SEQUENCE_WIDTH = 12  # zero-padded, so that the string order is the numeric order (CloudEvents sequence)

Kind = EventKind
KINDS: tuple[Kind, ...] = ("started", "retrying", "succeeded", "failed", "skipped", "missed", "replaced")
Mode = Literal["binary", "structured"]


def event_type(kind: Kind) -> str:
    return f"{TYPE_PREFIX}{kind}.v1"


def event_id(*, task_uid: str, run_id: str, attempt: int, kind: Kind) -> str:
    """The same transition always gets the same id, so a re-sent event is recognisably the same event."""
    digest = hashlib.sha256(f"{task_uid}/{run_id}/{attempt}/{kind}".encode()).hexdigest()
    return digest[:32]


def sequence(number: int) -> str:
    return str(number).zfill(SEQUENCE_WIDTH)


@dataclass(frozen=True, kw_only=True)
class CloudEvent:
    """One task event. ``time`` is when the transition happened (RFC 3339), not when it is sent."""

    id: str
    source: str  # the task's API path: /apis/cronlet.dev/v1alpha1/namespaces/<ns>/scheduledtasks/<name>
    type: str
    time: str
    subject: str | None  # the attempt's Job name, when there is one
    sequence: str  # per task, zero-padded
    partitionkey: str  # namespace/name: one Kafka partition per task keeps its events in order
    data: Mapping[str, Any] = field(default_factory=dict)

    def attributes(self) -> dict[str, str]:
        """Every context attribute but the data, as CloudEvents names them."""
        attrs = {
            "specversion": SPEC_VERSION,
            "id": self.id,
            "source": self.source,
            "type": self.type,
            "time": self.time,
            "sequence": self.sequence,
            "partitionkey": self.partitionkey,
        }
        if self.subject:
            attrs["subject"] = self.subject
        return attrs


def data_bytes(event: CloudEvent) -> bytes:
    return json.dumps(dict(event.data), separators=(",", ":"), sort_keys=True).encode()


def binary(event: CloudEvent, *, header_prefix: str) -> tuple[list[tuple[str, str]], bytes]:
    """Headers and body in binary mode; ``header_prefix`` is ``ce_`` for Kafka, ``ce-`` for HTTP."""
    content_type = "content-type" if header_prefix == "ce_" else "Content-Type"
    headers = [(content_type, DATA_CONTENT_TYPE)]
    headers += [(f"{header_prefix}{name}", value) for name, value in event.attributes().items()]
    return headers, data_bytes(event)


def structured(event: CloudEvent, *, kafka: bool) -> tuple[list[tuple[str, str]], bytes]:
    """Headers and body in structured mode: one JSON document holding the attributes and the data."""
    document: dict[str, Any] = {**event.attributes(), "datacontenttype": DATA_CONTENT_TYPE}
    document["data"] = dict(event.data)
    content_type = "content-type" if kafka else "Content-Type"
    body = json.dumps(document, separators=(",", ":"), sort_keys=True).encode()
    return [(content_type, STRUCTURED_CONTENT_TYPE)], body


def encode(event: CloudEvent, *, mode: Mode, kafka: bool) -> tuple[list[tuple[str, str]], bytes]:
    if mode == "structured":
        return structured(event, kafka=kafka)
    return binary(event, header_prefix="ce_" if kafka else "ce-")


# ---------------------------------------------------------------------------------------------- the outbox

MESSAGE_LIMIT = 256  # characters of a message kept in an outbox entry (the outbox lives in status)
MAX_ENTRIES = 100
MAX_BYTES = 32 * 1024


@dataclass(frozen=True, kw_only=True)
class Policy:
    """What the decision needs to keep a task's outbox: the operator has sinks, and what they acknowledged.

    ``acked`` is the highest sequence number every sink has acknowledged for this task (0: none known);
    ``max_entries`` and ``max_bytes`` cap the outbox (the oldest are dropped, and counted, beyond them)."""

    acked: int = 0
    max_entries: int = MAX_ENTRIES
    max_bytes: int = MAX_BYTES


@dataclass(frozen=True)
class Folded:
    outbox: EventOutbox
    dropped: int  # dropped by this fold (the outbox was full)
    recorded: int  # new entries recorded


def wanted(spec_events: TaskEvents | None, kind: EventKind) -> bool:
    if spec_events is None:
        return True
    return spec_events.publish and (spec_events.types is None or kind in spec_events.types)


def fold(
    old: EventOutbox | None,
    transitions: Sequence[OutboxEntry],
    *,
    policy: Policy,
    spec_events: TaskEvents | None,
) -> Folded:
    """The outbox after a pass: acknowledged entries gone, this pass's transitions appended with the next
    sequence numbers (kinds the task filters out get none, so a consumer sees no gap), the oldest dropped
    beyond the caps."""
    old = old or EventOutbox()
    # Acknowledged beyond this outbox's own count: the status was reset since (it counts from 1 again), and
    # the acknowledgement is of the old numbers: none of these is known delivered.
    acked = policy.acked if policy.acked <= old.sequence else 0
    pending = [e for e in old.pending if e.sequence > acked]
    number = old.sequence
    recorded = 0
    for entry in transitions:
        if not wanted(spec_events, entry.kind):
            continue
        number += 1
        recorded += 1
        message = entry.message
        if message is not None and len(message) > MESSAGE_LIMIT:
            message = message[: MESSAGE_LIMIT - 1] + "…"
        pending.append(entry.model_copy(update={"sequence": number, "message": message}))
    dropped = 0
    while pending and (len(pending) > policy.max_entries or _size(pending) > policy.max_bytes):
        pending.pop(0)
        dropped += 1
    return Folded(
        EventOutbox(sequence=number, dropped=old.dropped + dropped, pending=pending), dropped, recorded
    )


def _size(pending: Sequence[OutboxEntry]) -> int:
    return sum(len(json_bytes(dump(e))) for e in pending)


def source(namespace: str, name: str) -> str:
    return f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{name}"


def cloud_event(
    entry: OutboxEntry,
    *,
    namespace: str,
    name: str,
    uid: str,
    labels: Mapping[str, str],
    handler: str,
    max_attempts: int,
) -> CloudEvent:
    """The CloudEvent for an outbox entry. Parameters stay out: they may hold secrets."""
    data: dict[str, Any] = {
        "namespace": namespace,
        "name": name,
        "uid": uid,
        "labels": dict(labels),
        "handler": handler,
        "runId": entry.run_id,
        "scheduledTime": entry.scheduled_time,
        "manual": entry.manual,
        "attempt": entry.attempt,
        "maxAttempts": max_attempts,
        "outcome": entry.kind,
    }
    optional = {
        "jobName": entry.job_name,
        "reason": entry.reason,
        "message": entry.message,
        "startTime": entry.start_time,
        "completionTime": entry.completion_time,
        "nextRetryTime": entry.next_retry_time,
        "count": entry.count,
    }
    data.update({k: v for k, v in optional.items() if v is not None})
    return CloudEvent(
        id=event_id(task_uid=uid, run_id=entry.run_id, attempt=entry.attempt, kind=entry.kind),
        source=source(namespace, name),
        type=event_type(entry.kind),
        time=entry.time,
        subject=entry.job_name,
        sequence=sequence(entry.sequence),
        partitionkey=f"{namespace}/{name}",
        data=data,
    )
