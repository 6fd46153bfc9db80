"""Re-lists made visible, so the store converges to each list: what a list did not return is gone.

kopf lists, then watches. When a watch expires (``410 Gone``: an API server restart or upgrade, a partition, a
long pause) it lists again and hands every listed object to the handlers as an event of type None; it sends
no DELETED for what vanished in the gap, and its handlers never learn where a listing ends. Without this, a
task deleted during a gap would go on being scheduled, and a Job deleted during it would stay "active" (the
task Running for ever, every later run Skipped under Forbid).

``install`` wraps kopf's ``continuous_watch`` once per process: every event calls back as the stream brings it,
before kopf hands it to its per-object workers (so in the API server's order, and before the listing's end is
reported), and each completed listing (at kopf's LISTED bookmark) calls back with the identities it returned
and the list's resourceVersion. Objects the store holds
at a resourceVersion up to that one, and which the list did not return, were deleted; newer ones (created by
our own writes after the list was taken) stay. This relies on kopf internals of the pinned version
(``kopf._cogs.clients.watching``, ``fetching``); tests/unit/controller/test_listings.py runs kopf's own
``continuous_watch`` through it and fails when they change.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from kopf._cogs.clients import fetching, watching

log = logging.getLogger("cronlet.listings")
Identity = tuple[str, str]  # (namespace, name); "" for cluster-scoped


@dataclass(frozen=True)
class Listing:
    plural: str
    namespace: str | None  # None: cluster-wide
    listed: frozenset[Identity]
    resource_version: int


OnListed = Callable[[Listing], None]
OnEvent = Callable[[str, dict[str, Any]], None]  # (plural, the raw watch event {"type", "object"})
_list_version: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "cronlet_list_version", default=None
)
_original: dict[str, Any] = {}


def install(on_listed: OnListed, on_event: OnEvent | None = None) -> None:
    """Report every completed listing of every kopf watch to ``on_listed``, and every event to ``on_event``
    (replaces earlier callbacks)."""
    if not _original:
        _original["watch"] = watching.continuous_watch
        _original["fetch"] = fetching.fetch_objs
        watching.continuous_watch = _converging_watch
        fetching.fetch_objs = _recording_fetch
    _original["on_listed"] = on_listed
    _original["on_event"] = on_event


def uninstall() -> None:
    if _original:
        watching.continuous_watch = _original.pop("watch")
        fetching.fetch_objs = _original.pop("fetch")
        _original.clear()


async def _recording_fetch(**kwargs: Any) -> AsyncIterator[Any]:
    """kopf's paginated list, noting the list's resourceVersion (the same task reads it, below)."""
    async for chunk, version in _original["fetch"](**kwargs):
        _list_version.set(version)
        yield chunk, version


async def _converging_watch(**kwargs: Any) -> AsyncIterator[Any]:
    listed: set[Identity] = set()
    listing = True
    _list_version.set(None)
    async for item in _original["watch"](**kwargs):
        if listing and item is watching.Bookmark.LISTED:
            listing = False
            _report(kwargs, listed)
            listed = set()
        elif isinstance(item, dict) and isinstance(item.get("object"), dict):
            if listing and item.get("type") is None:
                meta = item["object"].get("metadata") or {}
                listed.add((meta.get("namespace") or "", meta.get("name") or ""))
            _deliver(kwargs, item)
        yield item


def _deliver(kwargs: dict[str, Any], item: dict[str, Any]) -> None:
    on_event: OnEvent | None = _original.get("on_event")
    if on_event is None:
        return
    try:
        on_event(kwargs["resource"].plural, item)
    except Exception:  # the watch must go on whatever the store does with one event
        log.exception("taking in an event of %s failed", kwargs["resource"].plural)


def _report(kwargs: dict[str, Any], listed: set[Identity]) -> None:
    version = _list_version.get()
    if version is None:
        return  # an initial stream without a list (not used here): nothing to converge to
    try:
        number = int(version)
    except ValueError:
        log.warning(
            "a list of %s came with a resourceVersion that is not a number: %r", kwargs["resource"], version
        )
        return
    namespace = kwargs.get("namespace")
    listing = Listing(kwargs["resource"].plural, namespace, frozenset(listed), number)
    callback: OnListed = _original["on_listed"]
    try:
        callback(listing)
    except Exception:  # the watch must go on whatever the store does with it
        log.exception("handling a listing of %s failed", listing.plural)
