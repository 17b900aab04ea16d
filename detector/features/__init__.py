"""Pure functions of one event: what the state and detectors need, computed once per event."""

from detector.features.request import EventFeatures, extract

__all__ = ["EventFeatures", "extract"]
