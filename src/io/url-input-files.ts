/**
 * Files on a web server as ByteSources and an InputFileSet: each read is one HTTP Range request, so
 * a multi-GB base is never downloaded whole. The server must answer Range requests with 206 and
 * allow them cross-origin (Hugging Face's `resolve/` URLs do).
 *
 * A server can misbehave in ways a disk cannot, and each is refused naming the URL rather than
 * waited on or merged: a 200 with the whole file to a Range request, a body shorter or longer than
 * asked, a 206 of another range than asked (or, to a config's whole-file GET, of part of it), a
 * compressed range (its offsets would be of compressed bytes), a file that changes between
 * requests (another ETag, Last-Modified or total size), a
 * redirect loop, an HTTP error, and a response that stops sending: no byte for
 * URL_IDLE_TIMEOUT_MS ends the request. A server that refuses HEAD is asked for one byte instead.
 */
import { badArgument, checkCallback, checkOptions, checkSignal, shown } from '../api-arguments.js';
import { MergeError, throwIfAborted, type MergeErrorCode } from '../errors.js';
import { MAX_CONFIG_BYTES, URL_IDLE_TIMEOUT_MS } from '../limits.js';
import { hfTokenScope, type HfEndpoint } from './hf-endpoint.js';
import { explicitHfAuth } from './hf-token-option.js';
import { innermostMessage, networkFailureReason } from './network-failure.js';
import { keyedFileSet } from './keyed-file-set.js';
import { decodeUtf8 } from './strict-utf8.js';
import { checkReadRange } from './read-range.js';
import type { ByteSource, InputFileSet } from './types.js';

/**
 * Who answered a request, as far as a login goes: `token` a Hugging Face host that was sent the
 * token; `no-token` a Hugging Face host that was sent none, where the caller could have given one
 * (an `hfToken` option, or a token the Node entry points find); `other` anything else (another
 * host, a signed link, a relative URL).
 */
type LoginState = 'token' | 'no-token' | 'other';

/**
 * What to do about an HTTP error, where the status says: a file behind a login (a gated Hugging
 * Face model answers 401 or 403; a signed link that expired, 403) is read with the user's own
 * access: a Hugging Face token where the Node entry points found one, else none.
 */
function httpAdvice(status: number, login: LoginState, hfAuth: HfAuth | undefined): string {
  if ((status === 401 || status === 403) && login === 'token') {
    return '; the Hugging Face token was refused: check that it is valid and that your account has accepted the model\'s terms on its page';
  }
  if ((status === 401 || status === 403) && login === 'no-token' && hfAuth) return `; the file needs a login (a gated model): ${hfAuth.noTokenAdvice}`;
  if (status === 401 || status === 403) return '; the file needs a login or a fresh link (a gated model): download it with your account and give the file instead';
  if (status === 404 || status === 410) return '; check the URL';
  if (status === 429 || status >= 500) return '; the server is busy or failing: try again later';
  // Only asked for bytes within the size the file had when it was opened.
  if (status === 416) return '; the file on the server is shorter than when it was first read: it changed, so try again once it stays unchanged';
  return '';
}

/** The `fetch` to use: the global one by default; tests and proxies pass their own. */
export type FetchFunction = (input: string, init?: RequestInit) => Promise<Response>;

/** How remote files are fetched. */
export interface UrlInputOptions {
  /** The `fetch` to use (default: the global one). */
  fetch?: FetchFunction;
  /** Cancels every request in flight and every later one (code ABORTED). */
  signal?: AbortSignal;
  /** Milliseconds without a byte from the server before a request is given up (default URL_IDLE_TIMEOUT_MS). */
  idleTimeoutMs?: number;
  /**
   * A Hugging Face token, for gated and private repositories: sent (`Authorization: Bearer …`) only
   * over https to huggingface.co and hf.co themselves, never over plain http, never to another host,
   * and never past a redirect to another host (Hugging Face's downloads redirect to signed links on
   * their CDN, which must not get it). Where the platform hides where a redirect leads (a browser
   * answers `redirect: 'manual'` with an opaque response), the request is sent again for the browser
   * to follow, and the browser drops the token at a hop to another origin, as the Fetch standard
   * has it. Left out or `false`, none is sent: the browser entry reads no environment or file.
   */
  hfToken?: string | false;
}

