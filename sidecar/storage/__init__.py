"""Counter stores behind one narrow Protocol (base): memory (the embedded default) and Redis
(redis/), and the algorithms both run (algorithms.py, the Python twin of redis/lua/)."""
