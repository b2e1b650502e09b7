"""Rules: the envoyproxy/ratelimit YAML schema, loaded, validated and matched."""
