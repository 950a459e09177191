/**
 * A hostile GGUF header built against the wrong-count walk (gguf-counts.ts): read from the start
 * of any of its metadata entries, its bytes are also a run of tensor infos that GGUF's layout
 * accepts (the first at data offset 0, each at the previous one's end), and every such run joins
 * one shared run (the trunk) after two infos. A walk that reads each count's run anew does about
 * entries × tensors work; all the runs share all but their first two infos.
 *
 * One period per metadata entry c (K = 63-byte keys, 77 bytes a period):
 *   entry c:  key length K | key_c (K bytes) | type 2 (UINT16) | v_c (u16)
 *   read as the tensor info L_c:  name key_c | n_dims 2 | ne0 = v_c + 65536·K (v_c and the next
 *             key's length) | ne1 = 65536 | type I8 | offset 0 (ne1, type and offset are the next
 *             key's first 18 bytes): σ_c = 65536·v_c + 2³²·K bytes of data
 *   then M_c, starting in key_{c+1} at its byte 18: a 5-byte name, n_dims 1, F32 ne0 of
 *             16384·(v_{c+1} − v_c), offset σ_c; it ends where the trunk's info N_c ends, their
 *             last 24 bytes the same (the trunk's N_c starts in key_c's last 8 bytes, its 45-byte
 *             name holding entry c's type and value and key_{c+1}'s start), so the next info of
 *             run c is the trunk's N_{c+1}, at offset σ_{c+1}.
 * The bytes inside keys are ASCII (v_c's two bytes each below 0x80), as keys and names must be
 * UTF-8. After the last entry a key of the same layout whose entry type is 99 ends the metadata,
 * and plain tensor infos continue the trunk to `trunkInfos` infos past it.
 */
const K = 63;
const M = 5;
const PERIOD = 14 + K;

/** v_c: numbers whose two low bytes are each below 0x80 (16 384 of them). */
function v(c: number): number {
  return (c >> 7) * 256 + (c & 127);
}

/** Data bytes of the leaf info L_c (I8, ne [v_c + 65536·K, 65536]). */
function sigma(c: number): bigint {
  return 65536n * BigInt(v(c)) + (1n << 32n) * BigInt(K);
}

export interface BraidedGguf {
  /** The header's bytes. */
  header: Uint8Array;
  /** Where each metadata entry starts (and the entry after the last, which does not parse). */
  entryStarts: number[];
  /**
   * The trunk's tensor infos N_0, N_1, …: where each ends, its data offset and its data's size.
   * The run from entry c's start is L_c, M_c, then N_{c+1}, N_{c+2}, …
   */
  trunk: { end: number; offset: bigint; bytes: bigint }[];
}

/**
 * `entries` braided metadata entries (at most 16 383), then `trunkInfos` tensor infos that continue
 * the shared run; the header declares `entries` metadata entries and `tensors` tensors.
 */
export function braidedGguf(entries: number, trunkInfos: number, tensors: number): BraidedGguf {
  if (entries > 16_383) throw new Error('at most 16383 braided entries');
  const plainInfo = 8 + 1 + 4 + 8 + 4 + 8;
  const bytes = new Uint8Array(24 + (entries + 1) * PERIOD + trunkInfos * plainInfo + 64);
  const view = new DataView(bytes.buffer);
  bytes.set(new TextEncoder().encode('GGUF'), 0);
  view.setUint32(4, 3, true);
  view.setBigUint64(8, BigInt(tensors), true);
  view.setBigUint64(16, BigInt(entries), true);
  const entryStarts: number[] = [];
  const trunk: BraidedGguf['trunk'] = [];
  // Periods 0..entries; the last is the key that ends the metadata (its type 99).
  for (let c = 0; c <= entries; c++) {
    const s = 24 + c * PERIOD;
    entryStarts.push(s);
    const key = s + 8;
    view.setBigUint64(s, BigInt(K), true);
    // The previous leaf's ne1 (65536), type (I8 = 24) and offset (0).
    bytes[key] = 1;
    bytes[key + 6] = 24;
    // M_{c-1}: its name's length and name (unique, so the keys are too).
    view.setBigUint64(key + 18, BigInt(M), true);
    const name = `m${c.toString(36).padStart(4, '0')}`;
    bytes.set(new TextEncoder().encode(name), key + 26);
    // M_{c-1}'s and N_{c-1}'s last 24 bytes: n_dims 1, ne0, F32, offset σ_{c-1}.
    const tail = key + 26 + M;
    view.setUint32(tail, 1, true);
    view.setBigUint64(tail + 4, c === 0 ? 16384n : 16384n * BigInt(v(c) - v(c - 1)), true);
    view.setUint32(tail + 12, 0, true);
    view.setBigUint64(tail + 16, c === 0 ? 0n : sigma(c - 1), true);
    // N_c's name length: its name runs to M_c's last 24 bytes, in key_{c+1}.
    view.setBigUint64(key + K - 8, BigInt(PERIOD - 32), true);
    // The entry's type (n_dims 2 of L_c) and value v_c; the last one's type ends the metadata.
    view.setUint32(key + K, c === entries ? 99 : 2, true);
    view.setUint16(key + K + 4, c === entries ? 0x2020 : v(c), true);
    if (c < entries) trunk.push({ end: s + PERIOD + 8 + 26 + M + 24, offset: sigma(c), bytes: 65536n * BigInt(v(c + 1) - v(c)) });
  }
  // After the last key: the rest of N_entries's name (ASCII), then its last 24 bytes and the
  // plain tensor infos that continue the trunk, each at the previous one's data end.
  let at = 24 + (entries + 1) * PERIOD;
  const nLast = 24 + entries * PERIOD + K; // where N_entries starts
  const nameEnd = nLast + 8 + (PERIOD - 32);
  bytes.fill(0x41, at, nameEnd);
  at = nameEnd;
  let offset = sigma(entries);
  const f32Info = (ne0: bigint) => {
    view.setUint32(at, 1, true);
    view.setBigUint64(at + 4, ne0, true);
    view.setUint32(at + 12, 0, true);
    view.setBigUint64(at + 16, offset, true);
    at += 24;
    trunk.push({ end: at, offset, bytes: ne0 * 4n });
    offset += ne0 * 4n; // a multiple of 32: no padding
  };
  f32Info(16384n);
  // Named "t": the walk reads names only as names (the reader never reaches these).
  for (let i = 0; i < trunkInfos; i++) {
    view.setBigUint64(at, 1n, true);
    bytes[at + 8] = 0x74;
    at += 9;
    f32Info(8n);
  }
  return { header: bytes.subarray(0, at), entryStarts, trunk };
}
