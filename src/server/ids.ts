/**
 * Connection ids: `<node>.<16 base64url characters>` — 96 random bits, so an id cannot be
 * guessed, and the node's name in front, so a cluster routes a send without a lookup.
 *
 * @module
 */

const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
/** Node names: what may stand before the dot. */
export const NODE_NAME = /^[A-Za-z0-9_-]{1,31}$/;

/** 12 random bytes as 16 base64url characters. */
function random96(): string {
  const b = crypto.getRandomValues(new Uint8Array(12));
  let s = "";
  for (let i = 0; i < 12; i += 3) {
    const n = (b[i] << 16) | (b[i + 1] << 8) | b[i + 2];
    s += ALPHABET[n >> 18] + ALPHABET[(n >> 12) & 63] + ALPHABET[(n >> 6) & 63] + ALPHABET[n & 63];
  }
  return s;
}

/** A new connection id on node `node`. */
export function newConnectionId(node: string): string {
  return `${node}.${random96()}`;
}

/** A short random node name, for a server that is not part of a cluster. */
export function randomNodeName(): string {
  return random96().slice(0, 8);
}

/** The node part of a connection id, or `undefined` when it is not one of ours. */
export function nodeOf(id: string): string | undefined {
  const dot = id.indexOf(".");
  return dot > 0 && id.length - dot === 17 ? id.slice(0, dot) : undefined;
}
