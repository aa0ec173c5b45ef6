"""The ClickHouse backend: the OpenTelemetry Collector exporter's tables, read and written.

Needs the ``telemetryflow[clickhouse]`` extra (``chdb`` embedded, ``clickhouse-connect``
for a server).
"""
