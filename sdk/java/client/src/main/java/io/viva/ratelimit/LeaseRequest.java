package io.viva.ratelimit;

import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.function.Consumer;

/**
 * What lease to take: a slot of the concurrency limit of an {@code identifier} (or of each of
 * several {@code descriptors}, all or none) in a {@code namespace}, held {@code ttl} unless
 * renewed (default and most: the rule's {@code lease_ttl}). {@link RateLimiterClient#lease}
 * also reads how to keep it: {@code renewEvery} (default: a third of its time to live) and
 * {@code onLost}. Immutable; mistakes that cannot be right throw
 * {@link InvalidRequestException} naming the field.
 *
 * <pre>{@code
 * LeaseRequest.of("user_123", "ws").ttl(Duration.ofSeconds(30)).onLost(lease -> socket.close())
 * }</pre>
 */
public final class LeaseRequest {
  private final CheckRequest target;
  private final Duration ttl;
  private final Duration renewEvery;
  private final Consumer<Lease> onLost;

  private LeaseRequest(CheckRequest target, Duration ttl, Duration renewEvery,
      Consumer<Lease> onLost) {
    if (ttl != null && (ttl.isNegative() || ttl.isZero())) {
      throw new InvalidRequestException("ttl must be a positive duration, not " + ttl, "ttl");
    }
    if (renewEvery != null && (renewEvery.isNegative() || renewEvery.isZero())) {
      throw new IllegalArgumentException("renewEvery must be a positive duration, not "
          + renewEvery);
    }
    this.target = target;
    this.ttl = ttl;
    this.renewEvery = renewEvery;
    this.onLost = onLost;
  }

  /** A slot of {@code identifier}'s concurrency limit in {@code namespace}. */
  public static LeaseRequest of(String identifier, String namespace) {
    return new LeaseRequest(new CheckRequest(namespace, identifier, null, 1), null, null, null);
  }

  /** A slot of each descriptor's concurrency limit, all of them or none. */
  public static LeaseRequest ofDescriptors(String namespace, List<Descriptor> descriptors) {
    return new LeaseRequest(new CheckRequest(namespace, null, descriptors, 1), null, null, null);
  }

  public static LeaseRequest ofDescriptors(String namespace, Descriptor... descriptors) {
    return ofDescriptors(namespace, List.of(descriptors));
  }

  /** How long the lease holds unless renewed: how long a dead holder keeps its slot. */
  public LeaseRequest ttl(Duration newTtl) {
    return new LeaseRequest(target, Objects.requireNonNull(newTtl, "ttl"), renewEvery, onLost);
  }

  /** {@link RateLimiterClient#lease} renews at this interval instead of a third of the ttl. */
  public LeaseRequest renewEvery(Duration every) {
    return new LeaseRequest(target, ttl, Objects.requireNonNull(every, "renewEvery"), onLost);
  }

  /** Called (on a thread of the client's) when a lease of {@link RateLimiterClient#lease} is
   *  lost: see {@link Lease#lost()}. */
  public LeaseRequest onLost(Consumer<Lease> callback) {
    return new LeaseRequest(target, ttl, renewEvery, Objects.requireNonNull(callback, "onLost"));
  }

  public String namespace() {
    return target.namespace();
  }

  /** Empty when the lease is asked for descriptors. */
  public Optional<String> identifier() {
    return Optional.ofNullable(target.identifier());
  }

  /** Empty when the lease is asked for an identifier. */
  public List<Descriptor> descriptors() {
    return target.descriptors() == null ? List.of() : target.descriptors();
  }

  public Optional<Duration> ttl() {
    return Optional.ofNullable(ttl);
  }

  public Optional<Duration> renewEvery() {
    return Optional.ofNullable(renewEvery);
  }

  public Optional<Consumer<Lease>> onLost() {
    return Optional.ofNullable(onLost);
  }

  /** The JSON body of POST /v1/leases. */
  String toJson() {
    Map<String, Object> body = target.body();
    body.remove("hits");
    if (ttl != null) {
      body.put("ttl", ttl.toNanos() / 1e9);
    }
    return Json.write(body);
  }

  @Override
  public String toString() {
    return "LeaseRequest{namespace=" + namespace() + ", identifier=" + target.identifier()
        + ", descriptors=" + descriptors().size() + ", ttl=" + ttl + "}";
  }
}
