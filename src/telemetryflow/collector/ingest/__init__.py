"""What arrives becomes rows: bounded decoding, OTLP spans, logs and metric points turned
into rows, the metric report/batch rows, exemplars, and the error/event model filled from
OTLP and the observability API alike.
"""
