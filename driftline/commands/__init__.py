"""Sub-commands of the ``driftline`` CLI, one module per group."""