/**
 * The Hugging Face token of a call: the `hfToken` option (hf-token-option.ts), or what a Node entry
 * point finds (the command line, `loramerge/node`: hf-token.ts). `token()` is asked only for a
 * request to a host the token goes to, so a token file is read only when one is needed; it returns
 * undefined where none was given or found, or it was turned off (a 401/403 from Hugging Face then
 * says how to give one).
 */
export interface HfAuth {
  token(): string | undefined;
  /** What to do when Hugging Face wants a login and no token was sent (no token found, or turned off). */
  readonly noTokenAdvice: string;
  /** The Hub HF_ENDPOINT names, whose origin gets the token too (hf-endpoint.ts); undefined where it is unset. */
  readonly endpoint: HfEndpoint | undefined;
}

interface Resolved {
  fetchFn: FetchFunction;
  /** A fetch of the caller's own, which may know schemes other than http(s). */
  customFetch: boolean;
  signal?: AbortSignal;
  idleTimeoutMs: number;
  /** The call's token (hfToken, or what a Node entry point finds); none for a relative URL's requests. */
  hfAuth?: HfAuth;
  /**
   * Set once a `redirect: 'manual'` request came back opaque (a browser's answer: its status and
   * Location are hidden): later requests with the token let the fetch follow redirects at once.
   */
  redirectsHidden?: boolean;
}

/** The options `urlByteSource` and `urlInputFileSet` take. */
export const URL_INPUT_OPTION_NAMES: readonly string[] = ['fetch', 'signal', 'idleTimeoutMs', 'hfToken'];

/** The `hfToken` of options given as an object (a bare fetch function has none). */
export function hfTokenOf(options: FetchFunction | UrlInputOptions | undefined): unknown {
  return typeof options === 'object' && options !== null ? (options as { hfToken?: unknown }).hfToken : undefined;
}

function resolve(options: FetchFunction | UrlInputOptions | undefined, hfAuth?: HfAuth, optionNames = URL_INPUT_OPTION_NAMES): Resolved {
  if (typeof options !== 'function' && options !== undefined) {
    checkOptions('URL input options', options, optionNames);
    checkCallback('fetch', options.fetch);
    checkSignal('signal', options.signal);
    if (options.idleTimeoutMs !== undefined && !(typeof options.idleTimeoutMs === 'number' && options.idleTimeoutMs > 0)) {
      throw badArgument(`idleTimeoutMs must be a positive number of milliseconds, not ${shown(options.idleTimeoutMs)}`);
    }
  }
  const o = typeof options === 'function' ? { fetch: options } : options ?? {};
  return { fetchFn: o.fetch ?? globalThis.fetch, customFetch: o.fetch !== undefined, signal: o.signal, idleTimeoutMs: o.idleTimeoutMs ?? URL_IDLE_TIMEOUT_MS, hfAuth };
}

/** The global fetch range-reads only http(s): a URL of another scheme is refused unless the fetch is the caller's own. */
function checkScheme(href: string, o: Resolved): void {
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(href)?.[1].toLowerCase();
  if (!o.customFetch && scheme !== undefined && scheme !== 'http' && scheme !== 'https') {
    throw badArgument(`${href}: only http:// and https:// URLs are read (pass a File or Blob for other bytes)`);
  }
}

/** What identifies one version of the file: a change between requests means it was replaced. */
interface Version {
  etag: string | null;
  lastModified: string | null;
}

const NO_VERSION: Version = { etag: null, lastModified: null };

/** Why a response is not taken, as the error it becomes (the URL is put before the message). */
interface Refusal {
  code: MergeErrorCode;
  message: string;
}

const ignoredRange = (response: Response): Refusal => ({
  code: 'UNSUPPORTED_FORMAT', message: `the server ignored a Range request (HTTP ${response.status} instead of 206); download the file first`,
});

/**
 * A web page where a file was asked for: most often a mistyped URL on a site that answers every
 * path with its page (a single-page app's fallback, as Vite's servers give, or a login page), whose
 * 200 would otherwise read as a server ignoring Range, or as a file that is no model.
 */
const webPage = (response: Response): Refusal | undefined =>
  response.ok && /^\s*text\/html\b/i.test(response.headers.get('content-type') ?? '') ? {
    code: 'NOT_FOUND',
    message: 'the server answered with a web page (Content-Type: text/html), not the file; check the URL (a site that answers every path with its page sends one for a file it does not have)',
  } : undefined;

