"""dispatch: a terminal dispatch console for field service."""

__version__ = "0.1.0"
