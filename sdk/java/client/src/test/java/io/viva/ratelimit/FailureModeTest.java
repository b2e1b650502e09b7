package io.viva.ratelimit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.viva.ratelimit.testing.ScriptedServer;
import io.viva.ratelimit.testing.ScriptedServer.Step;
import io.viva.ratelimit.testing.SilentServer;
import io.viva.ratelimit.testing.Tools;
import java.net.URI;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/** Retries with backoff, then the failure mode: an unreachable, a stalled, a failing sidecar. */
class FailureModeTest {
  static final RetryPolicy FAST = new RetryPolicy(3, Duration.ofMillis(10), Duration.ofMillis(20));

  static RateLimiterClient client(String url, FailureMode mode) {
    return RateLimiterClient.builder().endpoint(url).retry(FAST).failureMode(mode).build();
  }

  @Test
  void unreachableFailsOpen() {
    CheckResult result = client(Tools.closedEndpoint(), FailureMode.OPEN)
        .check(CheckRequest.of("u", "api"));
    assertTrue(result.allowed());
    assertTrue(result.error().orElseThrow().contains("ConnectException"), result.toString());
    assertEquals(List.of(), result.headers());
  }

  @Test
  void unreachableFailsClosed() {
    RateLimiterClient client = client(Tools.closedEndpoint(), FailureMode.CLOSED);
    assertFalse(client.allow("u", "api"));
    assertTrue(client.check(CheckRequest.of("u", "api")).error().isPresent());
    assertFalse(client.checkAsync(CheckRequest.of("u", "api")).join().allowed());
  }

  @Test
  void unreachableRaisesWhenAsked() {
    RateLimiterClient client = client(Tools.closedEndpoint(), FailureMode.RAISE);
    SidecarUnavailableException e = assertThrows(SidecarUnavailableException.class,
        () -> client.allow("u", "api"));
    assertTrue(e.getMessage().contains("ConnectException"), e.getMessage());
    CompletionException async = assertThrows(CompletionException.class,
        () -> client.checkAsync(CheckRequest.of("u", "api")).join());
    assertInstanceOf(SidecarUnavailableException.class, async.getCause());
  }

