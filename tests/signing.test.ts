/**
 * Signed stage invocations: only requests with a valid, fresh signature over
 * the exact method, path and body run the handler. A handler side effect (a
 * counter in Valkey) proves which requests ran.
 */
import { z } from "zod";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../functions/app";
import { newEnvelope, randomHex } from "../functions/envelope";
import { defineStage, definePipeline } from "../functions/pipeline";
import type { AppEnv } from "../functions/redis";
import { parseSigningKeys, signStageRequest, verifyStageSignature, SIGNATURE_HEADER, TIMESTAMP_HEADER, type SigningKey } from "../functions/signing";
import { startTestValkey, type TestValkey } from "./helpers/valkey";

let valkey: TestValkey;
beforeAll(async () => {
  valkey = await startTestValkey();
});
afterAll(async () => {
  await valkey?.stop();
});

const counterKey = `sig:${randomHex(4)}:ran`;
const touch = defineStage({
  name: "touch",
  input: z.object({ n: z.number() }),
  next: [],
  handle: async ({ n }, { redis }) => {
    await redis.incrby(counterKey, n);
    return { result: { n } };
  },
});
const other = defineStage({ name: "other", input: z.unknown(), next: [], handle: () => ({}) });
const app = createApp({ pipeline: definePipeline({ name: "signing-test", stages: [touch, other] }) });

const oldKey: SigningKey = { kid: "k2025", secret: "old-secret-0123456789abcdef" };
const newKey: SigningKey = { kid: "k2026", secret: "new-secret-fedcba9876543210" };
const keysText = (...keys: SigningKey[]) => keys.map((k) => `${k.kid}:${k.secret}`).join(",");

function envWith(keys: string | undefined): AppEnv {
  return { REDIS: valkey.redis, KEY_PREFIX: "sig", ...(keys ? { STAGE_SIGNING_KEYS: keys } : {}) };
}

const body = (n: number) => JSON.stringify({ envelopes: [newEnvelope("touch", { n })] });

async function call(env: AppEnv, { path = "/stages/touch", payload, headers }: { path?: string; payload: string; headers: Record<string, string> }) {
  const res = await app.request(path, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: payload }, env);
  return { status: res.status, json: (await res.json()) as any };
}

async function ran(): Promise<number> {
  return Number((await valkey.conn.get(counterKey)) ?? 0);
}

