"""Task events as CloudEvents 1.0: the event, its deterministic id, and its two encodings.

Pure: no I/O, no clock. The publisher (``cronlet._controller.publisher``) hands these to the sinks, which
only move bytes: Kafka and HTTP share the *binary* content mode (the data is the payload, every other
attribute is a header: ``ce_<name>`` on Kafka, ``ce-<name>`` on HTTP) and the *structured* mode (the whole
event as one JSON document, content type ``application/cloudevents+json``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

SPEC_VERSION = "1.0"
DATA_CONTENT_TYPE = "application/json"
STRUCTURED_CONTENT_TYPE = "application/cloudevents+json; charset=UTF-8"
TYPE_PREFIX = "dev.cronlet.run."
SEQUENCE_WIDTH = 12  # zero-padded, so that the string order is the numeric order (CloudEvents sequence)

Kind = Literal["started", "retrying", "succeeded", "failed", "skipped", "missed", "replaced"]
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
