"""HTTP API and the staff workbench: the one window for people (an inbound adapter)."""
