"""Test helpers (not shipped): tiny models and specs, sine windows, tolerances."""