/** The response's Content-Encoding when it is not the file's own bytes (gzip, br …), else null. */
function encodingOf(response: Response): string | null {
  const encoding = response.headers.get('content-encoding');
  return encoding && encoding.toLowerCase() !== 'identity' ? encoding : null;
}

/**
 * A file behind `url` as a ByteSource; its size comes from a HEAD request (or a one-byte GET). The
 * `hfToken` option is sent as {@link UrlInputOptions.hfToken} says; a bad one is a BAD_ARGUMENT.
 */
export async function urlByteSource(url: string | URL, options?: FetchFunction | UrlInputOptions): Promise<ByteSource> {
  return urlByteSourceWithAuth(url, options, explicitHfAuth(hfTokenOf(options)));
}

/**
 * {@link urlByteSource} with the call's Hugging Face token `hfAuth` (sent only where hfTokenScope
 * says; the Node entry points find one), and `optionNames` the options the caller takes.
 */
export async function urlByteSourceWithAuth(
  url: string | URL, options: FetchFunction | UrlInputOptions | undefined, hfAuth: HfAuth | undefined, optionNames = URL_INPUT_OPTION_NAMES,
): Promise<ByteSource> {
  if (typeof url !== 'string' && !(url instanceof URL)) throw badArgument(`urlByteSource: url must be a URL or a string, not ${shown(url)}`);
  const href = String(url);
  const o = resolve(options, hfAuth, optionNames);
  checkScheme(href, o);
  return openByteSource(href, o);
}

async function openByteSource(href: string, o: Resolved): Promise<ByteSource> {
  const { size, version } = await remoteSize(href, o);
  return {
    name: href,
    size,
    async read(offset: number, length: number): Promise<Uint8Array> {
      checkReadRange(href, size, offset, length);
      if (length === 0) return new Uint8Array(0);
      const what = `bytes ${offset}–${offset + length - 1}`;
      return fetchBody(href, o, what, { headers: { Range: `bytes=${offset}-${offset + length - 1}`, 'Accept-Encoding': 'identity' } }, length, (response) => {
        if (response.status !== 206 && !(response.status === 200 && offset === 0 && length === size)) return ignoredRange(response);
        const total = response.status === 206 ? Number(response.headers.get('content-range')?.split('/')[1]) : size;
        return rangeRefusal(version, response, total, size) ?? (response.status === 206 ? otherRange(response, offset, length, what) : undefined);
      });
    },
    async close(): Promise<void> {},
  };
}

/**
 * A URL as fetch reads it: a relative one against the page's (or worker's) location. Without a
 * location (Node) a string that is no absolute URL is most likely a path, so the refusal says
 * where paths go; `new URL` would throw a bare "Invalid URL" naming neither.
 */
function absoluteUrl(text: string): string {
  const base = (globalThis as { location?: { href?: string } }).location?.href;
  try {
    return new URL(text, base).href;
  } catch {
    const hint = base === undefined ? '; a path is opened with openNodeInputFileSet (loramerge/node), or given to merge() from loramerge/node' : '';
    throw new MergeError('BAD_ARGUMENT', `"${text}" is not a URL${hint}`);
  }
}

/**
 * Remote files as one InputFileSet, each named by the last segment of its URL path
 * (`…/adapter_config.json` → `adapter_config.json`), as if they were one folder. With the global
 * fetch only http(s) URLs are taken (a `fetch` of your own may know other schemes); `urls` that is
 * no array, a URL of another scheme, or a bad `hfToken` is a BAD_ARGUMENT MergeError. The `hfToken`
 * option is sent as {@link UrlInputOptions.hfToken} says.
 */
export function urlInputFileSet(urls: readonly (string | URL)[], name?: string, options?: FetchFunction | UrlInputOptions): InputFileSet {
  return urlInputFileSetWithAuth(urls, name, options, explicitHfAuth(hfTokenOf(options)));
}

/**
 * {@link urlInputFileSet} with the call's Hugging Face token `hfAuth` (sent only where hfTokenScope
 * says; the Node entry points find one), and `optionNames` the options the caller takes.
 */
