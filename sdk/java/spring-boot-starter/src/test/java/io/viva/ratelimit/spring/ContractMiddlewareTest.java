package io.viva.ratelimit.spring;

import io.viva.ratelimit.HeaderFamily;
import io.viva.ratelimit.testing.contract.Contract;
import io.viva.ratelimit.testing.contract.ContractRunner;
import io.viva.ratelimit.testing.contract.ContractWorld;
import jakarta.servlet.Filter;
import jakarta.servlet.FilterChain;
import jakarta.servlet.ServletException;
import jakarta.servlet.ServletRequest;
import jakarta.servlet.ServletResponse;
import jakarta.servlet.http.HttpServlet;
import jakarta.servlet.http.HttpServletRequest;
import jakarta.servlet.http.HttpServletResponse;
import java.io.IOException;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import org.apache.catalina.Context;
import org.apache.catalina.LifecycleException;
import org.apache.catalina.startup.Tomcat;
import org.apache.tomcat.util.descriptor.web.FilterDef;
import org.apache.tomcat.util.descriptor.web.FilterMap;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Assertions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.TestFactory;

/**
 * Every middleware vector of sdk/contract: {@link RateLimitFilter} in a real (embedded) Tomcat
 * in front of an app that answers "ok", over HTTP, against real sidecar processes. Each step
 * builds a new filter from its settings; the steps run one after the other, so one server
 * serves them all with the current step's filter.
 */
class ContractMiddlewareTest {
  static final Contract CONTRACT = Contract.load();
  static final ContractWorld WORLD = new ContractWorld(CONTRACT);
  static Tomcat tomcat;
  static volatile Filter current;

  @BeforeAll
  static void startTomcat() throws Exception {
    tomcat = new Tomcat();
    tomcat.setBaseDir(Files.createTempDirectory("viva-tomcat-").toString());
    tomcat.setPort(0);
    tomcat.setHostname("127.0.0.1");
    tomcat.getConnector().setProperty("address", "127.0.0.1");
    Context context = tomcat.addContext("", null);
    Tomcat.addServlet(context, "ok", new HttpServlet() {
      private static final long serialVersionUID = 1L;

      @Override
      protected void service(HttpServletRequest request, HttpServletResponse response)
          throws IOException {
        response.setContentType("text/plain");
        response.getWriter().write("ok");
      }
    });
    context.addServletMappingDecoded("/*", "ok");
    FilterDef def = new FilterDef();
    def.setFilterName("vivaRateLimitFilter");
    def.setFilter(new CurrentFilter());
    context.addFilterDef(def);
    FilterMap map = new FilterMap();
    map.setFilterName("vivaRateLimitFilter");
    map.addURLPatternDecoded("/*");
    context.addFilterMap(map);
    tomcat.start();
  }

  @AfterAll
  static void stop() throws LifecycleException {
    if (tomcat != null) {
      tomcat.stop();
      tomcat.destroy();
    }
    WORLD.close();
  }

  /** Hands each request to the filter of the step being run. */
  static final class CurrentFilter implements Filter {
    @Override
    public void doFilter(ServletRequest request, ServletResponse response, FilterChain chain)
        throws IOException, ServletException {
      current.doFilter(request, response, chain);
    }
  }

  @TestFactory
  List<DynamicTest> middlewareVectors() {
    ContractRunner runner = new ContractRunner(WORLD, (client, settings) -> {
      String header = (String) settings.get("identifier_header");
      current = new RateLimitFilter(client, (String) settings.get("namespace"),
          request -> request.getHeader(header), ((Number) settings.get("hits")).longValue(),
          HeaderFamily.ALL);
      return "http://127.0.0.1:" + tomcat.getConnector().getLocalPort();
    });
    List<DynamicTest> tests = new ArrayList<>();
    for (Contract.Vector vector : CONTRACT.vectors()) {
      if (!vector.isMiddleware()) {
        continue; // run by the client module's ContractTest
      }
      List<String> profiles = CONTRACT.profiles(vector.target());
      for (String profile : profiles.isEmpty() ? Collections.<String>singletonList(null)
          : profiles) {
        String name = vector + (profile == null ? "" : " [" + profile + "]");
        tests.add(DynamicTest.dynamicTest(name, () -> runner.run(vector, profile)));
      }
    }
    Assertions.assertFalse(tests.isEmpty(), "no middleware vector found");
    return tests;
  }
}
