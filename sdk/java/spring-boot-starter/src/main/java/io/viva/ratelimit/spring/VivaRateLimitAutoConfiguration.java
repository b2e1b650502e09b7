package io.viva.ratelimit.spring;

import io.viva.ratelimit.HeaderFamily;
import io.viva.ratelimit.RateLimiterClient;
import io.viva.ratelimit.RetryPolicy;
import java.util.EnumSet;
import java.util.Set;
import java.util.function.Supplier;
import org.springframework.beans.factory.ObjectProvider;
import org.springframework.boot.autoconfigure.AutoConfiguration;
import org.springframework.boot.autoconfigure.condition.ConditionalOnClass;
import org.springframework.boot.autoconfigure.condition.ConditionalOnMissingBean;
import org.springframework.boot.autoconfigure.condition.ConditionalOnProperty;
import org.springframework.boot.autoconfigure.condition.ConditionalOnWebApplication;
import org.springframework.boot.context.properties.EnableConfigurationProperties;
import org.springframework.boot.web.servlet.FilterRegistrationBean;
import org.springframework.context.annotation.Bean;
import org.springframework.context.annotation.Configuration;

/**
 * A {@link RateLimiterClient} from {@code viva.ratelimit.*} (unless the application defines
 * one), and in a servlet application with {@code viva.ratelimit.filter.namespace} set, the
 * {@link RateLimitFilter} with the application's {@link IdentifierResolver} (default: the
 * client's address). A bad value stops start-up with a message naming the property.
 */
@AutoConfiguration
@ConditionalOnClass(RateLimiterClient.class)
@EnableConfigurationProperties(VivaRateLimitProperties.class)
public class VivaRateLimitAutoConfiguration {

  @Bean
  @ConditionalOnMissingBean
  public RateLimiterClient vivaRateLimiterClient(VivaRateLimitProperties properties) {
    VivaRateLimitProperties.Retry retry = properties.getRetry();
    RateLimiterClient.Builder builder = RateLimiterClient.builder();
    property("viva.ratelimit.endpoint", () -> builder.endpoint(properties.getEndpoint()));
    property("viva.ratelimit.timeout", () -> builder.timeout(properties.getTimeout()));
    property("viva.ratelimit.failure-mode", () -> builder.failureMode(
        properties.getFailureMode()));
    property("viva.ratelimit.retry", () -> builder.retry(new RetryPolicy(retry.getAttempts(),
        retry.getBackoff(), retry.getMaxBackoff())));
    property("viva.ratelimit.verify-failure-mode", () -> builder.verifyFailureMode(
        properties.getVerifyFailureMode()));
    if (properties.getRootKey() != null) {
      property("viva.ratelimit.root-key", () -> builder.rootKey(properties.getRootKey()));
    }
    return builder.build();
  }

  /** The filter, in servlet applications that name a namespace. */
  @Configuration(proxyBeanMethods = false)
  @ConditionalOnWebApplication(type = ConditionalOnWebApplication.Type.SERVLET)
  @ConditionalOnClass(name = "jakarta.servlet.Filter")
  @ConditionalOnProperty(prefix = "viva.ratelimit.filter", name = "namespace")
  static class FilterConfiguration {

    @Bean
    @ConditionalOnMissingBean
    IdentifierResolver vivaIdentifierResolver() {
      return IdentifierResolver.remoteAddress();
    }

    @Bean
    @ConditionalOnProperty(prefix = "viva.ratelimit.filter", name = "enabled",
        matchIfMissing = true)
    @ConditionalOnMissingBean(name = "vivaRateLimitFilter")
    FilterRegistrationBean<RateLimitFilter> vivaRateLimitFilter(RateLimiterClient client,
        VivaRateLimitProperties properties, ObjectProvider<IdentifierResolver> identifier) {
      VivaRateLimitProperties.Filter filter = properties.getFilter();
      Set<HeaderFamily> families = property("viva.ratelimit.filter.headers", () -> {
        Set<HeaderFamily> chosen = EnumSet.noneOf(HeaderFamily.class);
        filter.getHeaders().forEach(label -> chosen.add(HeaderFamily.fromLabel(label)));
        return chosen;
      });
      RateLimitFilter rateLimitFilter = property("viva.ratelimit.filter", () ->
          new RateLimitFilter(client, filter.getNamespace(), identifier.getObject(),
              filter.getHits(), families));
      FilterRegistrationBean<RateLimitFilter> registration =
          new FilterRegistrationBean<>(rateLimitFilter);
      registration.setName("vivaRateLimitFilter");
      registration.setUrlPatterns(filter.getUrlPatterns());
      registration.setOrder(filter.getOrder());
      return registration;
    }
  }

  /** Runs {@code build}; an IllegalArgumentException becomes one naming {@code name}. */
  static <T> T property(String name, Supplier<T> build) {
    try {
      return build.get();
    } catch (IllegalArgumentException e) {
      throw new IllegalArgumentException(name + ": " + e.getMessage(), e);
    }
  }
}
