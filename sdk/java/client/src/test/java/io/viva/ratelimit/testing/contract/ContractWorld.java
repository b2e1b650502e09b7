package io.viva.ratelimit.testing.contract;

import io.viva.ratelimit.JsonAccess;
import io.viva.ratelimit.testing.RedisProcess;
import io.viva.ratelimit.testing.SidecarProcess;
import io.viva.ratelimit.testing.SilentServer;
import io.viva.ratelimit.testing.Tools;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.SecureRandom;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The processes the vectors need, started once per test class on first use and stopped by
 * {@link #close()}: a redis-server, one sidecar per profile (as contract.json says to start
 * it), the silent server.
 */
public final class ContractWorld implements AutoCloseable {
  private static final Pattern LABEL = Pattern.compile("(\\w+)=\"((?:[^\"\\\\]|\\\\.)*)\"");

  final Contract contract;
  /** The run's root key ({root_key}): the full-mode sidecars register it at start-up. */
  final String rootKey = "vroot_contract_" + HexFormat.of().formatHex(randomBytes(16));
  private RedisProcess redis;
  private final Map<String, SidecarProcess> sidecars = new HashMap<>();
  private final List<Path> dataDirs = new ArrayList<>();
  private SilentServer silent;
  private final HttpClient http = HttpClient.newBuilder()
      .connectTimeout(Duration.ofSeconds(5)).build();

  public ContractWorld(Contract contract) {
    this.contract = contract;
  }

  /** The sidecar of {@code profile}, started on first use. */
  public synchronized SidecarProcess sidecar(String profile) {
    SidecarProcess running = sidecars.get(profile);
    if (running == null) {
      running = startSidecar(profile);
      sidecars.put(profile, running);
    }
    return running;
  }

  public synchronized SilentServer silentServer() {
    if (silent == null) {
      silent = new SilentServer();
    }
    return silent;
  }

  private SidecarProcess startSidecar(String profile) {
    Map<String, Object> sidecar = contract.sidecar();
    Map<String, Object> spec = Contract.object(
        Contract.object(sidecar.get("profiles"), "profiles").get(profile), "profile " + profile);
    Map<String, String> values = new HashMap<>();
    values.put("rules", contract.root.resolve((String) contract.doc.get("rules"))
        .toAbsolutePath().toString());
    values.put("plans", contract.root.resolve((String) contract.doc.get("plans"))
        .toAbsolutePath().toString());
    values.put("data_dir", dataDir().toString());
    values.put("root_key", rootKey);
    int httpPort = Tools.freePort();
    values.put("http_port", String.valueOf(httpPort));
    values.put("grpc_port", String.valueOf(Tools.freePort()));
    values.put("debug_port", String.valueOf(Tools.freePort()));
    values.put("closed_port", String.valueOf(Tools.freePort()));
    if (Boolean.TRUE.equals(spec.get("needs_redis"))) {
      values.put("redis_port", String.valueOf(redis().port()));
    }
    List<String> args = new ArrayList<>();
    for (Object arg : (List<?>) sidecar.get("args")) {
      args.add(fill((String) arg, values));
    }
    Map<String, String> env = new LinkedHashMap<>();
    Contract.object(sidecar.get("env"), "env").forEach((k, v) -> env.put(k, fill((String) v,
        values)));
    Contract.object(spec.get("env"), "env").forEach((k, v) -> env.put(k, fill((String) v,
        values)));
    return SidecarProcess.launch(args, env, httpPort, !profile.equals("store_down"));
  }

