/** llama-imatrix's files as page tests pick them. */

/** llama-imatrix's legacy .dat: i32 n; per entry i32 name length, name, i32 ncall, i32 nval, nval f32 sums. */
export function imatrixDat(entries: { name: string; ncall: number; sums: number[] }[]): Uint8Array {
  const parts: number[] = [];
  const i32 = (v: number) => { const b = new Uint8Array(4); new DataView(b.buffer).setInt32(0, v, true); parts.push(...b); };
  i32(entries.length);
  for (const e of entries) {
    const name = new TextEncoder().encode(e.name);
    i32(name.length);
    parts.push(...name);
    i32(e.ncall);
    i32(e.sums.length);
    const f = new Uint8Array(4 * e.sums.length);
    e.sums.forEach((s, i) => new DataView(f.buffer).setFloat32(4 * i, s, true));
    parts.push(...f);
  }
  return Uint8Array.from(parts);
}
