"""Process managers that follow the event log and act on the cases: the workflow clock."""
