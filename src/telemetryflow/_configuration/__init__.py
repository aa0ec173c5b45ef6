"""Configuration, the first layer: every setting declared once and resolved
(explicit > ``TELEMETRYFLOW_*`` > ``OTEL_*`` > default), the credentials and the frozen
``TelemetryConfig`` they become, the fluent builder, the user's config file, the
resource, the enums and the one exception tree. Nothing here records or exports.
"""
