"""The local SQLite time-series store: one writer thread, readers on their own connections."""

from supervisor.store.reader import StoreReader
from supervisor.store.writer import Retention, StoreWriter

__all__ = ["Retention", "StoreReader", "StoreWriter"]
