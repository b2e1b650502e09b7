package io.viva.ratelimit.spring;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.viva.ratelimit.spring.app.DemoApplication;
import io.viva.ratelimit.testing.Tools;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import org.junit.jupiter.api.Test;
import org.springframework.beans.factory.annotation.Autowired;
import org.springframework.boot.test.context.SpringBootTest;
import org.springframework.core.env.Environment;
import org.springframework.test.context.DynamicPropertyRegistry;
import org.springframework.test.context.DynamicPropertySource;

/** The same application with the sidecar out of reach and failure-mode closed: 503, quickly. */
@SpringBootTest(classes = DemoApplication.class,
    webEnvironment = SpringBootTest.WebEnvironment.RANDOM_PORT,
    properties = {"viva.ratelimit.filter.namespace=api_requests",
        "viva.ratelimit.failure-mode=closed", "viva.ratelimit.retry.attempts=2",
        "viva.ratelimit.retry.backoff=10ms", "viva.ratelimit.timeout=300ms"})
class SpringAppFailClosedTest {

  @DynamicPropertySource
  static void closedEndpoint(DynamicPropertyRegistry registry) {
    registry.add("viva.ratelimit.endpoint", Tools::closedEndpoint);
  }

  @Autowired
  Environment environment;

  @Test
  void anUnreachableSidecarFailsClosed() throws Exception {
    URI hello = URI.create("http://127.0.0.1:" + environment.getProperty("local.server.port")
        + "/hello");
    HttpClient http = HttpClient.newHttpClient();
    // Without an identifier the filter lets the request through: this one only warms up the
    // application (its first request initialises Spring MVC), so that the next one measures
    // the filter alone.
    assertEquals(200, http.send(HttpRequest.newBuilder(hello).build(),
        HttpResponse.BodyHandlers.ofString()).statusCode());
    HttpRequest request = HttpRequest.newBuilder(hello).header("X-User", "someone").build();
    long started = System.nanoTime();
    HttpResponse<String> response = http.send(request, HttpResponse.BodyHandlers.ofString());
    long elapsedMs = (System.nanoTime() - started) / 1_000_000;
    assertEquals(503, response.statusCode());
    assertEquals("{\"error\": \"rate limiter unavailable\"}", response.body());
    assertTrue(response.headers().firstValue("RateLimit").isEmpty());
    assertTrue(elapsedMs < 3000, "took " + elapsedMs + " ms");
  }
}
