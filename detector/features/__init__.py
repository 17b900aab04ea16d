"""Pure functions of one event: what the state and detectors need, computed once per event."""

from detector.features.request import EventFeatures, extract, extract_batch

__all__ = ["EventFeatures", "extract", "extract_batch"]
