"""The command lines: ``cronlet`` (the operator, ``cronlet crd``) and ``kubectl-cronlet`` (the kubectl plugin).

Thin: options and output here, decisions in ``cronlet._core`` (the plugin validates through
``_core.validation``, the same rules the operator applies), I/O in ``cronlet._controller`` or one request of
the plugin's own. Nothing imports this package.
"""
