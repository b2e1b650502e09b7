package io.viva.ratelimit;

import io.viva.ratelimit.testing.contract.Contract;
import io.viva.ratelimit.testing.contract.ContractRunner;
import io.viva.ratelimit.testing.contract.ContractWorld;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Assertions;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.TestFactory;

/**
 * Every client vector of sdk/contract against real sidecar processes (memory and Redis stores,
 * a store that is down, full mode), a closed port and a silent server; the verifyKey and lease
 * vectors through the blocking calls and through their Async twins. The middleware vectors run in the
 * Spring Boot starter's ContractMiddlewareTest, where the filter lives.
 */
class ContractTest {
  static final Contract CONTRACT = Contract.load();
  static final ContractWorld WORLD = new ContractWorld(CONTRACT);

  @AfterAll
  static void stop() {
    WORLD.close();
  }

  @TestFactory
  List<DynamicTest> clientVectors() {
    ContractRunner runner = new ContractRunner(WORLD, (client, settings) -> {
      throw new IllegalStateException("no middleware in the client module");
    });
    List<DynamicTest> tests = new ArrayList<>();
    for (Contract.Vector vector : CONTRACT.vectors()) {
      if (vector.isMiddleware()) {
        continue; // run by the starter module
      }
      List<String> profiles = CONTRACT.profiles(vector.target());
      boolean verifies = vector.steps().stream().anyMatch(s -> "verifyKey".equals(s.get("call"))
          || ContractRunner.LEASE_CALLS.contains(String.valueOf(s.get("call"))));
      for (String profile : profiles.isEmpty() ? java.util.Collections.<String>singletonList(null)
          : profiles) {
        String name = vector + (profile == null ? "" : " [" + profile + "]");
        tests.add(DynamicTest.dynamicTest(name, () -> runner.run(vector, profile)));
        if (verifies) { // verifyKeyAsync and the lease calls' Async twins too
          tests.add(DynamicTest.dynamicTest(name + " async", () -> runner.run(vector, profile,
              true)));
        }
      }
    }
    Assertions.assertFalse(tests.isEmpty(), "no client vector found");
    return tests;
  }
}
