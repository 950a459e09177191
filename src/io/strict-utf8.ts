/**
 * Configs and indexes are read as Python reads them (json.load, strict UTF-8): a file that is not
 * UTF-8 is refused, not read with U+FFFD in place of its bad bytes.
 */
import { MergeError, type MergeErrorCode } from '../errors.js';

/** Keeps a leading byte-order mark, which the JSON reader then names (Python refuses it too). */
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** `bytes` as text; invalid UTF-8 is refused, naming `file` and the offset of the first bad byte. */
export function decodeUtf8(bytes: Uint8Array, file: string, code: MergeErrorCode = 'BAD_CONFIG'): string {
  try {
    return utf8.decode(bytes);
  } catch (e) {
    const at = firstInvalidUtf8(bytes);
    const shown = at < bytes.length ? `byte 0x${bytes[at].toString(16).padStart(2, '0')} at offset ${at}` : `a sequence cut off at the end`;
    throw new MergeError(code, `${file}: is not valid UTF-8 (${shown}), which Python's json (PEFT, transformers) refuses; save it as UTF-8`, { cause: e });
  }
}

/**
 * Offset of the first byte that does not begin a well-formed UTF-8 sequence (RFC 3629: no overlong
 * forms, surrogates or code points past U+10FFFF): the start of the bad sequence, the byte Python's
 * UnicodeDecodeError names, not the continuation byte that breaks it; bytes.length when the last
 * sequence is cut off, or when all is well.
 */
export function firstInvalidUtf8(bytes: Uint8Array): number {
  let i = 0;
  while (i < bytes.length) {
    const b = bytes[i];
    if (b < 0x80) {
      i++;
      continue;
    }
    let need: number;
    let lo = 0x80;
    let hi = 0xbf;
    if (b >= 0xc2 && b <= 0xdf) need = 1;
    else if (b >= 0xe0 && b <= 0xef) {
      need = 2;
      if (b === 0xe0) lo = 0xa0; // overlong
      if (b === 0xed) hi = 0x9f; // surrogates
    } else if (b >= 0xf0 && b <= 0xf4) {
      need = 3;
      if (b === 0xf0) lo = 0x90; // overlong
      if (b === 0xf4) hi = 0x8f; // past U+10FFFF
    } else return i;
    for (let k = 1; k <= need; k++) {
      if (i + k >= bytes.length) return bytes.length;
      const c = bytes[i + k];
      if (c < (k === 1 ? lo : 0x80) || c > (k === 1 ? hi : 0xbf)) return i;
    }
    i += need + 1;
  }
  return bytes.length;
}