describe("signed stage invocations", () => {
  let env: AppEnv;
  beforeAll(() => {
    env = envWith(keysText(newKey));
  });

  it("a valid signature runs the handler", async () => {
    const before = await ran();
    const payload = body(1);
    const res = await call(env, { payload, headers: await signStageRequest(newKey, "POST", "/stages/touch", payload) });
    expect(res.status).toBe(200);
    expect(res.json.results[0]).toMatchObject({ ok: true, result: { n: 1 } });
    expect(await ran()).toBe(before + 1);
  });

  it("rejects a tampered body, a wrong path, stale or future timestamps, unknown keys and missing headers with 401", async () => {
    const before = await ran();
    const payload = body(100);
    const signed = await signStageRequest(newKey, "POST", "/stages/touch", payload);
    const attempts = {
      tampered: await call(env, { payload: body(1000), headers: signed }),
      wrongPath: await call(env, { payload, headers: await signStageRequest(newKey, "POST", "/stages/other", payload) }),
      wrongMethod: await call(env, { payload, headers: await signStageRequest(newKey, "PUT", "/stages/touch", payload) }),
      stale: await call(env, { payload, headers: await signStageRequest(newKey, "POST", "/stages/touch", payload, Date.now() - 301_000) }),
      future: await call(env, { payload, headers: await signStageRequest(newKey, "POST", "/stages/touch", payload, Date.now() + 301_000) }),
      unknownKey: await call(env, { payload, headers: await signStageRequest({ kid: "intruder", secret: newKey.secret }, "POST", "/stages/touch", payload) }),
      wrongSecret: await call(env, { payload, headers: await signStageRequest({ kid: newKey.kid, secret: "guessed-secret-000000000" }, "POST", "/stages/touch", payload) }),
      missing: await call(env, { payload, headers: {} }),
      garbled: await call(env, { payload, headers: { ...signed, [SIGNATURE_HEADER]: "v1=zz,kid=k2026" } }),
      timestampSwapped: await call(env, { payload, headers: { ...signed, [TIMESTAMP_HEADER]: String(Number(signed[TIMESTAMP_HEADER]) - 1) } }),
    };
    for (const [name, res] of Object.entries(attempts)) {
      expect(res.status, name).toBe(401);
      expect(res.json.error.code, name).toBe("unauthorized");
    }
    expect(attempts.stale.json.error.message).toMatch(/stale/);
    expect(attempts.unknownKey.json.error.message).toMatch(/unknown signing key/);
    expect(attempts.missing.json.error.message).toMatch(/missing/);
    expect(await ran()).toBe(before);
  });

  it("accepts a signature within the allowed skew", async () => {
    const before = await ran();
    const payload = body(1);
    const res = await call(env, { payload, headers: await signStageRequest(newKey, "POST", "/stages/touch", payload, Date.now() - 240_000) });
    expect(res.status).toBe(200);
    expect(await ran()).toBe(before + 1);
  });

  it("rotation: with two keys configured both are accepted; a dropped key is refused", async () => {
    const before = await ran();
    const both = envWith(keysText(newKey, oldKey));
    const p1 = body(1);
    const p2 = body(1);
    expect((await call(both, { payload: p1, headers: await signStageRequest(oldKey, "POST", "/stages/touch", p1) })).status).toBe(200);
    expect((await call(both, { payload: p2, headers: await signStageRequest(newKey, "POST", "/stages/touch", p2) })).status).toBe(200);
    const p3 = body(100);
    expect((await call(envWith(keysText(newKey)), { payload: p3, headers: await signStageRequest(oldKey, "POST", "/stages/touch", p3) })).status).toBe(401);
    expect(await ran()).toBe(before + 2);
  });

  it("without STAGE_SIGNING_KEYS every HTTP stage call is refused; in-process dispatch needs no signature", async () => {
    const before = await ran();
    const payload = body(100);
    const refused = await call(envWith(undefined), { payload, headers: await signStageRequest(newKey, "POST", "/stages/touch", payload) });
    expect(refused.status).toBe(401);
    expect(refused.json.error.message).toMatch(/STAGE_SIGNING_KEYS/);
    const inProcess = await call({ ...envWith(undefined), IN_PROCESS: true }, { payload: body(1), headers: {} });
    expect(inProcess.status).toBe(200);
    expect(await ran()).toBe(before + 1);
  });

  it("verifyStageSignature and parseSigningKeys report what is wrong", async () => {
    expect(() => parseSigningKeys("nosecret")).toThrow(/kid:secret/);
    expect(() => parseSigningKeys("a:short")).toThrow(/at least 16/);
    expect(() => parseSigningKeys("a:0123456789abcdef,a:0123456789abcdefg")).toThrow(/differ/);
    expect(parseSigningKeys(" a:0123456789abcdef , b:fedcba9876543210 ")).toEqual([{ kid: "a", secret: "0123456789abcdef" }, { kid: "b", secret: "fedcba9876543210" }]);
    const headers = await signStageRequest(newKey, "POST", "/stages/touch", "{}", 1_700_000_000_000);
    expect(headers[SIGNATURE_HEADER]).toMatch(/^v2=[0-9a-f]{64},kid=k2026,nonce=[0-9a-f]{32}$/);
    const nonce = /nonce=([0-9a-f]{32})/.exec(headers[SIGNATURE_HEADER])![1];
    expect(await verifyStageSignature({ STAGE_SIGNING_KEYS: keysText(newKey) }, "POST", "/stages/touch", "{}", headers, 1_700_000_100_000)).toEqual({ ok: true, kid: "k2026", nonce });
    expect((await verifyStageSignature({ STAGE_SIGNING_KEYS: "broken" }, "POST", "/stages/touch", "{}", headers, 1_700_000_000_000)).ok).toBe(false);
  });
});

