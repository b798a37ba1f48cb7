"""kafka-event-tracing: one OpenTelemetry trace per Kafka event chain."""
