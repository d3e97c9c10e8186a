"""sensorfuse runtime: wire format, clocks, transport, node runtime, supervisor, graphs, CLI.

Layering rule: nothing in this package imports from `nodes`, `models` or `replay`,
and nothing here imports torch.
"""

__version__ = "0.1.0"
