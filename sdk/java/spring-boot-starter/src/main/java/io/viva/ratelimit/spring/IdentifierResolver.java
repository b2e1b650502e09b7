package io.viva.ratelimit.spring;

import jakarta.servlet.http.HttpServletRequest;

/**
 * Who a request is charged to: a user id, an API key, the client's address (the default).
 * Returning null (or an empty string) lets the request through unchecked: health checks,
 * internal calls, anonymous requests you limit elsewhere.
 *
 * <pre>{@code
 * @Bean
 * IdentifierResolver identifierResolver() {
 *   return request -> request.getUserPrincipal() != null
 *       ? "user:" + request.getUserPrincipal().getName() : request.getRemoteAddr();
 * }
 * }</pre>
 */
@FunctionalInterface
public interface IdentifierResolver {
  String resolve(HttpServletRequest request);

  /** The client's address as the container sees it (behind a proxy, enable
   *  {@code server.forward-headers-strategy} so that it is the client's). */
  static IdentifierResolver remoteAddress() {
    return HttpServletRequest::getRemoteAddr;
  }
}
