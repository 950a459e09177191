/**
 * What a file holds when it is not the weights its name promises: the things people end up with in
 * place of a download (a login or error page, a Git LFS pointer, an archive, a pickle checkpoint,
 * the other weight format under the wrong name). Read from its first bytes, only where the format's
 * own check already failed, so that the refusal says what the file is and what to do instead of
 * "header length 5789751444030890300 bytes".
 */

import { MergeError } from '../errors.js';

/** How many leading bytes foreignFileKind looks at. */
export const FOREIGN_SNIFF_BYTES = 512;

/** Archive names a user may give where a weight file or adapter folder is meant. */
const ARCHIVE_NAME = /\.(zip|7z|rar|tar|tgz|tar\.gz|gz|tar\.xz|txz|xz|tar\.zst|zst|tar\.bz2|bz2)$/i;

const startsWith = (head: Uint8Array, bytes: readonly number[]): boolean =>
  head.length >= bytes.length && bytes.every((b, i) => head[i] === b);

const EXTRACT = 'extract it and give the weight file (or the adapter or model folder) inside';

/** The formats a file may be read as, which foreignFileKind tells other files apart from. */
export type ExpectedFormat = 'safetensors' | 'gguf' | 'json';

/**
 * What `head` (a file's first bytes, up to FOREIGN_SNIFF_BYTES) shows the file to be, with what to
 * do, as the end of a message that starts with the file's name; undefined when it is nothing known.
 * `expected` is the format the file was read as, so that the other one is told apart from it.
 */
export function foreignFileKind(head: Uint8Array, expected: ExpectedFormat): string | undefined {
  const text = new TextDecoder('latin1').decode(head).replace(/^\uFEFF/, '').trimStart();
  const lower = text.slice(0, 64).toLowerCase();
  if (lower.startsWith('<!doctype html') || lower.startsWith('<html') || lower.startsWith('<head') || lower.startsWith('<?xml')) {
    return `an ${lower.startsWith('<?xml') ? 'XML' : 'HTML'} page, not ${expected === 'json' ? 'JSON' : 'model weights'} (an error or login page saved in place of the file?): download the file again`;
  }
  if (text.startsWith('version https://git-lfs.github.com/spec/')) {
    return 'a Git LFS pointer, not the file it stands for (the repository was cloned without Git LFS?): run "git lfs pull" in the clone, or download the file itself';
  }
  if (expected !== 'json' && (text.startsWith('{') || text.startsWith('['))) {
    return 'a JSON document, not model weights (an error message saved in place of the file?): download the file again';
  }
  if (startsWith(head, [0x50, 0x4b, 0x03, 0x04])) {
    // A PyTorch checkpoint (.bin, .pt, .ckpt) is a zip whose first entry is its pickle.
    const nameLength = head.length >= 30 ? head[26] | (head[27] << 8) : 0;
    const firstName = new TextDecoder('latin1').decode(head.subarray(30, 30 + nameLength));
    if (/(^|\/)(data\.pkl|version|\.data\/version|byteorder)$/.test(firstName) || /data\.pkl/.test(text)) return pickleKind(expected);
    return `a zip archive: ${EXTRACT}`;
  }
  if (head.length >= 2 && head[0] === 0x80 && head[1] >= 2 && head[1] <= 5) return pickleKind(expected);
  if (startsWith(head, [0x37, 0x7a, 0xbc, 0xaf, 0x27, 0x1c])) return `a 7z archive: ${EXTRACT}`;
  if (startsWith(head, [0x52, 0x61, 0x72, 0x21, 0x1a, 0x07])) return `a RAR archive: ${EXTRACT}`;
  if (startsWith(head, [0x1f, 0x8b])) return `a gzip archive (.gz, .tar.gz): ${EXTRACT}`;
  if (startsWith(head, [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00])) return `an xz archive: ${EXTRACT}`;
  if (startsWith(head, [0x28, 0xb5, 0x2f, 0xfd])) return `a zstd archive: ${EXTRACT}`;
  if (head.length > 262 && new TextDecoder('latin1').decode(head.subarray(257, 262)) === 'ustar') return `a tar archive: ${EXTRACT}`;
  if (expected === 'safetensors' && startsWith(head, [0x47, 0x47, 0x55, 0x46])) {
    return 'a GGUF file under a .safetensors name: name it .gguf (or give the .gguf file itself)';
  }
  if (expected === 'gguf' && head.length > 8 && head[8] === 0x7b && head[5] === 0 && head[6] === 0 && head[7] === 0) {
    return 'a safetensors file under a .gguf name: name it .safetensors (or give the .safetensors file itself)';
  }
  return undefined;
}

/**
 * The refusal of a weight file named `file` whose first bytes `head` show it to be something else
 * (see foreignFileKind), undefined when they show nothing known. Its code says what kind of failure
 * it is, for callers that branch on it: PICKLE_REFUSED for a pickle, as a pickle found by its name
 * is refused, UNSUPPORTED_FORMAT for anything else (not the header-length or truncation codes that
 * the bytes, read as a header, would give).
 */
export function foreignFileRefusal(file: string, head: Uint8Array, expected: 'safetensors' | 'gguf'): MergeError | undefined {
  const kind = foreignFileKind(head, expected);
  if (kind === undefined) return undefined;
  return new MergeError(kind === pickleKind(expected) ? 'PICKLE_REFUSED' : 'UNSUPPORTED_FORMAT', `${file}: ${kind}`);
}

function pickleKind(expected: ExpectedFormat): string {
  return `a PyTorch pickle checkpoint (what .bin, .pt and .ckpt files hold), not ${expected === 'gguf' ? 'GGUF' : expected === 'json' ? 'JSON' : 'safetensors'}: loramerge does not read pickles (loading one can run code); convert it to safetensors first`;
}

/**
 * The refusal of an archive given where a model or adapter goes (`lora.zip`), by its name; undefined
 * for any other name. `path` is the file as listed, `name` the input as the user gave it.
 */
export function archiveRefusal(name: string, path: string): string | undefined {
  if (!ARCHIVE_NAME.test(path)) return undefined;
  return `${pathIn(name, path, ': ')}: an archive; ${EXTRACT}`;
}

/**
 * Why the input `name`, one JSON file (`config.json`, `adapter_config.json`, an index), holds no
 * weights: it is the folder's config, given where its folder was meant; undefined for anything else.
 */
export function configFileRefusal(name: string, list: readonly string[]): string | undefined {
  if (list.length !== 1 || /^https?:/i.test(name) || !/\.json$/i.test(list[0]) || !(name === list[0] || name.endsWith(`/${list[0]}`) || name.endsWith(`\\${list[0]}`))) return undefined;
  const folder = name === list[0] ? '' : name.slice(0, name.length - list[0].length - 1);
  return `${name}: a JSON file, not the weights: give the folder that holds it${folder ? ` (${folder})` : ''}, not the file`;
}

/**
 * The file `path` of the input `name` as a message names it: a file given alone is its own input,
 * named once (`lora.ckpt`, not `lora.ckpt/lora.ckpt`); a file in a folder is `name`, `separator`, `path`.
 */
export function pathIn(name: string, path: string, separator: ': ' | '/'): string {
  return name === path || name.endsWith(`/${path}`) ? name : `${name}${separator}${path}`;
}
