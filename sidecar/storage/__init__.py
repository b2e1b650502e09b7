"""Counter stores: memory (embedded default) and Redis, behind one narrow Protocol."""
