package io.viva.ratelimit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.viva.ratelimit.testing.ScriptedServer;
import io.viva.ratelimit.testing.ScriptedServer.Step;
import io.viva.ratelimit.testing.Tools;
import java.time.Duration;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.CompletionException;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * verifyKey beyond the contract (ContractTest runs verify.json against real full-mode sidecars):
 * what other servers on the sidecar's port answer, RAISE, and what the client refuses itself.
 */
class VerifyKeyTest {
  static final String KEY = "viva_AcXgQx9sbHq9c2jnvM1WkN78NHQ6";
  static final String ROOT = "vroot_test_0123456789abcdef0123456789abcdef";
  static final RetryPolicy FAST = new RetryPolicy(2, Duration.ofMillis(10), Duration.ofMillis(20));

  static RateLimiterClient.Builder client(String url) {
    return RateLimiterClient.builder().endpoint(url).retry(FAST).rootKey(ROOT);
  }

  @Test
  void theVerdictIsTyped() {
    String body = "{\"valid\": false, \"code\": \"QUOTA_EXCEEDED\", \"key_id\": \"key_1\","
        + " \"customer_id\": \"c\", \"plan\": \"pro\", \"features\": [\"exports\"],"
        + " \"remaining\": 0, \"reset_at\": \"2030-01-01T00:00:00Z\", \"limits\": [{\"name\":"
        + " \"monthly\", \"limit\": 2, \"remaining\": 0, \"reset_at\": \"2030-01-01T00:00:00Z\","
        + " \"exceeded\": true}]}";
    try (ScriptedServer server = new ScriptedServer(List.of(new Step(200, body, 0),
        new Step(200, body, 0)))) {
      KeyVerification v = client(server.url()).build().verifyKey(VerifyKeyRequest.of(KEY)
          .cost(0).limits("monthly").features("exports"));
      assertEquals(Optional.of(VerifyCode.QUOTA_EXCEEDED), v.code());
      assertEquals(List.of(new VerifiedLimit("monthly", 2, 0, v.resetAt().orElseThrow(), true)),
          v.limits());
      assertFalse(v.valid());
      assertEquals(v.code(), client(server.url()).build()
          .verifyKeyAsync(VerifyKeyRequest.of(KEY)).join().code());
    }
  }

  @Test
  void failsClosedByDefaultAndNeverQuotesABodyTheSidecarDidNotWrite() {
    try (ScriptedServer server = new ScriptedServer(List.of(
        new Step(502, "upstream said " + KEY, 0), new Step(503, "{}", 0)))) {
      KeyVerification closed = client(server.url()).build().verifyKey(KEY);
      assertFalse(closed.valid());
      assertEquals(Optional.empty(), closed.code());
      assertEquals(Optional.of("HTTP 502 from the sidecar"), closed.error());
      KeyVerification open = client(server.url()).verifyFailureMode(FailureMode.OPEN).build()
          .verifyKey(KEY);
      assertTrue(open.valid() && open.code().isEmpty(), open.toString());
    }
    assertEquals(FailureMode.CLOSED, RateLimiterClient.builder().build().verifyFailureMode());
  }

  @Test
  void raiseThrowsWhenTheSidecarIsUnreachable() {
    RateLimiterClient client = client(Tools.closedEndpoint())
        .verifyFailureMode(FailureMode.RAISE).build();
    assertEquals(2, assertThrows(SidecarUnavailableException.class, () -> client.verifyKey(KEY))
        .attempts());
    CompletionException async = assertThrows(CompletionException.class,
        () -> client.verifyKeyAsync(VerifyKeyRequest.of(KEY)).join());
    assertInstanceOf(SidecarUnavailableException.class, async.getCause());
  }

  @ParameterizedTest
  @ValueSource(ints = {401, 403})
  void aRefusedRootKeyThrowsEvenFailingOpen(int status) {
    try (ScriptedServer server = new ScriptedServer(List.of(
        new Step(status, "{\"error\": \"the root key is not valid\", \"field\": null}", 0)))) {
      UnauthorizedException e = assertThrows(UnauthorizedException.class, () -> client(
          server.url()).verifyFailureMode(FailureMode.OPEN).build().verifyKey(KEY));
      assertEquals(status, e.status().orElseThrow());
      assertFalse(e.getMessage().contains(ROOT) || e.getMessage().contains(KEY));
    }
    RateLimiterClient none = RateLimiterClient.builder().endpoint(Tools.closedEndpoint()).build();
    assertTrue(assertThrows(UnauthorizedException.class, () -> none.verifyKey(KEY)).status()
        .isEmpty());
    CompletionException async = assertThrows(CompletionException.class,
        () -> none.verifyKeyAsync(VerifyKeyRequest.of(KEY)).join());
    assertInstanceOf(UnauthorizedException.class, async.getCause());
  }

  @ParameterizedTest
  @ValueSource(strings = {"203.0.113.9", "[2001:db8::1]:443", "LONGEST"})
  void theClientAddressIsSentAsGiven(String given) {
    StringBuilder printable = new StringBuilder();
    for (char c = 0x21; c <= 0x7e; c++) {
      printable.append(c);
    }
    String address = "LONGEST".equals(given)
        ? (printable + "z".repeat(128)).substring(0, 128) : given;
    VerifyKeyRequest request = VerifyKeyRequest.of(KEY).clientAddress(address);
    assertEquals(Json.parse(request.toJson()), Json.parse("{\"key\": \"" + KEY
        + "\", \"cost\": 1, \"client_address\": " + Json.write(address) + "}"));
    assertEquals(Optional.of(address), request.clientAddress());
    assertFalse(VerifyKeyRequest.of(KEY).toJson().contains("client_address"));
    assertEquals(Optional.empty(), request.clientAddress(null).clientAddress());
  }

  @ParameterizedTest
  @ValueSource(strings = {"", "a b", "caf\u00e9", "tab\t", "del\u007f", "LONG"})
  void aBadClientAddressIsRefusedNamingTheField(String given) {
    String address = "LONG".equals(given) ? "z".repeat(129) : given;
    assertEquals(Optional.of("client_address"), assertThrows(InvalidRequestException.class,
        () -> VerifyKeyRequest.of(KEY).clientAddress(address)).field());
  }

  @Test
  void mistakesNameTheFieldAndNothingShowsTheSecrets() {
    assertEquals(Optional.of("key"), assertThrows(InvalidRequestException.class,
        () -> VerifyKeyRequest.of("")).field());
    assertEquals(Optional.of("cost"), assertThrows(InvalidRequestException.class,
        () -> VerifyKeyRequest.of(KEY).cost(-1)).field());
    assertEquals(Optional.of("limits"), assertThrows(InvalidRequestException.class,
        () -> VerifyKeyRequest.of(KEY).limits("a", null)).field());
    assertThrows(IllegalArgumentException.class, () -> RateLimiterClient.builder().rootKey(" "));
    RateLimiterClient.Builder builder = client("localhost:8080");
    for (String text : List.of(builder.toString(), builder.build().toString(),
        VerifyKeyRequest.of(KEY).toString())) {
      assertFalse(text.contains(ROOT) || text.contains(KEY), text);
    }
  }
}
