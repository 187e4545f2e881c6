"""Data comparison: department extracts screened in bulk against the monitored population."""
