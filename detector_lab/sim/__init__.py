"""Synthetic traffic. ``basic`` is the small stream of the demo and the tests."""
