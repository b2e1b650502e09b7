package io.viva.ratelimit.spring;

import io.viva.ratelimit.CheckRequest;
import io.viva.ratelimit.CheckResult;
import io.viva.ratelimit.HeaderFamily;
import io.viva.ratelimit.RateLimiterClient;
import jakarta.servlet.FilterChain;
import jakarta.servlet.ServletException;
import jakarta.servlet.http.HttpServletRequest;
import jakarta.servlet.http.HttpServletResponse;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.Map;
import java.util.Objects;
import java.util.Set;
import org.springframework.web.filter.OncePerRequestFilter;

/**
 * Checks every request with the sidecar before the application sees it.
 *
 * <ul>
 *   <li>allowed: the request goes on, and the rate-limit headers are added to the response;
 *   <li>refused: {@code 429 Too Many Requests} with {@code Retry-After}, the rate-limit headers
 *       and {@code {"error": "rate limit exceeded", "retry_after_seconds": N}};
 *   <li>the sidecar out of reach with {@code FailureMode.CLOSED}: {@code 503} and
 *       {@code {"error": "rate limiter unavailable"}} (with {@code OPEN} the request goes on).
 * </ul>
 *
 * <p>An identifier of null or "" lets the request through unchecked. Error and async dispatches
 * are not checked again (a request is charged once).
 */
public class RateLimitFilter extends OncePerRequestFilter {
  private final RateLimiterClient client;
  private final String namespace;
  private final IdentifierResolver identifier;
  private final long hits;
  private final Set<HeaderFamily> headers;

  public RateLimitFilter(RateLimiterClient client, String namespace,
      IdentifierResolver identifier, long hits, Set<HeaderFamily> headers) {
    this.client = Objects.requireNonNull(client, "client");
    this.namespace = Objects.requireNonNull(namespace, "namespace");
    this.identifier = Objects.requireNonNull(identifier, "identifier");
    this.hits = hits;
    this.headers = Set.copyOf(headers);
    CheckRequest.of("probe", namespace, hits); // refuse a bad namespace or hits now, not per call
  }

  public RateLimitFilter(RateLimiterClient client, String namespace,
      IdentifierResolver identifier) {
    this(client, namespace, identifier, 1, HeaderFamily.ALL);
  }

  @Override
  protected void doFilterInternal(HttpServletRequest request, HttpServletResponse response,
      FilterChain chain) throws ServletException, IOException {
    String who = identifier.resolve(request);
    if (who == null || who.isEmpty()) {
      chain.doFilter(request, response);
      return;
    }
    CheckResult result = client.check(CheckRequest.of(who, namespace, hits));
    if (result.allowed()) {
      addHeaders(result, response);
      chain.doFilter(request, response);
    } else if (result.error().isPresent()) {
      // FailureMode.CLOSED: the limiter could not be asked; not a rate-limit refusal.
      respond(response, HttpServletResponse.SC_SERVICE_UNAVAILABLE,
          "{\"error\": \"rate limiter unavailable\"}");
    } else {
      addHeaders(result, response);
      respond(response, 429, "{\"error\": \"rate limit exceeded\", \"retry_after_seconds\": "
          + result.retryAfterSeconds().orElse(1) + "}");
    }
  }

  private void addHeaders(CheckResult result, HttpServletResponse response) {
    for (Map.Entry<String, String> header : result.headers(headers)) {
      response.setHeader(header.getKey(), header.getValue());
    }
  }

  private static void respond(HttpServletResponse response, int status, String json)
      throws IOException {
    byte[] body = json.getBytes(StandardCharsets.UTF_8);
    response.setStatus(status);
    response.setContentType("application/json");
    response.setContentLength(body.length);
    response.getOutputStream().write(body);
  }
}
