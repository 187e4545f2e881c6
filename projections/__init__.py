"""Read models fed by the projector from the broker, or straight from the log."""
