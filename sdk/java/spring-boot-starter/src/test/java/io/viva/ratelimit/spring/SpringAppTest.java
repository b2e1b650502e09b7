package io.viva.ratelimit.spring;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.viva.ratelimit.RateLimiterClient;
import io.viva.ratelimit.spring.app.DemoApplication;
import io.viva.ratelimit.testing.SidecarProcess;
import io.viva.ratelimit.testing.TestRules;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.util.Optional;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;
import org.springframework.beans.factory.annotation.Autowired;
import org.springframework.boot.test.context.SpringBootTest;
import org.springframework.core.env.Environment;
import org.springframework.test.context.DynamicPropertyRegistry;
import org.springframework.test.context.DynamicPropertySource;

/**
 * A real Spring Boot application on a random port, configured only by properties, in front of a
 * real sidecar: the (limit+1)-th request of an identifier is refused.
 */
@SpringBootTest(classes = DemoApplication.class,
    webEnvironment = SpringBootTest.WebEnvironment.RANDOM_PORT,
    properties = {"viva.ratelimit.filter.namespace=api_requests", "viva.ratelimit.timeout=5s",
        "viva.ratelimit.filter.url-patterns=/hello"})
class SpringAppTest {
  static SidecarProcess sidecar;

  @DynamicPropertySource
  static void sidecarEndpoint(DynamicPropertyRegistry registry) {
    sidecar = SidecarProcess.start(TestRules.write());
    // host:port, as in the other SDKs' examples
    registry.add("viva.ratelimit.endpoint", () -> "127.0.0.1:" + sidecar.httpPort());
  }

  @AfterAll
  static void stop() {
    if (sidecar != null) {
      sidecar.close();
    }
  }

  @Autowired
  Environment environment;

  @Autowired
  RateLimiterClient client;

  private final HttpClient http = HttpClient.newHttpClient();

  HttpResponse<String> get(String path, String user) throws Exception {
    HttpRequest.Builder request = HttpRequest.newBuilder(URI.create("http://127.0.0.1:"
        + environment.getProperty("local.server.port") + path));
    if (user != null) {
      request.header("X-User", user);
    }
    return http.send(request.build(), HttpResponse.BodyHandlers.ofString());
  }

  @Test
  void theRequestAfterTheLimitIsRefused() throws Exception {
    for (int i = 1; i <= 3; i++) {
      HttpResponse<String> ok = get("/hello", "spring-user");
      assertEquals(200, ok.statusCode());
      assertEquals("ok", ok.body());
      assertEquals(Optional.of("\"identifier\";q=3;w=3600"),
          ok.headers().firstValue("RateLimit-Policy"));
      assertEquals(Optional.of(String.valueOf(3 - i)),
          ok.headers().firstValue("X-RateLimit-Remaining"));
      assertTrue(ok.headers().firstValue("Retry-After").isEmpty());
    }
    HttpResponse<String> refused = get("/hello", "spring-user");
    assertEquals(429, refused.statusCode());
    long retryAfter = Long.parseLong(refused.headers().firstValue("Retry-After").orElseThrow());
    assertTrue(retryAfter >= 1 && retryAfter <= 3600, "Retry-After " + retryAfter);
    assertTrue(refused.headers().firstValue("RateLimit").orElseThrow()
        .matches("\"identifier\";r=0;t=[0-9]+"));
    assertEquals("{\"error\": \"rate limit exceeded\", \"retry_after_seconds\": " + retryAfter
        + "}", refused.body());
    assertTrue(refused.headers().firstValue("Content-Type").orElseThrow()
        .startsWith("application/json"));
    assertEquals(200, get("/hello", "another-user").statusCode(), "budgets are per identifier");
  }

  @Test
  void requestsWithoutIdentifierOrOutsideThePatternsAreNotChecked() throws Exception {
    for (int i = 0; i < 5; i++) {
      HttpResponse<String> anonymous = get("/hello", null);
      assertEquals(200, anonymous.statusCode());
      assertTrue(anonymous.headers().firstValue("RateLimit").isEmpty());
      HttpResponse<String> health = get("/health", "health-user");
      assertEquals(200, health.statusCode());
      assertTrue(health.headers().firstValue("RateLimit").isEmpty());
    }
  }

  @Test
  void theClientBeanIsConfiguredFromProperties() {
    assertEquals(URI.create(sidecar.httpUrl()), client.endpoint());
    assertEquals(java.time.Duration.ofSeconds(5), client.timeout());
    assertTrue(client.allow("bean-user", "api_requests"));
  }
}
