"""The engine: request → limits → store → decision. No transport, no I/O of its own."""
