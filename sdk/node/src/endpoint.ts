/**
 * Where the sidecar is: "host:port" (as its address is usually written), "host", ":port" or an
 * http(s) URL, turned into base URLs to try in order.
 *
 * "localhost" over http becomes both loopback addresses, 127.0.0.1 first (the sidecar binds the
 * IPv4 wildcard by default), then [::1]: Node resolves localhost to ::1 first on many machines,
 * to 127.0.0.1 only on others, and a sidecar listens on one or both. The client tries the next
 * one when a connection is refused and keeps the one that answered. https://localhost is left
 * to the resolver, since the certificate names the host.
 */

const DEFAULT_PORT = "8080";
const LOOPBACKS = ["127.0.0.1", "[::1]"];

export function parseEndpoint(endpoint: string): string[] {
  const text = endpoint.trim();
  if (text === "") {
    throw new TypeError("endpoint is empty; expected host:port (localhost:8080) or a URL (http://localhost:8080)");
  }
  let url: URL;
  try {
    url = new URL(text.includes("://") ? text : hostPortURL(text));
  } catch {
    throw new TypeError(`endpoint ${JSON.stringify(endpoint)} is neither host:port nor a URL`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new TypeError(
      `endpoint ${JSON.stringify(endpoint)}: scheme ${url.protocol.slice(0, -1)}; expected http or https`,
    );
  }
  if (url.search !== "" || url.hash !== "" || url.username !== "") {
    throw new TypeError(`endpoint ${JSON.stringify(endpoint)}: credentials, a query or a fragment are not expected`);
  }
  const path = url.pathname.replace(/\/+$/, "");
  if (url.hostname === "localhost" && url.protocol === "http:") {
    const port = url.port || "80";
    return LOOPBACKS.map((host) => `http://${host}:${port}${path}`);
  }
  return [`${url.protocol}//${url.host}${path}`];
}

function hostPortURL(text: string): string {
  const bracketed = /^\[([^\]]+)\](?::(\d*))?$/.exec(text);
  if (bracketed) return `http://[${bracketed[1]}]:${bracketed[2] || DEFAULT_PORT}`;
  const colon = text.lastIndexOf(":");
  if (colon < 0) return `http://${text}:${DEFAULT_PORT}`;
  const host = text.slice(0, colon) || "localhost";
  if (host.includes(":")) throw new TypeError("an IPv6 address needs brackets: [::1]:8080");
  return `http://${host}:${text.slice(colon + 1) || DEFAULT_PORT}`;
}
