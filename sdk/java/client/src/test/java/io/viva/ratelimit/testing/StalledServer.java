package io.viva.ratelimit.testing;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.InetAddress;
import java.net.ServerSocket;

/**
 * A listening socket that never accepts nor answers: connections complete in the kernel's
 * backlog and then wait forever, as with a sidecar that is stuck. Only the client's timeout
 * ends a call to it.
 */
public final class StalledServer implements AutoCloseable {
  private final ServerSocket socket;

  public StalledServer() {
    try {
      socket = new ServerSocket(0, 64, InetAddress.getLoopbackAddress());
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  public String url() {
    return "http://127.0.0.1:" + socket.getLocalPort();
  }

  @Override
  public void close() {
    try {
      socket.close();
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }
}
