/**
 * Relay tokens on the client: reading a JWT's `exp` (without verifying it: the relay does) and
 * when to refresh it. The relay ends a session 5 s after its token's `exp` unless the client
 * presented a fresh token first (REQUEST_UPDATE with AUTHORIZATION TOKEN; `Subscription.refresh`,
 * `NamespacePublication.refresh`).
 */

/**
 * When to refresh a token that expires at `expS` (Unix seconds), as of `nowMs`: a quarter of
 * its remaining life before `exp`, at least 2 s and at most 30 s before it (a 60 s token is
 * refreshed 15 s ahead). Returns the delay in ms (0: now).
 */
export function refreshDelayMs(expS: number, nowMs: number): number {
  const remainingMs = expS * 1000 - nowMs;
  const leadMs = Math.min(30_000, Math.max(2_000, remainingMs / 4));
  return Math.max(0, remainingMs - leadMs);
}

/** The `exp` claim of a JWT (Unix seconds), read without verifying it; undefined if absent. */
export function tokenExpiry(token: string): number | undefined {
  const payload = token.split(".")[1];
  if (!payload) return undefined;
  try {
    const json = atob(payload.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(payload.length / 4) * 4, "="));
    const exp = (JSON.parse(json) as { exp?: unknown }).exp;
    return typeof exp === "number" ? exp : undefined;
  } catch {
    return undefined;
  }
}
