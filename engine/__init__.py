"""sensorfuse runtime: wire format, clocks, transport, node runtime, supervisor, graphs, CLI.

Layering rule: nothing in this package imports from `sensorfuse.nodes`,
`sensorfuse.models` or `sensorfuse.replay`, and nothing here imports torch.
"""

from sensorfuse import __version__  # one version for the whole package

__all__ = ["__version__"]