export function urlInputFileSetWithAuth(
  urls: readonly (string | URL)[], name: string | undefined, options: FetchFunction | UrlInputOptions | undefined,
  hfAuth: HfAuth | undefined, optionNames = URL_INPUT_OPTION_NAMES,
): InputFileSet {
  if (!Array.isArray(urls)) throw badArgument(`urlInputFileSet: urls must be an array of URLs${typeof urls === 'string' || urls instanceof URL ? ' (wrap a single one in [ ])' : ''}, not ${shown(urls)}`);
  if (urls.length === 0) throw badArgument('urlInputFileSet: urls is an empty array; give at least one URL');
  const o = resolve(options, hfAuth, optionNames);
  const files = new Map<string, string>();
  for (const [i, url] of urls.entries()) {
    if (typeof url !== 'string' && !(url instanceof URL)) throw badArgument(`urlInputFileSet: urls[${i}] must be a URL or a string, not ${shown(url)}`);
    const href = absoluteUrl(String(url));
    checkScheme(href, o);
    const path = decodeURIComponent(new URL(href).pathname.split('/').filter(Boolean).pop() ?? '');
    if (!path) throw new MergeError('BAD_ARGUMENT', `${href}: names no file`);
    if (files.has(path)) throw new MergeError('BAD_ARGUMENT', `${href}: a second file named "${path}"`);
    files.set(path, href);
  }
  const setName = name ?? (urls.length === 1 ? String(urls[0]) : String(urls[0]).replace(/\/[^/]*$/, ''));
  return keyedFileSet(setName, files, {
    open: (href) => openByteSource(href, o),
    readText: (href) => readWholeText(href, o),
  });
}

/**
 * A config or index read whole: its size capped as a file's is (`.text()` would take any). A server
 * may answer the GET with 206 Partial Content (no Range was asked): taken where its Content-Range
 * is the whole file, as the bytes then are; refused where it is part, or says nothing of which bytes
 * it is, rather than parsed as a config cut short.
 */
async function readWholeText(href: string, o: Resolved): Promise<string> {
  let range: { start: number; end: number; total: number } | undefined;
  let encoded = false;
  const bytes = await fetchBody(href, o, 'the file', {}, MAX_CONFIG_BYTES, (response) => {
    const page = webPage(response);
    if (page || response.status !== 206) return page;
    encoded = encodingOf(response) !== null;
    const m = /^\s*bytes\s+(\d+)-(\d+)\s*\/\s*(\d+)\s*$/i.exec(response.headers.get('content-range') ?? '');
    const partial = (what: string): Refusal => ({
      code: 'UNSUPPORTED_FORMAT', message: `the server sent ${what} when asked for the whole file; serve it whole (HTTP 200) or download the file first`,
    });
    if (!m) {
      const named = response.headers.get('content-range') === null ? 'without a Content-Range' : 'with a Content-Range that names no byte range';
      return partial(`part of the file (HTTP 206 Partial Content, ${named})`);
    }
    range = { start: Number(m[1]), end: Number(m[2]), total: Number(m[3]) };
    if (range.start !== 0 || range.end !== range.total - 1) return partial(`bytes ${m[1]}–${m[2]} of its ${m[3]} (HTTP 206 Partial Content)`);
    return undefined;
  }, true);
  // A whole-file 206 must hold what its Content-Range says: every byte. A compressed one counts
  // the compressed bytes, which fetch has already inflated (and checked) into these.
  if (range && !encoded && bytes.byteLength !== range.total) {
    const short = new MergeError('TRUNCATED', `${href}: got ${bytes.byteLength} of ${range.total} bytes for the file`);
    requestFailures.add(short);
    throw short;
  }
  return decodeUtf8(bytes, href);
}

/**
 * A 206 whose Content-Range names other bytes than those asked for (its body would be taken for
 * them, and merged as such), or undefined. A 206 without a Content-Range is judged by its length.
 */
function otherRange(response: Response, offset: number, length: number, what: string): Refusal | undefined {
  const m = /^\s*bytes\s+(\d+)-(\d+)\s*\//i.exec(response.headers.get('content-range') ?? '');
  if (!m || (Number(m[1]) === offset && Number(m[2]) === offset + length - 1)) return undefined;
  return { code: 'UNSUPPORTED_FORMAT', message: `the server sent bytes ${m[1]}–${m[2]} when asked for ${what}; download the file first` };
}

/** Why a range response cannot be taken as the file's bytes: compressed, or of another version. */
function rangeRefusal(version: Version, response: Response, total: number, size: number): Refusal | undefined {
  const encoding = encodingOf(response);
  if (encoding) {
    return { code: 'UNSUPPORTED_FORMAT', message: `the server compressed a byte range (Content-Encoding: ${encoding}), so its offsets are not the file's; serve the file uncompressed` };
  }
  return changed(version, response, total, size);
}

