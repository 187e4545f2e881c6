"""FastStream apps that carry the service over a message broker: intake, relay, projector."""