  private Path dataDir() {
    try {
      Path dir = Files.createTempDirectory("viva-contract-");
      dataDirs.add(dir);
      return dir.toAbsolutePath();
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  private static byte[] randomBytes(int n) {
    byte[] out = new byte[n];
    new SecureRandom().nextBytes(out);
    return out;
  }

  /**
   * A vector's setup on {@code sidecar}: each admin call in order, with the run's root key; the
   * string fields of the answers saved as {@code NAME.FIELD} (sdk/contract/README.md, "Setup").
   */
  public Map<String, String> setup(SidecarProcess sidecar, List<?> requests) {
    Map<String, String> saved = new HashMap<>();
    for (Object raw : requests) {
      Map<String, Object> request = Contract.object(Contract.withSaved(raw, saved), "setup");
      Contract.checkKeys(request, Contract.SETUP_KEYS, "setup");
      String body = request.containsKey("body") ? JsonAccess.write(request.get("body")) : null;
      HttpRequest.Builder builder = HttpRequest.newBuilder(URI.create(sidecar.httpUrl()
              + request.get("path")))
          .timeout(Duration.ofSeconds(10))
          .header("Authorization", "Bearer " + rootKey)
          .header("Content-Type", "application/json")
          .method((String) request.get("method"), body == null
              ? HttpRequest.BodyPublishers.noBody() : HttpRequest.BodyPublishers.ofString(body));
      HttpResponse<String> response = send(builder.build());
      if (response.statusCode() / 100 != 2) {
        throw new IllegalStateException("setup " + request.get("method") + " "
            + request.get("path") + ": HTTP " + response.statusCode() + " " + response.body());
      }
      if (request.get("save") instanceof String name) {
        Contract.object(JsonAccess.parse(response.body()), "answer").forEach((field, value) -> {
          if (value instanceof String text) {
            saved.put(name + "." + field, text);
          }
        });
      }
    }
    return saved;
  }

  private HttpResponse<String> send(HttpRequest request) {
    try {
      return http.send(request, HttpResponse.BodyHandlers.ofString());
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException(e);
    }
  }

  private RedisProcess redis() {
    if (redis == null) {
      redis = RedisProcess.start();
    }
    return redis;
  }

  private static String fill(String template, Map<String, String> values) {
    String out = template;
    for (Map.Entry<String, String> e : values.entrySet()) {
      out = out.replace("{" + e.getKey() + "}", e.getValue());
    }
    if (out.matches(".*\\{[a-z_]+\\}.*")) {
      throw new IllegalStateException("unknown placeholder in '" + template + "'");
    }
    return out;
  }

  /** The sidecar's request counter: the samples of the configured metric and labels, summed. */
  public double requestCount(SidecarProcess sidecar) {
    Map<String, Object> spec = Contract.object(contract.sidecar().get("request_counter"),
        "request_counter");
    String text;
    try {
      text = http.send(HttpRequest.newBuilder(URI.create(sidecar.httpUrl() + spec.get("path")))
          .timeout(Duration.ofSeconds(5)).build(), HttpResponse.BodyHandlers.ofString()).body();
    } catch (IOException e) {
      throw new IllegalStateException("cannot read the sidecar's metrics", e);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException(e);
    }
    String metric = (String) spec.get("metric");
    Map<String, Object> wanted = Contract.object(spec.get("labels"), "labels");
    double sum = 0;
    for (String line : text.split("\n")) {
      if (line.startsWith(metric + "{") && labelsMatch(line, wanted)) {
        sum += Double.parseDouble(line.substring(line.lastIndexOf(' ') + 1));
      }
    }
    return sum;
  }

  private static boolean labelsMatch(String line, Map<String, Object> wanted) {
    Map<String, String> labels = new HashMap<>();
    Matcher m = LABEL.matcher(line.substring(line.indexOf('{'), line.lastIndexOf('}') + 1));
    while (m.find()) {
      labels.put(m.group(1), m.group(2));
    }
    for (Map.Entry<String, Object> w : wanted.entrySet()) {
      if (!((List<?>) w.getValue()).contains(labels.get(w.getKey()))) {
        return false;
      }
    }
    return true;
  }

  @Override
  public synchronized void close() {
    sidecars.values().forEach(SidecarProcess::close);
    sidecars.clear();
    if (silent != null) {
      silent.close();
    }
    if (redis != null) {
      redis.close();
    }
    for (Path dir : dataDirs) {
      Tools.deleteTree(dir);
    }
    dataDirs.clear();
  }
}