/**
 * The opaque part of an ETag: compared weakly (RFC 9110, 8.8.3.2), since a server or proxy may weaken
 * the tag of the same bytes from one answer to the next; a compressed answer, the usual reason, is
 * refused on its own (Content-Encoding), and the size and Last-Modified are still compared.
 */
const opaqueTag = (etag: string): string => (etag.startsWith('W/') ? etag.slice(2) : etag);

/** Why a range response is not of the version first seen, or undefined. */
function changed(version: Version, response: Response, total: number, size: number): Refusal | undefined {
  const etag = response.headers.get('etag');
  const lastModified = response.headers.get('last-modified');
  const was = version.etag !== null && etag !== null && opaqueTag(etag) !== opaqueTag(version.etag) ? `ETag ${version.etag} → ${etag}`
    : version.lastModified !== null && lastModified !== null && lastModified !== version.lastModified ? `Last-Modified ${version.lastModified} → ${lastModified}`
      : Number.isSafeInteger(total) && total !== size ? `${size} → ${total} bytes` : undefined;
  return was === undefined ? undefined
    : { code: 'INPUT_CHANGED', message: `changed on the server while it was read (${was}); nothing was written; try again once it stays unchanged` };
}

/** The errors of requests: what the server answered (or did not), not what the file holds. */
const requestFailures = new WeakSet<object>();

/**
 * Did `e` come of a request to a server (an HTTP error, a response refused or broken off, a
 * timeout), rather than of the file's bytes? Such an error says nothing of what the file is.
 */
export function isRequestFailure(e: unknown): boolean {
  return typeof e === 'object' && e !== null && requestFailures.has(e);
}

/** The HTTP status of each error that refused one (a 404 …), by the error. */
const httpStatuses = new WeakMap<object, number>();

/**
 * The HTTP status a server answered where `e` is the refusal of that answer (404 for a missing
 * file), else undefined: a caller that may look for a file that is not there (a PEFT adapter's
 * config beside its weights) tells "not there" from every other failure by it.
 */
export function httpStatusOf(e: unknown): number | undefined {
  return typeof e === 'object' && e !== null ? httpStatuses.get(e) : undefined;
}

/**
 * One request and its whole body, at most `limit` bytes (exactly `limit` unless `upTo`), with the
 * idle timeout and the caller's signal over both; `check` refuses a response by its headers. An
 * HTTP error is refused naming its status, unless `tolerated` takes it (it is then given to `check`).
 * Every error it throws is a request failure (isRequestFailure).
 */
async function fetchBody(
  href: string, o: Resolved, what: string, init: RequestInit, limit: number,
  check: (response: Response) => Refusal | undefined, upTo = false, tolerated?: (status: number) => boolean,
): Promise<Uint8Array> {
  try {
    return await requestBody(href, o, what, init, limit, check, upTo, tolerated);
  } catch (e) {
    if (typeof e === 'object' && e !== null) requestFailures.add(e);
    throw e;
  }
}

