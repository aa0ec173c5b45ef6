"""The SQLite backend: one database in WAL mode with one writer thread, its schema and
migrations, and retention by receive time, fair per project.
"""
