package io.viva.ratelimit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.viva.ratelimit.testing.CountingProxy;
import io.viva.ratelimit.testing.SidecarProcess;
import io.viva.ratelimit.testing.TestRules;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Optional;
import java.util.OptionalLong;
import java.util.concurrent.CompletionException;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInfo;

/** The client against a real sidecar process on the memory store. */
class RateLimiterClientTest {
  static final String NS = "api_requests";
  private static final AtomicInteger NAMES = new AtomicInteger();

  static SidecarProcess sidecar;
  static RateLimiterClient client;

  @BeforeAll
  static void start() {
    sidecar = SidecarProcess.start(TestRules.write());
    client = RateLimiterClient.builder().endpoint(sidecar.httpUrl())
        .timeout(Duration.ofSeconds(5)).build();
  }

  @AfterAll
  static void stop() {
    if (sidecar != null) {
      sidecar.close();
    }
  }

  /** An identifier no other test uses (the sidecar is shared). */
  static String user(TestInfo info) {
    return "user-" + info.getDisplayName().replaceAll("\\W", "") + "-" + NAMES.incrementAndGet();
  }

  @Test
  void allowThenRefuse(TestInfo info) {
    String user = user(info);
    List<Boolean> answers = new ArrayList<>();
    for (int i = 0; i < 5; i++) {
      answers.add(client.allow(user, NS));
    }
    assertEquals(List.of(true, true, true, false, false), answers);
  }

  @Test
  void checkGivesTheWholeResult(TestInfo info) {
    String user = user(info);
    CheckResult result = client.check(CheckRequest.of(user, NS, 2));
    assertTrue(result.allowed());
    assertEquals(OptionalLong.of(3), result.limit());
    assertEquals(OptionalLong.of(1), result.remaining());
    assertEquals(OptionalLong.of(3600), result.windowSeconds());
    assertEquals(Optional.of("identifier"), result.policy());
    assertEquals(OptionalLong.empty(), result.retryAfterSeconds());
    assertTrue(result.resetAt().orElseThrow().isAfter(Instant.now().minusSeconds(1)));
    long reset = result.resetAfterSeconds().orElseThrow();
    assertTrue(reset > 0 && reset <= 3600, "reset " + reset);
    assertTrue(result.error().isEmpty() && result.results().isEmpty());

    CheckResult refused = client.check(CheckRequest.of(user, NS, 2));
    assertFalse(refused.allowed());
    assertEquals(refused.resetAfterSeconds(), refused.retryAfterSeconds());
  }

  @Test
  void headersAreTheSidecarsOwn(TestInfo info) throws Exception {
    String user = user(info);
    for (int hits : new int[] {1, 5}) {
      String body = "{\"namespace\":\"api_requests\",\"identifier\":\"" + user + "\",\"hits\":"
          + hits + "}";
      HttpResponse<String> raw = HttpClient.newHttpClient().send(
          HttpRequest.newBuilder(URI.create(sidecar.httpUrl() + "/v1/check"))
              .POST(HttpRequest.BodyPublishers.ofString(body)).build(),
          HttpResponse.BodyHandlers.ofString());
      CheckResult peeked = client.peek(user, NS);
      List<String> expected = new ArrayList<>();
      for (String name : List.of("ratelimit-policy", "ratelimit", "x-ratelimit-limit",
          "x-ratelimit-remaining", "x-ratelimit-reset", "retry-after")) {
        raw.headers().firstValue(name).ifPresent(v -> expected.add(name + ": " + v));
      }
      List<String> actual = new ArrayList<>();
      for (Map.Entry<String, String> h : peeked.headers()) {
        actual.add(h.getKey().toLowerCase(Locale.ROOT) + ": " + h.getValue());
      }
      // The two answers may straddle a second: the seconds-to-reset may differ by one.
      assertEquals(withoutSeconds(expected), withoutSeconds(actual));
      List<Long> want = seconds(expected);
      List<Long> got = seconds(actual);
      assertEquals(want.size(), got.size());
      for (int i = 0; i < want.size(); i++) {
        assertTrue(Math.abs(want.get(i) - got.get(i)) <= 1, expected + " vs " + actual);
      }
      assertFalse(expected.isEmpty());
    }
  }

  private static final java.util.regex.Pattern SECONDS =
      java.util.regex.Pattern.compile("(?<=t=|reset: |retry-after: )[0-9]+");

  private static List<String> withoutSeconds(List<String> headers) {
    return headers.stream().map(h -> SECONDS.matcher(h).replaceAll("N")).toList();
  }

  private static List<Long> seconds(List<String> headers) {
    List<Long> out = new ArrayList<>();
    for (String h : headers) {
      SECONDS.matcher(h).results().forEach(m -> out.add(Long.parseLong(m.group())));
    }
    return out;
  }

  @Test
  void headerFamiliesCanBeChosen(TestInfo info) {
    CheckResult result = client.check(CheckRequest.of(user(info), NS, 4));
    List<String> names = result.headers(java.util.EnumSet.of(HeaderFamily.RETRY_AFTER))
        .stream().map(Map.Entry::getKey).toList();
    assertEquals(List.of("Retry-After"), names);
  }

  @Test
  void reportAndPeek(TestInfo info) {
    String user = user(info);
    CheckResult reported = client.report(user, NS, 10);
    assertFalse(reported.allowed());
    assertEquals(OptionalLong.of(0), reported.remaining());
    assertFalse(client.peek(user, NS).allowed());
  }

