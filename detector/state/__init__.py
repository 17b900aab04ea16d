"""Per-account online statistics: pure update logic (``account``) and its Redis store (``store``)."""