describe("replay protection", () => {
  const env = () => envWith(keysText(newKey));

  it("a replayed signed request is refused with 409 and runs nothing, within the whole window", async () => {
    const before = await ran();
    const payload = body(1);
    const headers = await signStageRequest(newKey, "POST", "/stages/touch", payload);
    const first = await call(env(), { payload, headers });
    expect(first.status).toBe(200);
    // The same bytes again, from another handler instance sharing the database (a fresh env object).
    for (let i = 0; i < 3; i++) {
      const replay = await call(env(), { payload, headers });
      expect(replay.status).toBe(409);
      expect(replay.json.error.code).toBe("replayed");
    }
    expect(await ran()).toBe(before + 1);
    // The nonce is remembered in the app's namespace for the signature window (2 x 300 s).
    const nonce = /nonce=([0-9a-f]{32})/.exec(headers[SIGNATURE_HEADER])![1];
    const ttl = await valkey.conn.pttl(`sig:nonce:${nonce}`);
    expect(ttl).toBeGreaterThan(590_000);
    expect(ttl).toBeLessThanOrEqual(600_000);
  });

  it("a request signed 4 minutes ago and replayed now is still refused; a new signature of the same body runs", async () => {
    const before = await ran();
    const payload = body(1);
    const old = await signStageRequest(newKey, "POST", "/stages/touch", payload, Date.now() - 240_000);
    expect((await call(env(), { payload, headers: old })).status).toBe(200);
    expect((await call(env(), { payload, headers: old })).status).toBe(409);
    expect((await call(env(), { payload, headers: await signStageRequest(newKey, "POST", "/stages/touch", payload) })).status).toBe(200);
    expect(await ran()).toBe(before + 2);
  });

  it("a bad signature spends no nonce; v1 signatures and malformed nonces are refused", async () => {
    const before = await ran();
    const payload = body(100);
    const good = await signStageRequest(newKey, "POST", "/stages/touch", payload);
    // Tampered body with the good headers: 401, and the genuine request still runs afterwards.
    expect((await call(env(), { payload: body(1000), headers: good })).status).toBe(401);
    const v1 = { ...good, [SIGNATURE_HEADER]: good[SIGNATURE_HEADER].replace(/^v2=/, "v1=").replace(/,nonce=.*$/, "") };
    const v1res = await call(env(), { payload, headers: v1 });
    expect(v1res.status).toBe(401);
    expect(v1res.json.error.message).toMatch(/v1 signatures/);
    const badNonce = await signStageRequest(newKey, "POST", "/stages/touch", payload, Date.now(), "not-hex");
    expect((await call(env(), { payload, headers: badNonce })).json.error.message).toMatch(/nonce/);
    expect((await call(env(), { payload, headers: good })).status).toBe(200);
    expect(await ran()).toBe(before + 100);
  });
});

describe("random ids", () => {
  it("draws distinct lowercase hex ids of the asked length, across pool refills", () => {
    // 6-byte run-id suffixes: 3,000 of them use more than four 4 KB refills of the pool.
    const ids = Array.from({ length: 3000 }, () => randomHex(6));
    expect(ids.every((id) => /^[0-9a-f]{12}$/.test(id))).toBe(true);
    expect(new Set(ids).size).toBe(ids.length);
    // Every byte value shows up in a long enough draw (the lookup table covers 00..ff).
    const bytes = new Set(ids.join("").match(/../g));
    expect(bytes.size).toBe(256);
    // Longer values (keys, tokens) are drawn fresh, same format.
    const key = randomHex(24);
    expect(key).toMatch(/^[0-9a-f]{48}$/);
    expect(randomHex(24)).not.toBe(key);
  });
});
