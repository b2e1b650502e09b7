package io.viva.ratelimit.testing;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * A TCP server that accepts connections, reads what arrives and never answers: a sidecar that
 * is stuck. Only the client's timeout ends a call to it. It counts the connections a request
 * arrived on (bytes received), since an HTTP client may open spare connections it never uses.
 */
public final class SilentServer implements AutoCloseable {
  private final ServerSocket socket;
  private final AtomicInteger requests = new AtomicInteger();
  private final List<Socket> open = new CopyOnWriteArrayList<>();
  private final Thread acceptor;

  public SilentServer() {
    try {
      socket = new ServerSocket(0, 64, InetAddress.getLoopbackAddress());
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
    acceptor = new Thread(this::acceptForever, "silent-server");
    acceptor.setDaemon(true);
    acceptor.start();
  }

  private void acceptForever() {
    while (!socket.isClosed()) {
      try {
        Socket connection = socket.accept();
        open.add(connection);
        Thread reader = new Thread(() -> drain(connection), "silent-server-reader");
        reader.setDaemon(true);
        reader.start();
      } catch (IOException e) {
        return; // closed
      }
    }
  }

  /** Reads until the client gives up; the first bytes make the connection a request. */
  private void drain(Socket connection) {
    byte[] buffer = new byte[4096];
    boolean counted = false;
    try (InputStream in = connection.getInputStream()) {
      int n;
      while ((n = in.read(buffer)) >= 0) {
        if (n > 0 && !counted) {
          counted = true;
          requests.incrementAndGet();
        }
      }
    } catch (IOException e) {
      // the client closed or reset the connection
    }
  }

  public int port() {
    return socket.getLocalPort();
  }

  /** Connections on which a request arrived so far. */
  public int requests() {
    return requests.get();
  }

  @Override
  public void close() {
    try {
      socket.close();
      for (Socket s : open) {
        s.close();
      }
      acceptor.join(2000);
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }
}
