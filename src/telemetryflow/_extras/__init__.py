"""Conveniences on top of the client: ``track``/``trace``/``event``, error and
product-event capture, feature flags, the stdlib ``logging`` bridge and the default
client, plus the public :class:`~telemetryflow.TelemetryFlowClient` that puts the
client core and these methods together. They use the client; it never uses them.
"""
