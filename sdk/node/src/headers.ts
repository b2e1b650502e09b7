/**
 * Rate-limit response headers from a result, exactly as the sidecar writes them:
 * `RateLimit-Policy: "<policy>";q=<limit>;w=<window>` and `RateLimit: "<policy>";r=<remaining>;t=<reset>`
 * (draft-ietf-httpapi-ratelimit-headers, one member per limited descriptor), `X-RateLimit-Limit`,
 * `X-RateLimit-Remaining`, `X-RateLimit-Reset` (seconds), and `Retry-After` (seconds) when refused.
 */

export type HeaderFamily = "ietf" | "x" | "retry-after";
export const HEADER_FAMILIES: readonly HeaderFamily[] = ["ietf", "x", "retry-after"];

/** The fields of a result the headers are made of. */
export interface HeaderSource {
  readonly limit: number | null;
  readonly remaining: number | null;
  readonly resetAfterSeconds: number | null;
  readonly retryAfterSeconds: number | null;
  readonly windowSeconds: number | null;
  readonly policy: string | null;
  readonly results: readonly HeaderSource[];
}

export function rateLimitHeaders(
  result: HeaderSource,
  families: readonly HeaderFamily[] = HEADER_FAMILIES,
): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  const members = result.results.length > 0 ? result.results : [result];
  const limited = members.filter((m) => m.limit !== null);
  if (families.includes("ietf") && limited.length > 0) {
    out.push([
      "RateLimit-Policy",
      limited.map((m) => `${sfString(m.policy)};q=${m.limit};w=${m.windowSeconds}`).join(", "),
    ]);
    out.push([
      "RateLimit",
      limited.map((m) => `${sfString(m.policy)};r=${m.remaining};t=${m.resetAfterSeconds}`).join(", "),
    ]);
  }
  if (families.includes("x") && result.limit !== null) {
    out.push(["X-RateLimit-Limit", String(result.limit)]);
    out.push(["X-RateLimit-Remaining", String(result.remaining)]);
    out.push(["X-RateLimit-Reset", String(result.resetAfterSeconds)]);
  }
  if (families.includes("retry-after") && result.retryAfterSeconds !== null) {
    out.push(["Retry-After", String(result.retryAfterSeconds)]);
  }
  return out;
}

/** An RFC 8941 String: printable ASCII, backslash and double quote escaped. */
export function sfString(text: string | null): string {
  let out = "";
  for (const c of text || "default") {
    const code = c.codePointAt(0) ?? 0;
    if (c === "\\" || c === '"') out += `\\${c}`;
    else if (code < 0x20 || code > 0x7e) out += "_";
    else out += c;
  }
  return `"${out}"`;
}
