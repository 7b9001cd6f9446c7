"""The tracking package's error (apart from MLflow, so that raising it imports no MLflow)."""

from tuner.errors import TunerError


class StoreError(TunerError):
    """A tracking store that cannot be used; the message never holds a password."""
