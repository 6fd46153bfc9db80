"""The controller: everything of the operator that does I/O, around the pure core.

Modules: ``kube`` (the only module that sends requests to the Kubernetes API), ``store`` (the latest known
tasks and Jobs), ``workqueue`` (keys to reconcile, one worker per key, and the timer heap of wake-ups),
``messages`` (a bounded cache of handler messages read from pods), ``reconciler`` (reads the store, asks
``_core.decision`` and carries the plan out: Jobs, one status write, Events), ``metrics`` (Prometheus series
and their bookkeeping), ``health`` (the HTTP endpoint for /metrics, /healthz and /readyz) and ``runtime``
(kopf's watches feeding the store, the process's lifecycle).

Must not: import the command lines (``cronlet._cli``), or decide anything a pure function in ``_core`` could
decide. tests/unit/test_layers.py enforces the imports.
"""