async function requestBody(
  href: string, o: Resolved, what: string, init: RequestInit, limit: number,
  check: (response: Response) => Refusal | undefined, upTo: boolean, tolerated?: (status: number) => boolean,
): Promise<Uint8Array> {
  const controller = new AbortController();
  let timedOut = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const idle = () => {
    clearTimeout(timer);
    timer = setTimeout(() => { timedOut = true; controller.abort(); }, o.idleTimeoutMs);
  };
  const cancel = () => controller.abort();
  throwIfAborted(o.signal);
  o.signal?.addEventListener('abort', cancel, { once: true });
  const fail = (e: unknown, where: string): MergeError => {
    if (e instanceof MergeError) return e;
    if (o.signal?.aborted) return new MergeError('ABORTED', 'merge cancelled', { cause: e });
    if (timedOut) return new MergeError('TRUNCATED', `${href}: the server sent nothing for ${o.idleTimeoutMs / 1000} s ${where} ${what}; gave up (check the server or the connection)`, { cause: e });
    if (where === 'while sending') return new MergeError('NOT_FOUND', `${href}: the response broke off while sending ${what} (${innermostMessage(e)})`, { cause: e });
    const known = networkFailureReason(e, href);
    return new MergeError('NOT_FOUND', `${href}: could not be fetched for ${what}${known === undefined ? ` (${innermostMessage(e)})` : `: ${known}`}`, { cause: e });
  };
  idle();
  try {
    let response: Response;
    let login: LoginState;
    try {
      ({ response, login } = await send(href, o, init, controller.signal, what));
    } catch (e) {
      throw fail(e, 'before answering for');
    }
    try {
      if (!response.ok && !tolerated?.(response.status)) {
        const refusal = new MergeError('NOT_FOUND', `${href}: HTTP ${response.status}${response.statusText ? ` ${response.statusText}` : ''} for ${what}${httpAdvice(response.status, login, o.hfAuth)}`);
        httpStatuses.set(refusal, response.status);
        throw refusal;
      }
      const refused = check(response);
      if (refused) throw new MergeError(refused.code, `${href}: ${refused.message}`);
    } catch (e) {
      // The body of a refused response (perhaps the whole file) is not downloaded.
      await response.body?.cancel().catch(() => undefined);
      throw e;
    }
    const out = new Uint8Array(limit);
    let got = 0;
    const reader = response.body?.getReader();
    try {
      for (;;) {
        idle();
        let chunk: ReadableStreamReadResult<Uint8Array>;
        try {
          chunk = reader ? await reader.read() : { done: true, value: undefined };
        } catch (e) {
          throw fail(e, 'while sending');
        }
        if (chunk.done) break;
        if (got + chunk.value.byteLength > limit) {
          throw upTo
            ? new MergeError('LIMIT_EXCEEDED', `${href}: more than ${limit} bytes is too large for a config or index (the limit MAX_CONFIG_BYTES is ${MAX_CONFIG_BYTES})`)
            : new MergeError('TRUNCATED', `${href}: the server sent more than the ${limit} bytes asked for ${what}`);
        }
        out.set(chunk.value, got);
        got += chunk.value.byteLength;
      }
    } catch (e) {
      await reader?.cancel().catch(() => undefined);
      throw e;
    }
    if (!upTo && got !== limit) throw new MergeError('TRUNCATED', `${href}: got ${got} of ${limit} bytes for ${what}`);
    return upTo ? out.slice(0, got) : out;
  } finally {
    clearTimeout(timer);
    o.signal?.removeEventListener('abort', cancel);
  }
}

const REDIRECT_STATUSES: ReadonlySet<number> = new Set([301, 302, 303, 307, 308]);
/** As many redirects as fetch follows by itself (the Fetch standard's limit). */
const MAX_REDIRECTS = 20;

/**
 * One request, redirects followed, and who answered it (for the advice on a 401/403). Without a
 * token, fetch follows the redirects itself, as it always has. With one, each redirect is followed
 * here (`redirect: 'manual'`), so the token goes with the first hops while they stay where
 * hfTokenScope puts the URL first asked (Hugging Face's hosts, or HF_ENDPOINT's origin), and with
 * no hop from the first one elsewhere on: a Hugging Face download link redirects to a signed link
 * on another host, which must not get it (huggingface_hub drops it there too), and how fetch itself
 * treats an Authorization header across hosts has varied.
 */
