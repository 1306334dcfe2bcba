/**
 * Cluster key slots: CRC16 (XMODEM, as the cluster spec defines it) of a key's
 * hash tag, or of the whole key when it has none, modulo 16384. Web APIs only,
 * so the key builder, the REST bridge (routing on Workers) and tests share it.
 */

/** Number of hash slots of a Valkey / Redis Cluster. */
export const CLUSTER_SLOTS = 16384;

// CRC16-CCITT (XMODEM): polynomial 0x1021, initial value 0, no reflection.
const TABLE = (() => {
  const table = new Uint16Array(256);
  for (let i = 0; i < 256; i++) {
    let crc = i << 8;
    for (let bit = 0; bit < 8; bit++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
    table[i] = crc;
  }
  return table;
})();

const encoder = new TextEncoder();

/** CRC16 (XMODEM) of bytes `from..to-1`. */
export function crc16(bytes: Uint8Array, from = 0, to = bytes.length): number {
  let crc = 0;
  for (let i = from; i < to; i++) crc = ((crc << 8) & 0xffff) ^ TABLE[((crc >> 8) ^ bytes[i]) & 0xff];
  return crc;
}

/** CRC16 (XMODEM) of a string of char codes < 128 (hash tags the key builder picks), without encoding it first. */
export function crc16Ascii(text: string): number {
  let crc = 0;
  for (let i = 0; i < text.length; i++) crc = ((crc << 8) & 0xffff) ^ TABLE[((crc >> 8) ^ text.charCodeAt(i)) & 0xff];
  return crc;
}

/**
 * The part of a key the cluster hashes: the text between the first `{` and the
 * next `}` when that is not empty, else the whole key (as the server does it,
 * on bytes: `{}` or an unclosed `{` means no tag).
 */
function hashedRange(bytes: Uint8Array): [number, number] {
  const open = bytes.indexOf(0x7b); // '{'
  if (open < 0) return [0, bytes.length];
  const close = bytes.indexOf(0x7d, open + 1); // '}'
  if (close < 0 || close === open + 1) return [0, bytes.length];
  return [open + 1, close];
}

/**
 * The cluster slot (0..16383) of a key, the same number `CLUSTER KEYSLOT` answers.
 * @example
 * keySlot("ep:{p0}:s:fetcher"); // 15882, the slot of "p0"
 */
export function keySlot(key: string | Uint8Array): number {
  const bytes = typeof key === "string" ? encoder.encode(key) : key;
  const [from, to] = hashedRange(bytes);
  return crc16(bytes, from, to) % CLUSTER_SLOTS;
}

/** The hash tag of a key (the text the cluster hashes), or undefined when the whole key is hashed. */
export function hashTag(key: string): string | undefined {
  const open = key.indexOf("{");
  if (open < 0) return undefined;
  const close = key.indexOf("}", open + 1);
  return close < 0 || close === open + 1 ? undefined : key.slice(open + 1, close);
}
