package io.viva.ratelimit;

import java.time.Instant;

/** One limit of the key, as the verification left it. */
public record VerifiedLimit(String name, long limit, long remaining, Instant resetAt,
    boolean exceeded) {}
