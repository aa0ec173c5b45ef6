"""The observability API: errors, events, metrics and flags over plain JSON, with its
OpenAPI description.
"""
