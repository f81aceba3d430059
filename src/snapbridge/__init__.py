"""snapbridge: keeps Gumroad and the Snapshots API in sync without code."""

__all__ = ["__version__"]

__version__ = "0.1.0"