async function send(href: string, o: Resolved, init: RequestInit, signal: AbortSignal, what: string): Promise<{ response: Response; login: LoginState }> {
  // A relative URL (a page's) is fetch's to resolve, and no Hub URL: it goes as it is, with no token.
  const start = o.hfAuth === undefined ? undefined : safeUrl(href);
  const endpoint = o.hfAuth?.endpoint;
  const scope = start === undefined ? undefined : hfTokenScope(start, endpoint);
  const token = scope !== undefined ? o.hfAuth!.token() : undefined;
  // Called bare, never as `o.fetchFn(…)`: a browser's fetch (the global one, or `window.fetch`
  // passed as an option) throws "Illegal invocation" when `this` is anything but the global object.
  const fetchFn = o.fetchFn;
  if (start === undefined || token === undefined) {
    const response = await fetchFn(href, { ...init, signal });
    const answered = safeUrl(response.url || href);
    return { response, login: o.hfAuth !== undefined && answered !== undefined && hfTokenScope(answered, endpoint) !== undefined ? 'no-token' : 'other' };
  }
  if (o.redirectsHidden) return followedByBrowser(start, token, init, signal, fetchFn);
  let url = start;
  let withToken = true;
  for (let redirects = 0; ; redirects++) {
    // Once a hop has left the token's place, no later one gets it, wherever it leads.
    withToken &&= hfTokenScope(url, endpoint) === scope;
    const headers: Record<string, string> = { ...(init.headers as Record<string, string> | undefined) };
    if (withToken) headers.Authorization = `Bearer ${token}`;
    const response = await fetchFn(url.href, { ...init, headers, redirect: 'manual', signal });
    if (response.type === 'opaqueredirect') {
      // A browser hides a redirect's status and Location from the page (and from a worker): this
      // hop, still on the token's host (the first, or one whose Location was seen), is asked again
      // for the browser to follow, which drops the token at a hop to another origin.
      o.redirectsHidden = true;
      return followedByBrowser(url, withToken ? token : undefined, init, signal, fetchFn);
    }
    const location = REDIRECT_STATUSES.has(response.status) ? response.headers.get('location') : null;
    if (location === null) return { response, login: withToken ? 'token' : 'other' };
    await response.body?.cancel().catch(() => undefined);
    if (redirects === MAX_REDIRECTS) throw new MergeError('NOT_FOUND', `${href}: could not be fetched for ${what} (redirect count exceeded)`);
    const next = safeUrl(location, url);
    if (next === undefined || (next.protocol !== 'https:' && next.protocol !== 'http:')) {
      throw new MergeError('NOT_FOUND', `${href}: could not be fetched for ${what} (redirected to ${next === undefined ? 'an invalid URL' : `a URL of scheme ${next.protocol}`})`);
    }
    url = next;
  }
}

/**
 * A request with the token where the fetch follows the redirects itself (a browser's, which hides
 * them from `redirect: 'manual'`): it drops the Authorization header at a redirect to another origin
 * (the Fetch standard's HTTP-redirect fetch), so only the Hugging Face host asked gets the token.
 */
async function followedByBrowser(
  url: URL, token: string | undefined, init: RequestInit, signal: AbortSignal, fetchFn: FetchFunction,
): Promise<{ response: Response; login: LoginState }> {
  const headers: Record<string, string> = { ...(init.headers as Record<string, string> | undefined) };
  if (token !== undefined) headers.Authorization = `Bearer ${token}`;
  const response = await fetchFn(url.href, { ...init, headers, redirect: 'follow', signal });
  // An error after a redirect came from the host it led to, which got no token: not the token refused.
  const answered = safeUrl(response.url || url.href);
  return { response, login: token !== undefined && (answered === undefined || answered.origin === url.origin) ? 'token' : 'other' };
}

/** `text` as a URL (relative to `base`), or undefined where it is none. */
function safeUrl(text: string, base?: URL): URL | undefined {
  try {
    return new URL(text, base);
  } catch {
    return undefined;
  }
}

async function remoteSize(href: string, o: Resolved): Promise<{ size: number; version: Version }> {
  let head: Response | undefined;
  // A server may refuse HEAD (405 Method Not Allowed, 501 Not Implemented) and still serve ranges:
  // the one-byte range below then says the size.
  await fetchBody(href, o, 'its size (HEAD)', { method: 'HEAD', headers: { 'Accept-Encoding': 'identity' } }, 0, (response) => { head = response; return webPage(response); },
    false, (status) => status === 405 || status === 501);
  const length = Number(head!.headers.get('content-length'));
  const version = (r: Response): Version => ({ etag: r.headers.get('etag'), lastModified: r.headers.get('last-modified') });
  if (head!.ok && Number.isSafeInteger(length) && length > 0 && !encodingOf(head!)) return { size: length, version: version(head!) };
  // No usable length (chunked, or the compressed body's): a one-byte range names the total after the slash.
  let probe: Response | undefined;
  await fetchBody(href, o, 'its size (bytes 0–0)', { headers: { Range: 'bytes=0-0', 'Accept-Encoding': 'identity' } }, 1, (response) => {
    probe = response;
    return webPage(response) ?? (response.status === 206 ? rangeRefusal(NO_VERSION, response, NaN, NaN) : ignoredRange(response));
  }, true);
  const total = Number(probe!.headers.get('content-range')?.split('/')[1]);
  if (!Number.isSafeInteger(total)) throw new MergeError('UNSUPPORTED_FORMAT', `${href}: the server does not say how large the file is`);
  return { size: total, version: version(probe!) };
}
