/**
 * Files on a web server as ByteSources and an InputFileSet: each read is one HTTP Range request, so
 * a multi-GB base is never downloaded whole. The server must answer Range requests with 206 and
 * allow them cross-origin (Hugging Face's `resolve/` URLs do).
 */
import { MergeError } from '../errors.js';
import { keyedFileSet } from './keyed-file-set.js';
import { decodeUtf8 } from './strict-utf8.js';
import { checkReadRange } from './read-range.js';
import type { ByteSource, InputFileSet } from './types.js';

/** The `fetch` to use: the global one by default; tests and proxies pass their own. */
export type FetchFunction = (input: string, init?: RequestInit) => Promise<Response>;

/** A file behind `url` as a ByteSource; its size comes from a HEAD request (or a one-byte GET). */
export async function urlByteSource(url: string | URL, fetchFn: FetchFunction = globalThis.fetch): Promise<ByteSource> {
  const href = String(url);
  const size = await remoteSize(href, fetchFn);
  return {
    name: href,
    size,
    async read(offset: number, length: number): Promise<Uint8Array> {
      checkReadRange(href, size, offset, length);
      if (length === 0) return new Uint8Array(0);
      const response = await request(href, fetchFn, { headers: { Range: `bytes=${offset}-${offset + length - 1}` } });
      if (response.status !== 206 && !(response.status === 200 && offset === 0 && length === size)) {
        throw new MergeError('UNSUPPORTED_FORMAT', `${href}: the server ignored a Range request (HTTP ${response.status}); download the file first`);
      }
      const bytes = new Uint8Array(await response.arrayBuffer());
      if (bytes.byteLength !== length) throw new MergeError('TRUNCATED', `${href}: got ${bytes.byteLength} of ${length} bytes at ${offset}`);
      return bytes;
    },
    async close(): Promise<void> {},
  };
}

/**
 * Remote files as one InputFileSet, each named by the last segment of its URL path
 * (`…/adapter_config.json` → `adapter_config.json`), as if they were one folder.
 */
export function urlInputFileSet(urls: readonly (string | URL)[], name?: string, fetchFn: FetchFunction = globalThis.fetch): InputFileSet {
  const files = new Map<string, string>();
  for (const url of urls) {
    const href = String(url);
    const path = decodeURIComponent(new URL(href).pathname.split('/').filter(Boolean).pop() ?? '');
    if (!path) throw new MergeError('BAD_ARGUMENT', `${href}: names no file`);
    if (files.has(path)) throw new MergeError('BAD_ARGUMENT', `${href}: a second file named "${path}"`);
    files.set(path, href);
  }
  const setName = name ?? (urls.length === 1 ? String(urls[0]) : String(urls[0]).replace(/\/[^/]*$/, ''));
  return keyedFileSet(setName, files, {
    open: (href) => urlByteSource(href, fetchFn),
    readText: async (href) => decodeUtf8(new Uint8Array(await (await request(href, fetchFn)).arrayBuffer()), href),
  });
}

async function request(href: string, fetchFn: FetchFunction, init?: RequestInit): Promise<Response> {
  let response: Response;
  try {
    response = await fetchFn(href, init);
  } catch (e) {
    throw new MergeError('NOT_FOUND', `${href}: could not be fetched (${e instanceof Error ? e.message : String(e)})`, { cause: e });
  }
  if (!response.ok) throw new MergeError('NOT_FOUND', `${href}: HTTP ${response.status}`);
  return response;
}

async function remoteSize(href: string, fetchFn: FetchFunction): Promise<number> {
  const head = await request(href, fetchFn, { method: 'HEAD' });
  const length = Number(head.headers.get('content-length'));
  if (Number.isSafeInteger(length) && length > 0 && !head.headers.get('content-encoding')) return length;
  // No usable length (compressed or chunked): a one-byte range names the total after the slash.
  const probe = await request(href, fetchFn, { headers: { Range: 'bytes=0-0' } });
  await probe.arrayBuffer();
  const total = Number(probe.headers.get('content-range')?.split('/')[1]);
  if (!Number.isSafeInteger(total)) throw new MergeError('UNSUPPORTED_FORMAT', `${href}: the server does not say how large the file is`);
  return total;
}