  @Test
  void severalDescriptors(TestInfo info) {
    String user = user(info);
    CheckResult result = client.check(CheckRequest.ofDescriptors("shop", 1,
        Descriptor.of("user", user), Descriptor.of("route", "/" + user, "method", "POST"),
        Descriptor.of("other", "x")));
    List<String> each = result.results().stream()
        .map(r -> r.allowed() + " " + r.limit() + " " + r.policy()).toList();
    assertEquals(List.of("true OptionalLong[5] Optional[per_user]",
        "true OptionalLong[2] Optional[route.method]", "true OptionalLong.empty Optional.empty"),
        each);
    assertEquals(OptionalLong.of(2), result.limit());
    assertEquals(OptionalLong.of(1), result.remaining());
    assertTrue(result.headers().contains(Map.entry("X-RateLimit-Remaining", "1")));
  }

  @Test
  void namespaceWithoutRules(TestInfo info) {
    CheckResult result = client.check(CheckRequest.of(user(info), "no_rules_here"));
    assertTrue(result.allowed());
    assertTrue(result.limit().isEmpty());
    assertEquals(List.of(), result.headers());
  }

  @Test
  void unlimitedIdentifier() {
    CheckResult result = client.check(CheckRequest.of("vip", NS, 1000));
    assertTrue(result.allowed());
    assertTrue(result.limit().isEmpty());
  }

  @Test
  void theSidecarNamesTheBadField() {
    List<Descriptor> many = new ArrayList<>();
    for (int i = 0; i < 21; i++) {
      many.add(Descriptor.of("k", "v"));
    }
    InvalidRequestException tooMany = assertThrows(InvalidRequestException.class,
        () -> client.check(CheckRequest.ofDescriptors("shop", 1, many)));
    assertEquals(Optional.of("descriptors"), tooMany.field());
    InvalidRequestException hits = assertThrows(InvalidRequestException.class,
        () -> client.check(CheckRequest.of("u", NS, 10_000_000)));
    assertEquals(Optional.of("hits"), hits.field());
    assertTrue(hits.getMessage().contains("out of range"), hits.getMessage());
    InvalidRequestException emptyKey = assertThrows(InvalidRequestException.class,
        () -> client.check(CheckRequest.ofDescriptors("shop", 1, Descriptor.of("", "v"))));
    assertEquals(Optional.of("descriptors[0][0].key"), emptyKey.field());
  }

  @Test
  void obviousMistakesFailBeforeTheCall() {
    assertEquals("identifier", mistake(() -> CheckRequest.of("", NS)));
    assertEquals("identifier", mistake(() -> CheckRequest.of(null, NS)));
    assertEquals("namespace", mistake(() -> CheckRequest.of("u", "")));
    assertEquals("hits", mistake(() -> CheckRequest.of("u", NS, -1)));
    assertEquals("descriptors", mistake(
        () -> new CheckRequest(NS, "u", List.of(Descriptor.of("a", "b")), 1)));
    assertEquals("descriptors", mistake(() -> CheckRequest.ofDescriptors(NS, 1)));
    assertThrows(IllegalArgumentException.class, () -> Descriptor.of("a", "b", "c"));
  }

  private static String mistake(org.junit.jupiter.api.function.Executable call) {
    return assertThrows(InvalidRequestException.class, call).field().orElseThrow();
  }

  @Test
  void unicodeIdentifiersTravelIntact(TestInfo info) {
    String user = user(info) + "-é😀\"\\";
    assertTrue(client.allow(user, NS, 3));
    assertFalse(client.allow(user, NS));
    assertTrue(client.allow(user + "x", NS), "a different identifier has its own budget");
  }

  @Test
  void asyncTwin(TestInfo info) {
    String user = user(info);
    List<Boolean> answers = new ArrayList<>();
    for (int i = 0; i < 4; i++) {
      answers.add(client.allowAsync(user, NS).join());
    }
    assertEquals(List.of(true, true, true, false), answers);
    CheckResult reported = client.reportAsync(CheckRequest.of(user, "shop", 2)).join();
    assertTrue(reported.allowed() && reported.limit().isEmpty());
    CompletionException failed = assertThrows(CompletionException.class,
        () -> client.checkAsync(CheckRequest.of("u", NS, 10_000_000)).join());
    assertInstanceOf(InvalidRequestException.class, failed.getCause());
  }

  @Test
  void concurrentCallsShareTheClient(TestInfo info) {
    String user = user(info);
    List<java.util.concurrent.CompletableFuture<Boolean>> calls = new ArrayList<>();
    for (int i = 0; i < 20; i++) {
      calls.add(client.allowAsync(user, "shop"));
    }
    calls.forEach(java.util.concurrent.CompletableFuture::join);
    CheckResult after = client.check(CheckRequest.ofDescriptors("shop", 0,
        Descriptor.of("user", user)));
    assertEquals(OptionalLong.of(5), after.results().get(0).limit());
  }

  @Test
  void connectionsAreReused(TestInfo info) throws Exception {
    String user = user(info);
    try (CountingProxy proxy = new CountingProxy(sidecar.httpPort())) {
      RateLimiterClient fresh = RateLimiterClient.builder().endpoint(proxy.url())
          .timeout(Duration.ofSeconds(5)).build();
      for (int i = 0; i < 20; i++) {
        assertTrue(fresh.peek(user, NS).error().isEmpty());
      }
      assertEquals(1, proxy.accepted());
    }
  }

  @Test
  void hostPortEndpointsWork(TestInfo info) {
    RateLimiterClient bare = RateLimiterClient.builder()
        .endpoint("127.0.0.1:" + sidecar.httpPort()).build();
    assertTrue(bare.allow(user(info), NS));
    RateLimiterClient localhost = RateLimiterClient.builder()
        .endpoint("localhost:" + sidecar.httpPort()).build();
    assertTrue(localhost.check(CheckRequest.of(user(info), NS)).error().isEmpty());
  }
}
