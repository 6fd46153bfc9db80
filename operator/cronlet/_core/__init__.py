"""The pure core of the operator: what a ScheduledTask means and what to do about it.

Modules: ``model`` (the resource's types, the source of the CRD), ``crd`` (CRD generation), ``schedule``
(cron, time zones, due times, backoff), ``naming`` (derived names), ``validation`` (what makes a spec usable),
``views`` (what the decision reads and returns), ``decision`` (the plan for one task), ``status`` (building
the new status), ``manifests`` (Job and Event manifests; reading API objects into views).

Must not: do I/O of any kind (network, files, subprocesses, threads), read the clock (``now`` is always a
parameter), or import the controller (``cronlet._controller``), the command lines (``cronlet._cli``), kopf or
the Kubernetes client. It may import the shared helpers of the handler side (``cronlet._common``).
tests/unit/test_layers.py enforces this.
"""
