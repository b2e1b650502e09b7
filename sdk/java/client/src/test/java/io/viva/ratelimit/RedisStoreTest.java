package io.viva.ratelimit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.viva.ratelimit.testing.RedisProcess;
import io.viva.ratelimit.testing.SidecarProcess;
import io.viva.ratelimit.testing.TestRules;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.MethodOrderer;
import org.junit.jupiter.api.Order;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestMethodOrder;

/** A sidecar on a real redis-server; then Redis goes away and the sidecar answers 503. */
@TestMethodOrder(MethodOrderer.OrderAnnotation.class)
class RedisStoreTest {
  static RedisProcess redis;
  static SidecarProcess sidecar;

  @BeforeAll
  static void start() {
    redis = RedisProcess.start();
    sidecar = SidecarProcess.start(TestRules.write(),
        Map.of("REDIS_URL", redis.url(), "REDIS_TIMEOUT", "2s"));
  }

  @AfterAll
  static void stop() {
    if (sidecar != null) {
      sidecar.close();
    }
    if (redis != null) {
      redis.close();
    }
  }

  @Test
  @Order(1)
  void countsInRedis() {
    RateLimiterClient client = RateLimiterClient.builder().endpoint(sidecar.httpUrl())
        .timeout(Duration.ofSeconds(5)).build();
    List<Boolean> answers = new ArrayList<>();
    for (int i = 0; i < 4; i++) {
      answers.add(client.allow("redis-user", "api_requests"));
    }
    assertEquals(List.of(true, true, true, false), answers);
  }

  @Test
  @Order(2)
  void aStoreOutageIsA503ThatTheFailureModeAnswers() {
    redis.close();
    RetryPolicy fast = new RetryPolicy(2, Duration.ofMillis(10), Duration.ofMillis(20));
    RateLimiterClient closed = RateLimiterClient.builder().endpoint(sidecar.httpUrl())
        .timeout(Duration.ofSeconds(5)).retry(fast).failureMode(FailureMode.CLOSED).build();
    CheckResult refused = closed.check(CheckRequest.of("redis-user-2", "api_requests"));
    assertFalse(refused.allowed());
    assertTrue(refused.error().orElseThrow().startsWith("HTTP 503 from the sidecar: "),
        refused.toString());
    RateLimiterClient open = RateLimiterClient.builder().endpoint(sidecar.httpUrl())
        .timeout(Duration.ofSeconds(5)).retry(fast).build();
    assertTrue(open.allow("redis-user-2", "api_requests"));
  }
}
