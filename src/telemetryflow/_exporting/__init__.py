"""The export path, from "span ended" to bytes on the wire: the pipeline that
wires the SDK providers to bounded per-signal queues, the metric reader, the direct
OTLP encoder, the opt-in on-disk spool, the sender (rate limit, retry policy,
accounting) and one-attempt gRPC/HTTP transports, with the fork-safe locks they share.
"""
