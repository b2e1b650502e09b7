package io.viva.ratelimit;

import java.net.URI;
import java.net.URISyntaxException;

/** The sidecar's HTTP address, given as a URL or, as in the other SDKs, as {@code host:port}. */
final class Endpoint {
  private Endpoint() {}

  /**
   * {@code http://host:port[/prefix]}, {@code https://…}, or {@code host:port} (then http). The
   * prefix, if any, is kept so that a sidecar behind a path-routing proxy can be reached.
   */
  static URI parse(String endpoint) {
    if (endpoint == null || endpoint.isBlank()) {
      throw new IllegalArgumentException("endpoint must be a URL like http://localhost:8080 or "
          + "host:port");
    }
    String text = endpoint.trim();
    if (!text.contains("://")) {
      text = "http://" + text;
    }
    URI uri;
    try {
      uri = new URI(text);
    } catch (URISyntaxException e) {
      throw new IllegalArgumentException("endpoint '" + endpoint + "' is not a URL: "
          + e.getMessage(), e);
    }
    String scheme = uri.getScheme();
    if (!"http".equalsIgnoreCase(scheme) && !"https".equalsIgnoreCase(scheme)) {
      throw new IllegalArgumentException("endpoint '" + endpoint + "': scheme '" + scheme
          + "' is not supported; expected http or https");
    }
    if (uri.getHost() == null || uri.getQuery() != null || uri.getFragment() != null) {
      throw new IllegalArgumentException("endpoint '" + endpoint + "' must be scheme://host[:port]"
          + "[/path], without query or fragment");
    }
    String path = uri.getRawPath() == null ? "" : uri.getRawPath().replaceAll("/+$", "");
    return URI.create(scheme.toLowerCase(java.util.Locale.ROOT) + "://" + uri.getRawAuthority()
        + path);
  }
}
