"""What both sides of Cronlet share: the operator and the executor pods it starts.

Handler references and the registry of handler names (``handlerref``), RFC 3339 instants (``times``) and
log lines (``logs``). Private to Cronlet: no stability promise to anyone else.

Must not: import anything but the standard library, or do I/O beyond reading installed entry points. The
operator's pure core and the executor import this package, so anything here ends up in both.
"""
