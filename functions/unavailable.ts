/**
 * Telling "Valkey cannot be reached right now" apart from other failures, and
 * bounding a wait on it. Web APIs only (used by the app on Workers and by the
 * Node worker-host).
 */

/**
 * Messages of errors that mean the server could not be reached or stopped
 * answering (iovalkey's, the Node host's own, and a fetch to the REST bridge
 * failing; on a cluster a failover or slot migration under way), as opposed
 * to an error reply to a command.
 */
const UNAVAILABLE = /ECONNREFUSED|ECONNRESET|EPIPE|ETIMEDOUT|EHOSTUNREACH|Connection is closed|Stream isn't writeable|max retries per request|no reply from the server|did not settle|no connection within|no answer within|fetch failed|network connection lost|LOADING|MASTERDOWN|TRYAGAIN|CLUSTERDOWN|Too many Cluster redirections|Cluster isn.t ready|Failed to refresh slots cache/i;

/** True when `err` says Valkey is unreachable or not answering (worth a 503 and a retry). */
export function isUnavailableError(err: unknown): boolean {
  const message = err instanceof Error ? err.message : String(err);
  return UNAVAILABLE.test(message);
}

/** Settles with `promise`, or rejects after `ms` with "no answer within <ms> ms (<what>)". */
export function withDeadline<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms (${what})`)), ms);
  });
  promise.catch(() => undefined);
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}
