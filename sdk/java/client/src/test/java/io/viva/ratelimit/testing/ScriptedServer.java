package io.viva.ratelimit.testing;

import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.io.OutputStream;
import java.io.UncheckedIOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.util.ArrayDeque;
import java.util.Deque;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * A real HTTP server (the JDK's) answering from a script: each request takes the next step, a
 * status with a JSON body, optionally after a pause. For what a real sidecar cannot be made to
 * do on cue: answer 503 exactly twice, or hang on the first request only.
 */
public final class ScriptedServer implements AutoCloseable {
  /** One answer: {@code status} and {@code body} after {@code delayMillis}. */
  public record Step(int status, String body, long delayMillis) {
    public static Step ok() {
      return new Step(200, "{\"allowed\": true, \"limit\": null}", 0);
    }

    public static Step status(int status) {
      return new Step(status, "{\"error\": \"store down\", \"field\": null}", 0);
    }
  }

  private final HttpServer server;
  private final Deque<Step> steps;
  private final AtomicInteger calls = new AtomicInteger();

  public ScriptedServer(List<Step> script) {
    this(0, script);
  }

  /** On a given port (0: any free one). */
  public ScriptedServer(int port, List<Step> script) {
    steps = new ArrayDeque<>(script);
    try {
      server = HttpServer.create(new InetSocketAddress(InetAddress.getLoopbackAddress(), port), 16);
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
    server.setExecutor(java.util.concurrent.Executors.newCachedThreadPool());
    server.createContext("/", exchange -> {
      calls.incrementAndGet();
      exchange.getRequestBody().readAllBytes();
      Step step;
      synchronized (steps) {
        step = steps.isEmpty() ? new Step(500, "{\"error\": \"script ran out\"}", 0)
            : steps.poll();
      }
      SidecarProcess.pause(step.delayMillis());
      byte[] body = step.body().getBytes(StandardCharsets.UTF_8);
      exchange.getResponseHeaders().set("Content-Type", "application/json");
      exchange.sendResponseHeaders(step.status(), body.length);
      try (OutputStream out = exchange.getResponseBody()) {
        out.write(body);
      } catch (IOException e) {
        // the client gave up waiting: that is what some tests want
      }
    });
    server.start();
  }

  public String url() {
    return "http://127.0.0.1:" + server.getAddress().getPort();
  }

  /** Requests received so far. */
  public int calls() {
    return calls.get();
  }

  @Override
  public void close() {
    server.stop(0);
    ((java.util.concurrent.ExecutorService) server.getExecutor()).shutdownNow();
  }
}
