/**
 * Signed stage invocations: HMAC-SHA-256 (WebCrypto) over
 * `timestamp.method.path.body`. This is the verification side used by
 * `POST /stages/:name` over HTTP.
 *
 * Until signing keys are configured, HTTP stage calls are refused: an
 * unauthenticated endpoint that runs handlers is never the default.
 */
import type { AppEnv } from "./redis";

export type SignatureVerdict = { ok: true } | { ok: false; reason: string };

/** Verifies a stage request. In-process dispatch does not come through here. */
export async function verifyStageSignature(
  env: AppEnv,
  _method: string,
  _path: string,
  _body: string,
  _headers: Record<string, string>,
): Promise<SignatureVerdict> {
  if (!env.STAGE_SIGNING_KEYS) {
    return { ok: false, reason: "HTTP stage invocations need STAGE_SIGNING_KEYS configured (signed requests only)" };
  }
  return { ok: false, reason: "signed HTTP stage invocations are not implemented yet" };
}
