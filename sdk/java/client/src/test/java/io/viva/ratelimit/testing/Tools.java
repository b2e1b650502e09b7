package io.viva.ratelimit.testing;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Optional;
import org.junit.jupiter.api.Assertions;
import org.junit.jupiter.api.Assumptions;

/**
 * Where the real servers of the tests come from, and what happens when one is missing: under
 * {@code CI} the test fails, on a developer's machine it is skipped with the reason.
 */
public final class Tools {
  private Tools() {}

  /** The repository's root: the first parent of the working directory with sidecar/ in it. */
  public static Path repositoryRoot() {
    Path dir = Path.of("").toAbsolutePath();
    for (Path p = dir; p != null; p = p.getParent()) {
      if (Files.isDirectory(p.resolve("sidecar")) && Files.exists(p.resolve("pyproject.toml"))) {
        return p;
      }
    }
    throw new IllegalStateException("no repository root above " + dir);
  }

  /** {@code VIVA_RATELIMIT_BIN}, else the repository's {@code .venv/bin/viva-ratelimit}. */
  public static Path sidecarBinary() {
    String configured = System.getenv("VIVA_RATELIMIT_BIN");
    Path binary = configured != null && !configured.isEmpty()
        ? Path.of(configured) : repositoryRoot().resolve(".venv/bin/viva-ratelimit");
    if (!Files.isExecutable(binary)) {
      missing("the sidecar executable " + binary + " (set VIVA_RATELIMIT_BIN, or run "
          + "./scripts/test once to create .venv)");
    }
    return binary;
  }

  /** {@code VIVA_REDIS_SERVER}, else {@code redis-server} from the PATH. */
  public static Path redisBinary() {
    String configured = System.getenv("VIVA_REDIS_SERVER");
    Optional<Path> found = configured != null && !configured.isEmpty()
        ? Optional.of(Path.of(configured)) : onPath("redis-server");
    if (found.isEmpty() || !Files.isExecutable(found.get())) {
      missing("redis-server (set VIVA_REDIS_SERVER or put it on the PATH)");
    }
    return found.orElseThrow();
  }

  static Optional<Path> onPath(String name) {
    String path = System.getenv().getOrDefault("PATH", "");
    for (String dir : path.split(java.io.File.pathSeparator)) {
      Path candidate = Path.of(dir, name);
      if (!dir.isEmpty() && Files.isExecutable(candidate)) {
        return Optional.of(candidate);
      }
    }
    return Optional.empty();
  }

  /** A needed binary is absent: fail under CI, skip elsewhere. */
  public static void missing(String what) {
    String ci = System.getenv("CI");
    if (ci != null && !ci.isEmpty() && !ci.equalsIgnoreCase("false")) {
      Assertions.fail(what + " is required in CI but was not found");
    }
    Assumptions.abort(what + " not found");
  }

  /** A loopback port nothing listens on right now. */
  public static int freePort() {
    try (ServerSocket socket = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
      return socket.getLocalPort();
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  /** Removes a directory and what it holds; what cannot be removed is left to the OS. */
  public static void deleteTree(Path dir) {
    try (java.util.stream.Stream<Path> paths = Files.walk(dir)) {
      paths.sorted(java.util.Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
    } catch (IOException e) {
      // a temp directory: the OS cleans it up
    }
  }

  /** An http URL where nothing listens: every connection is refused. */
  public static String closedEndpoint() {
    return "http://127.0.0.1:" + freePort();
  }
}
