"""storewatch agent: everything that does I/O."""

__version__ = "0.1.0"
