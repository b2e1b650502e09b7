package io.viva.ratelimit.spring;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.viva.ratelimit.FailureMode;
import io.viva.ratelimit.RateLimiterClient;
import io.viva.ratelimit.RetryPolicy;
import java.net.URI;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.springframework.boot.autoconfigure.AutoConfigurations;
import org.springframework.boot.test.context.runner.ApplicationContextRunner;
import org.springframework.boot.test.context.runner.WebApplicationContextRunner;
import org.springframework.boot.web.servlet.FilterRegistrationBean;

/** Which beans the auto-configuration makes from which properties (no server started). */
class AutoConfigurationTest {
  private final WebApplicationContextRunner web = new WebApplicationContextRunner()
      .withConfiguration(AutoConfigurations.of(VivaRateLimitAutoConfiguration.class));

  @Test
  void theClientComesFromProperties() {
    web.withPropertyValues("viva.ratelimit.endpoint=sidecar:9090", "viva.ratelimit.timeout=250ms",
        "viva.ratelimit.failure-mode=closed", "viva.ratelimit.retry.attempts=5",
        "viva.ratelimit.retry.backoff=20ms", "viva.ratelimit.retry.max-backoff=200ms")
        .run(context -> {
          RateLimiterClient client = context.getBean(RateLimiterClient.class);
          assertEquals(URI.create("http://sidecar:9090"), client.endpoint());
          assertEquals(Duration.ofMillis(250), client.timeout());
          assertEquals(FailureMode.CLOSED, client.failureMode());
          assertEquals(new RetryPolicy(5, Duration.ofMillis(20), Duration.ofMillis(200)),
              client.retryPolicy());
          assertFalse(context.containsBean("vivaRateLimitFilter"), "no namespace, no filter");
        });
  }

  @Test
  void theDefaults() {
    web.run(context -> {
      RateLimiterClient client = context.getBean(RateLimiterClient.class);
      assertEquals(URI.create(RateLimiterClient.DEFAULT_ENDPOINT), client.endpoint());
      assertEquals(RateLimiterClient.DEFAULT_TIMEOUT, client.timeout());
      assertEquals(FailureMode.OPEN, client.failureMode());
      assertEquals(FailureMode.CLOSED, client.verifyFailureMode());
      assertFalse(client.hasRootKey());
      assertEquals(RetryPolicy.DEFAULT, client.retryPolicy());
    });
  }

  @Test
  void theRootKeyComesFromPropertiesAndIsNeverShown() {
    String root = "vroot_from_the_environment_0123456789abcdef";
    web.withPropertyValues("viva.ratelimit.root-key=" + root,
        "viva.ratelimit.verify-failure-mode=open")
        .run(context -> {
          RateLimiterClient client = context.getBean(RateLimiterClient.class);
          assertTrue(client.hasRootKey());
          assertEquals(FailureMode.OPEN, client.verifyFailureMode());
          assertFalse(client.toString().contains(root), client.toString());
        });
  }

  @Test
  void aNamespaceRegistersTheFilter() {
    web.withPropertyValues("viva.ratelimit.filter.namespace=api_requests",
        "viva.ratelimit.filter.url-patterns=/api/*,/v2/*", "viva.ratelimit.filter.order=-5")
        .run(context -> {
          FilterRegistrationBean<?> registration = context.getBean("vivaRateLimitFilter",
              FilterRegistrationBean.class);
          assertTrue(registration.getFilter() instanceof RateLimitFilter);
          assertEquals(List.of("/api/*", "/v2/*"), List.copyOf(registration.getUrlPatterns()));
          assertEquals(-5, registration.getOrder());
          assertTrue(context.containsBean("vivaIdentifierResolver"));
        });
  }

  @Test
  void theFilterCanBeTurnedOff() {
    web.withPropertyValues("viva.ratelimit.filter.namespace=api_requests",
        "viva.ratelimit.filter.enabled=false")
        .run(context -> assertFalse(context.containsBean("vivaRateLimitFilter")));
  }

  @Test
  void noFilterOutsideServletApplications() {
    new ApplicationContextRunner()
        .withConfiguration(AutoConfigurations.of(VivaRateLimitAutoConfiguration.class))
        .withPropertyValues("viva.ratelimit.filter.namespace=api_requests")
        .run(context -> {
          assertTrue(context.containsBean("vivaRateLimiterClient"));
          assertFalse(context.containsBean("vivaRateLimitFilter"));
        });
  }

  @Test
  void theApplicationsOwnBeansWin() {
    RateLimiterClient mine = RateLimiterClient.builder().endpoint("mine:1").build();
    IdentifierResolver resolver = request -> "always-the-same";
    web.withPropertyValues("viva.ratelimit.filter.namespace=api_requests")
        .withBean(RateLimiterClient.class, () -> mine)
        .withBean(IdentifierResolver.class, () -> resolver)
        .run(context -> {
          assertSame(mine, context.getBean(RateLimiterClient.class));
          assertSame(resolver, context.getBean(IdentifierResolver.class));
          assertFalse(context.containsBean("vivaIdentifierResolver"));
        });
  }

  @Test
  void badValuesNameTheProperty() {
    assertStartupFails("viva.ratelimit.endpoint: endpoint 'ftp://x'",
        "viva.ratelimit.endpoint=ftp://x");
    assertStartupFails("viva.ratelimit.timeout: timeout must be a positive duration",
        "viva.ratelimit.timeout=0s");
    assertStartupFails("viva.ratelimit.retry: RetryPolicy.attempts=0",
        "viva.ratelimit.retry.attempts=0");
    assertStartupFails("viva.ratelimit.root-key: rootKey must be a non-empty string",
        "viva.ratelimit.root-key= ");
    assertStartupFails("viva.ratelimit.filter.headers: 'draft' is not a header family; expected "
        + "one of ietf, x, retry-after", "viva.ratelimit.filter.namespace=api",
        "viva.ratelimit.filter.headers=ietf,draft");
    assertStartupFails("viva.ratelimit.filter: hits must be a whole number >= 0, not -1",
        "viva.ratelimit.filter.namespace=api", "viva.ratelimit.filter.hits=-1");
  }

  private void assertStartupFails(String message, String... properties) {
    web.withPropertyValues(properties).run(context -> {
      Throwable failure = context.getStartupFailure();
      assertTrue(failure != null, "started with " + List.of(properties));
      Throwable cause = failure;
      while (cause.getCause() != null && !(cause instanceof IllegalArgumentException
          && cause.getMessage().startsWith("viva.ratelimit"))) {
        cause = cause.getCause();
      }
      assertTrue(cause.getMessage().startsWith(message), cause.getMessage());
    });
  }
}
