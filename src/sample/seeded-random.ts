/**
 * A small seeded generator for the built-in sample. Integer arithmetic only, so every JavaScript
 * engine produces the same stream and the same seed always gives byte-identical files.
 */

/** splitmix32: spreads a possibly tiny seed over all 32 bits before sfc32 starts. */
function splitmix32(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return (z ^ (z >>> 16)) >>> 0;
  };
}

/** Returns a function yielding uniform floats in [0, 1) (sfc32, 32 bits per draw). */
export function createRandom(seed: number): () => number {
  const init = splitmix32(seed);
  let a = init(), b = init(), c = init(), d = init();
  const next = (): number => {
    const t = (((a + b) >>> 0) + d) >>> 0;
    d = (d + 1) >>> 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) >>> 0;
    c = (c << 21) | (c >>> 11);
    c = (c + t) >>> 0;
    return t / 4294967296;
  };
  for (let i = 0; i < 12; i++) next(); // discard the first draws, as sfc32's authors recommend
  return next;
}

/** `n` values uniform in [center - halfWidth, center + halfWidth). */
export function uniformValues(n: number, random: () => number, halfWidth: number, center = 0): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = center + (random() * 2 - 1) * halfWidth;
  return out;
}
