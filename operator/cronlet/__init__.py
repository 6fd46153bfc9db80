"""Cronlet: a Kubernetes operator that runs scheduled tasks as executor Jobs.

The package is split so that handler images stay small: ``cronlet.sdk`` (what handler authors import) and
``cronlet.executor`` (what runs in the executor container) need only the standard library and pydantic,
while the operator modules need kopf and the Kubernetes client.

This file must import nothing: importing ``cronlet.sdk`` runs it first, so any import here would make
every handler image depend on it.
"""

__version__ = "0.1.0"
