"""The embedded Kafka-compatible broker (a standalone library: imports nothing of the gateway)."""