  @ParameterizedTest
  @EnumSource(value = FailureMode.class, names = {"OPEN", "CLOSED"})
  void theTimeoutBoundsAStalledSidecar(FailureMode mode) {
    try (SilentServer stalled = new SilentServer()) {
      RateLimiterClient client = RateLimiterClient.builder().endpoint("127.0.0.1:" + stalled.port())
          .timeout(Duration.ofMillis(200)).retry(FAST).failureMode(mode).build();
      long started = System.nanoTime();
      CheckResult result = client.check(CheckRequest.of("u", "api"));
      long elapsedMs = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - started);
      assertEquals(mode == FailureMode.OPEN, result.allowed());
      assertTrue(result.error().orElseThrow().contains("Timeout"), result.toString());
      // Not retried (the request was sent, it may have been counted): about one timeout.
      assertTrue(elapsedMs >= 150 && elapsedMs < 2000, "took " + elapsedMs + " ms");
    }
  }

  @Test
  void theTimeoutBoundsAStalledSidecarAsync() {
    try (SilentServer stalled = new SilentServer()) {
      RateLimiterClient client = RateLimiterClient.builder().endpoint("127.0.0.1:" + stalled.port())
          .timeout(Duration.ofMillis(200)).retry(FAST).build();
      CompletableFuture<CheckResult> call = client.checkAsync(CheckRequest.of("u", "api"));
      CheckResult result = call.orTimeout(2, TimeUnit.SECONDS).join();
      assertTrue(result.allowed() && result.error().isPresent());
    }
  }

  @Test
  void aRefusedConnectionIsRetriedUntilTheSidecarListens() throws Exception {
    int port = Tools.freePort();
    RateLimiterClient client = RateLimiterClient.builder().endpoint("127.0.0.1:" + port)
        .retry(new RetryPolicy(100, Duration.ofMillis(20), Duration.ofMillis(50)))
        .failureMode(FailureMode.RAISE).build();
    CompletableFuture<CheckResult> call = CompletableFuture.supplyAsync(
        () -> client.check(CheckRequest.of("u", "api")));
    Thread.sleep(300); // the first attempts are refused
    try (ScriptedServer late = new ScriptedServer(port, List.of(Step.ok()))) {
      CheckResult result = call.get(10, TimeUnit.SECONDS);
      assertTrue(result.allowed() && result.error().isEmpty(), result.toString());
      assertTrue(result.attempts() > 1, result.toString());
      assertEquals(1, late.calls());
    }
  }

  @Test
  void a503IsAnAnswerNotRetried() {
    for (boolean async : new boolean[] {false, true}) {
      try (ScriptedServer server = new ScriptedServer(List.of(Step.status(503), Step.ok()))) {
        RateLimiterClient client = client(server.url(), FailureMode.CLOSED);
        CheckRequest request = CheckRequest.of("u", "api");
        CheckResult result = async ? client.checkAsync(request).join() : client.check(request);
        assertFalse(result.allowed());
        assertEquals("HTTP 503 from the sidecar: store down", result.error().orElseThrow());
        assertEquals(1, result.attempts());
        assertEquals(1, server.calls());
      }
    }
  }

  @Test
  void retriesRunOutIntoTheFailureModeCountingAttempts() {
    RateLimiterClient client = client(Tools.closedEndpoint(), FailureMode.CLOSED);
    assertEquals(3, client.check(CheckRequest.of("u", "api")).attempts());
    assertEquals(3, client.checkAsync(CheckRequest.of("u", "api")).join().attempts());
    RateLimiterClient once = RateLimiterClient.builder().endpoint(Tools.closedEndpoint())
        .retry(RetryPolicy.none()).failureMode(FailureMode.RAISE).build();
    SidecarUnavailableException e = assertThrows(SidecarUnavailableException.class,
        () -> once.check(CheckRequest.of("u", "api")));
    assertEquals(1, e.attempts());
  }

  @Test
  void aReadTimeoutIsNotRetried() {
    try (ScriptedServer server = new ScriptedServer(
        List.of(new Step(200, "{\"allowed\": false}", 1500), Step.ok()))) {
      RateLimiterClient client = RateLimiterClient.builder().endpoint(server.url())
          .timeout(Duration.ofMillis(300)).retry(FAST).build();
      CheckResult result = client.check(CheckRequest.of("u", "api"));
      assertTrue(result.allowed(), "failed open");
      assertTrue(result.error().orElseThrow().contains("HttpTimeoutException"), result.toString());
      assertEquals(1, server.calls());
    }
  }

  @Test
  void unexpectedStatusesAreFailuresNotAnswers() {
    try (ScriptedServer server = new ScriptedServer(List.of(Step.status(404), Step.ok()))) {
      CheckResult result = client(server.url(), FailureMode.CLOSED)
          .check(CheckRequest.of("u", "api"));
      assertFalse(result.allowed());
      assertEquals(1, server.calls());
    }
  }

  @Test
  void aMalformedAnswerIsAFailure() {
    try (ScriptedServer server = new ScriptedServer(List.of(
        new Step(200, "{\"allowed\": \"yes\"}", 0), new Step(200, "<html>", 0)))) {
      RateLimiterClient client = client(server.url(), FailureMode.CLOSED);
      CheckResult first = client.check(CheckRequest.of("u", "api"));
      assertTrue(first.error().orElseThrow().startsWith("the sidecar's answer is not a check "
          + "result"), first.toString());
      assertFalse(client.check(CheckRequest.of("u", "api")).allowed());
      assertEquals(2, server.calls());
    }
  }

  @Test
  void a400AlwaysThrowsWhateverTheFailureMode() {
    try (ScriptedServer server = new ScriptedServer(List.of(new Step(400,
        "{\"error\": \"hits: 5 is out of range\", \"field\": \"hits\"}", 0),
        new Step(413, "", 0)))) {
      RateLimiterClient client = client(server.url(), FailureMode.OPEN);
      InvalidRequestException e = assertThrows(InvalidRequestException.class,
          () -> client.allow("u", "api"));
      assertEquals("hits", e.field().orElseThrow());
      assertEquals("hits: 5 is out of range", e.getMessage());
      InvalidRequestException tooLarge = assertThrows(InvalidRequestException.class,
          () -> client.allow("u", "api"));
      assertTrue(tooLarge.field().isEmpty());
    }
  }

  @Test
  void backoffGrowsAndIsCapped() {
    RetryPolicy policy = new RetryPolicy(6, Duration.ofMillis(100), Duration.ofMillis(300));
    long[] caps = {100, 200, 300, 300, 300};
    for (int round = 0; round < 200; round++) {
      for (int n = 0; n < caps.length; n++) {
        long ms = policy.delay(n).toMillis();
        assertTrue(ms >= 0 && ms <= caps[n], "delay " + n + " = " + ms);
      }
    }
    assertThrows(IllegalArgumentException.class,
        () -> new RetryPolicy(0, Duration.ZERO, Duration.ZERO));
    assertEquals(Duration.ZERO, RetryPolicy.none().delay(3));
  }

  @Test
  void endpointsAreUrlsOrHostPort() {
    assertEquals(URI.create("http://localhost:8080"), Endpoint.parse("localhost:8080"));
    assertEquals(URI.create("http://127.0.0.1:8080"), Endpoint.parse(" http://127.0.0.1:8080/ "));
    assertEquals(URI.create("https://rl.internal/prefix"),
        Endpoint.parse("HTTPS://rl.internal/prefix/"));
    assertEquals(URI.create("http://[::1]:8080"), Endpoint.parse("[::1]:8080"));
    for (String bad : new String[] {"", "ftp://x", "http://", "http://h:1/?q=1", "a b"}) {
      IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
          () -> RateLimiterClient.builder().endpoint(bad), bad);
      assertTrue(e.getMessage().contains("endpoint"), e.getMessage());
    }
    assertThrows(IllegalArgumentException.class,
        () -> RateLimiterClient.builder().timeout(Duration.ZERO));
  }
}
