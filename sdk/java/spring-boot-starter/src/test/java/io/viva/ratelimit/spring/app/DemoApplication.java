package io.viva.ratelimit.spring.app;

import io.viva.ratelimit.spring.IdentifierResolver;
import org.springframework.boot.autoconfigure.SpringBootApplication;
import org.springframework.context.annotation.Bean;
import org.springframework.web.bind.annotation.GetMapping;
import org.springframework.web.bind.annotation.RestController;

/** A Spring Boot application with the starter on its classpath, as a user would write it. */
@SpringBootApplication
public class DemoApplication {

  @RestController
  static class Hello {
    @GetMapping("/hello")
    String hello() {
      return "ok";
    }

    @GetMapping("/health")
    String health() {
      return "up";
    }
  }

  /** The user (here a header) is the identifier; requests without one are not limited. */
  @Bean
  IdentifierResolver identifierResolver() {
    return request -> request.getHeader("X-User");
  }
}
