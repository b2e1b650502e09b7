"""What the sidecar tells about itself: Prometheus metrics, health, OpenTelemetry traces."""
