"""Typed async clients for the two apps: `connectors.gumroad` and `connectors.snapshots`."""

__all__: list[str] = []
