"""Personal data protection: per-household data keys, the sealing mapper, erasure by shredding."""
