"""Training of the detector's learned features from simulator text (tune half only)."""
