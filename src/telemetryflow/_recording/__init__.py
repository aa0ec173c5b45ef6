"""Recording, the layer applications call: the client core (lifecycle, metrics,
logs, spans, status), the instrument cache and the light spans that hand values to
the OpenTelemetry SDK, attribute cleaning, and the SDK's own throttled diagnostics.
It never talks to the network; it hands finished data to the export path.
"""
