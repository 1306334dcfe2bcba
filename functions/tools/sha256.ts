/**
 * SHA-256 (FIPS 180-4) in plain JavaScript, synchronous. Workers-safe (no
 * node:* imports).
 *
 * Why not WebCrypto: `crypto.subtle.digest` is asynchronous; on Node every
 * call becomes a job on the libuv thread pool plus a promise, which for the
 * few hundred bytes hashed per article (content hash, URL, tool-cache args)
 * costs several times the hashing itself (profile of the news stages: the
 * digest jobs were ~4.5 % of the Node CPU). The digests are identical
 * (tests/news-text.test.ts compares both on many inputs).
 */

const K = new Int32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3,
  0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
  0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
  0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);

// Scratch message schedule: hashing is synchronous, so one buffer serves every call.
const W = new Int32Array(64);
const encoder = new TextEncoder();
const HEX_BYTE = Array.from({ length: 256 }, (_, b) => b.toString(16).padStart(2, "0"));

/** Scratch message buffer (hashing is synchronous): grown as needed, reused by every call. */
let scratch = new Uint8Array(1024);

/**
 * SHA-256 of the UTF-8 encoding of `text`, as 8 big-endian 32-bit words in
 * DIGEST. The text is encoded straight into the scratch buffer and padded
 * there: no per-call byte arrays.
 */
function digestText(text: string): Int32Array {
  // UTF-8 takes at most 3 bytes per UTF-16 code unit; + 0x80 + padding + 64-bit length.
  const need = text.length * 3 + 72;
  if (scratch.length < need) scratch = new Uint8Array(Math.max(need, scratch.length * 2));
  const buf = scratch;
  const len = encoder.encodeInto(text, buf).written;
  // Message + 0x80 + zero padding + 64-bit length, a multiple of 64 bytes.
  const total = (((len + 9 + 63) >>> 6) << 6) >>> 0;
  buf.fill(0, len, total);
  buf[len] = 0x80;
  const bits = len * 8;
  const hi = Math.floor(bits / 0x100000000);
  const lo = bits >>> 0;
  buf[total - 8] = hi >>> 24;
  buf[total - 7] = hi >>> 16;
  buf[total - 6] = hi >>> 8;
  buf[total - 5] = hi;
  buf[total - 4] = lo >>> 24;
  buf[total - 3] = lo >>> 16;
  buf[total - 2] = lo >>> 8;
  buf[total - 1] = lo;

  let h0 = 0x6a09e667 | 0;
  let h1 = 0xbb67ae85 | 0;
  let h2 = 0x3c6ef372 | 0;
  let h3 = 0xa54ff53a | 0;
  let h4 = 0x510e527f | 0;
  let h5 = 0x9b05688c | 0;
  let h6 = 0x1f83d9ab | 0;
  let h7 = 0x5be0cd19 | 0;
  for (let off = 0; off < total; off += 64) {
    for (let i = 0; i < 16; i++) {
      const j = off + i * 4;
      W[i] = (buf[j] << 24) | (buf[j + 1] << 16) | (buf[j + 2] << 8) | buf[j + 3];
    }
    for (let i = 16; i < 64; i++) {
      const x = W[i - 15];
      const y = W[i - 2];
      const s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
      const s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
      W[i] = (W[i - 16] + s0 + W[i - 7] + s1) | 0;
    }
    let a = h0;
    let b = h1;
    let c = h2;
    let d = h3;
    let e = h4;
    let f = h5;
    let g = h6;
    let h = h7;
    for (let i = 0; i < 64; i++) {
      const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
      const ch = (e & f) ^ (~e & g);
      const t1 = (h + S1 + ch + K[i] + W[i]) | 0;
      const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
      const maj = (a & b) ^ (a & c) ^ (b & c);
      const t2 = (S0 + maj) | 0;
      h = g;
      g = f;
      f = e;
      e = (d + t1) | 0;
      d = c;
      c = b;
      b = a;
      a = (t1 + t2) | 0;
    }
    h0 = (h0 + a) | 0;
    h1 = (h1 + b) | 0;
    h2 = (h2 + c) | 0;
    h3 = (h3 + d) | 0;
    h4 = (h4 + e) | 0;
    h5 = (h5 + f) | 0;
    h6 = (h6 + g) | 0;
    h7 = (h7 + h) | 0;
  }
  DIGEST[0] = h0;
  DIGEST[1] = h1;
  DIGEST[2] = h2;
  DIGEST[3] = h3;
  DIGEST[4] = h4;
  DIGEST[5] = h5;
  DIGEST[6] = h6;
  DIGEST[7] = h7;
  return DIGEST;
}

/** Scratch digest words, read before the next call. */
const DIGEST = new Int32Array(8);

/** Lowercase hex SHA-256 of the UTF-8 encoding of `text`, synchronously. */
export function sha256HexSync(text: string): string {
  const words = digestText(text);
  let out = "";
  for (let i = 0; i < 8; i++) {
    const w = words[i];
    out += HEX_BYTE[(w >>> 24) & 0xff] + HEX_BYTE[(w >>> 16) & 0xff] + HEX_BYTE[(w >>> 8) & 0xff] + HEX_BYTE[w & 0xff];
  }
  return out;
}
