"""Where the collector keeps what it receives: one package per backend."""
