package io.viva.ratelimit.testing;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/**
 * A real sidecar process, {@code viva-ratelimit serve}, on free loopback ports with the given
 * rules directory and environment (e.g. {@code REDIS_URL} for the Redis store).
 */
public final class SidecarProcess implements AutoCloseable {
  private static final Duration START_TIMEOUT = Duration.ofSeconds(60);

  private final Process process;
  private final Path log;
  private final int httpPort;

  private SidecarProcess(Process process, Path log, int httpPort) {
    this.process = process;
    this.log = log;
    this.httpPort = httpPort;
  }

  /** Start it on the memory store and wait until /healthcheck answers. */
  public static SidecarProcess start(Path rules) {
    return start(rules, Map.of());
  }

  /** Start it with {@code env} over the defaults (loopback only) and wait until it is healthy. */
  public static SidecarProcess start(Path rules, Map<String, String> env) {
    int http = Tools.freePort();
    List<String> args = List.of("serve", "--config", rules.toString(), "--http-port",
        String.valueOf(http), "--grpc-port", String.valueOf(Tools.freePort()),
        "--debug-port", String.valueOf(Tools.freePort()));
    Map<String, String> environment = new LinkedHashMap<>();
    environment.put("HOST", "127.0.0.1");
    environment.put("GRPC_HOST", "127.0.0.1");
    environment.put("DEBUG_HOST", "127.0.0.1");
    environment.put("LOG_LEVEL", "info");
    environment.put("VIVA_SHUTDOWN_GRACE", "1s");
    environment.putAll(env);
    return launch(args, environment, http, true);
  }

  /**
   * Start the executable with exactly {@code args} and {@code env} (over the inherited
   * environment); wait until {@code httpPort} accepts connections, and with {@code awaitHealthy}
   * until {@code /healthcheck} answers 200.
   */
  public static SidecarProcess launch(List<String> args, Map<String, String> env, int httpPort,
      boolean awaitHealthy) {
    List<String> command = new ArrayList<>();
    command.add(Tools.sidecarBinary().toString());
    command.addAll(args);
    try {
      Path log = Files.createTempFile("viva-sidecar-", ".log");
      ProcessBuilder builder = new ProcessBuilder(command)
          .redirectErrorStream(true)
          .redirectOutput(log.toFile());
      builder.environment().putAll(env);
      SidecarProcess sidecar = new SidecarProcess(builder.start(), log, httpPort);
      sidecar.await(awaitHealthy);
      return sidecar;
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  public String httpUrl() {
    return "http://127.0.0.1:" + httpPort;
  }

  public int httpPort() {
    return httpPort;
  }

  /** What the process wrote so far (for failure messages). */
  public String log() {
    try {
      return Files.readString(log, StandardCharsets.UTF_8);
    } catch (IOException e) {
      return "(no log: " + e + ")";
    }
  }

  private void await(boolean healthy) {
    HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(1)).build();
    HttpRequest health = HttpRequest.newBuilder(URI.create(httpUrl() + "/healthcheck"))
        .timeout(Duration.ofSeconds(2)).build();
    long deadline = System.nanoTime() + START_TIMEOUT.toNanos();
    while (System.nanoTime() < deadline) {
      if (!process.isAlive()) {
        throw new IllegalStateException("the sidecar exited with " + process.exitValue()
            + " before it was healthy:\n" + log());
      }
      try {
        int status = http.send(health, HttpResponse.BodyHandlers.discarding()).statusCode();
        if (status == 200 || !healthy) {
          return;
        }
      } catch (IOException e) {
        // not listening yet
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        break;
      }
      pause(50);
    }
    close();
    throw new IllegalStateException("the sidecar was not ready within " + START_TIMEOUT
        + ":\n" + log());
  }

  static void pause(long millis) {
    try {
      Thread.sleep(millis);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }

  /** SIGTERM, then SIGKILL if it has not stopped within 10 s. */
  @Override
  public void close() {
    process.destroy();
    try {
      if (!process.waitFor(10, TimeUnit.SECONDS)) {
        process.destroyForcibly().waitFor(5, TimeUnit.SECONDS);
      }
    } catch (InterruptedException e) {
      process.destroyForcibly();
      Thread.currentThread().interrupt();
    }
    try {
      Files.deleteIfExists(log);
    } catch (IOException e) {
      // a temp file: the OS cleans it up
    }
  }
}
