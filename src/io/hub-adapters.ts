/**
 * PEFT adapters named by a Hugging Face Hub URL, as the command line, both `merge()` entries and
 * the adapter jobs (`combineLoras`, `resizeLora`) take them: a model repository
 * (`https://huggingface.co/ORG/NAME`), a `tree/REV[/SUBFOLDER…]` page, or the `resolve/` link of an
 * `adapter_model.safetensors`, each read as the PEFT folder of `adapter_config.json` +
 * `adapter_model.safetensors` at `resolve/REV/[SUBFOLDER/]`. The Hub is
 * huggingface.co and hf.co (HF_TOKEN_HOSTS), and the Hub at HF_ENDPOINT where a Node entry passes
 * it (hf-endpoint.ts). No Hub API is asked: the two files are fetched by their download links.
 * A Hub URL that cannot be the source it is given as (a `blob/` page; a repository or `tree/` page
 * where one file is read) is refused here for all of them, before any request (checkHubSourceUrl).
 *
 * Platform-neutral: each entry passes its HfAuth (the Node entries their found or given token and endpoint, the browser entry its hfToken option).
 */
import { MergeError } from '../errors.js';
import type { HfEndpoint } from './hf-endpoint.js';
import { HF_TOKEN_HOSTS } from './hf-token-hosts.js';
import type { InputFileSet } from './types.js';
import { httpStatusOf, urlInputFileSetWithAuth, type HfAuth, type UrlInputOptions } from './url-input-files.js';

/** The file name of a PEFT adapter's weights, the one a Hub link may name for its folder. */
export const PEFT_WEIGHTS = 'adapter_model.safetensors';
/** The file name of a PEFT adapter's config (r, lora_alpha, …). */
export const PEFT_CONFIG = 'adapter_config.json';

/** A URL's place on a Hub: the Hub's root and the URL's path segments after it. */
interface HubPath {
  /** Where the Hub's repositories are: `https://HOST` (huggingface.co or hf.co, without `www.`), or HF_ENDPOINT's origin and path. */
  root: string;
  /** The path's segments after the root, as typed (percent-encoded); empty ones kept. */
  segments: string[];
}

/**
 * Where `url` is on a Hub, or undefined where it is on none: huggingface.co or hf.co (the host with
 * its port where not the default, or that with `www.` before it; any scheme, read at https), or
 * HF_ENDPOINT's host under its path (read at the endpoint's own scheme).
 */
function hubPathOf(url: URL, endpoint: HfEndpoint | undefined): HubPath | undefined {
  const host = url.host.replace(/^www\./, '');
  if (HF_TOKEN_HOSTS.includes(host)) return { root: `https://${host}`, segments: url.pathname.split('/').slice(1) };
  if (endpoint === undefined || url.host !== new URL(endpoint.origin).host) return undefined;
  const { path } = endpoint;
  if (path !== '' && url.pathname !== path && !url.pathname.startsWith(`${path}/`)) return undefined;
  return { root: `${endpoint.origin}${path}`, segments: url.pathname.slice(path.length).split('/').slice(1) };
}

/** A Hub web page a URL names: its kind, and the index of that segment in `url.pathname.split('/')`. */
interface HubPage {
  kind: 'blob' | 'tree';
  index: number;
}

/**
 * A Hub web page, which is HTML: `…/blob/<rev>/<file>` about a file, `…/tree/<rev>` of a folder
 * (of a model, dataset or Space repository); undefined for any other URL. A URL that names a file
 * refuses the first (its download link is `resolve/`) and the second.
 */
function hubPageOf(url: URL, endpoint: HfEndpoint | undefined): HubPage | undefined {
  const hub = hubPathOf(url, endpoint);
  if (hub === undefined) return undefined;
  // ORG/REPO/blob/…, or datasets|spaces/ORG/REPO/blob/…
  const at = hub.segments[0] === 'datasets' || hub.segments[0] === 'spaces' ? 3 : 2;
  const kind = hub.segments[at];
  if (kind !== 'blob' && kind !== 'tree') return undefined;
  // The Hub's segments end the path; before them, '' and HF_ENDPOINT's own path segments.
  return { kind, index: url.pathname.split('/').length - hub.segments.length + at };
}

/**
 * The refusal of a URL that names a folder where `what` takes one file: say so, and what to give
 * (one file's URL, or the folder downloaded: `folderAdvice`, by default its path).
 */
export function folderUrlRefusal(href: string, what: string, folderAdvice = 'download the folder and give its path'): MergeError {
  return new MergeError('BAD_ARGUMENT', `${href}: names a folder; ${what} takes the URL of one file (such as …/resolve/main/model.safetensors), or ${folderAdvice}`);
}

/** A URL path segment percent-decoded, as the Hub decodes it; bad percent-encoding is refused naming the URL. */
export function decodedSegment(segment: string, href: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new MergeError('BAD_ARGUMENT', `${href}: the URL's path is not valid percent-encoding; check the URL`);
  }
}

/** Where a Hub URL of a model repository says a PEFT adapter is. */
export interface HubAdapterFolder {
  /** `ROOT/ORG/NAME/resolve/REV/[SUBFOLDER/]` (ROOT as in hubPathOf): the adapter's files are read there. */
  folder: string;
  /** The URL was the weights' own download link (`…/resolve/REV/…/adapter_model.safetensors`), not a repository or `tree/` page. */
  weightsLink: boolean;
}

/**
 * The adapter folder a Hub URL of a model repository names: the repository (`ORG/NAME`, revision
 * `main`), a `tree/REV[/SUBFOLDER…]` page, or the `resolve/` link of an `adapter_model.safetensors`;
 * undefined for any other URL (another host, a dataset or Space, another file, no URL). The
 * revision and folders are kept as typed (percent-encoded, as the Hub's own links are), so a
 * revision such as `refs%2Fpr%2F1` stays one segment; bad percent-encoding is a BAD_ARGUMENT.
 */
export function hubAdapterFolder(href: string, endpoint: HfEndpoint | undefined): HubAdapterFolder | undefined {
  let url: URL;
  try {
    url = new URL(href);
  } catch {
    return undefined;
  }
  const hub = hubPathOf(url, endpoint);
  if (hub === undefined) return undefined;
  const segments = hub.segments.filter((s) => s !== '');
  if (segments.length < 2 || segments[0] === 'datasets' || segments[0] === 'spaces') return undefined;
  const [org, name, kind, rev, ...rest] = segments;
  let inside: string[];
  if (segments.length === 2) inside = ['main'];
  else if (kind === 'tree' && rev !== undefined) inside = [rev, ...rest];
  else if (kind === 'resolve' && rev !== undefined && rest.length > 0 && decodedSegment(rest[rest.length - 1], href) === PEFT_WEIGHTS) inside = [rev, ...rest.slice(0, -1)];
  else return undefined;
  for (const segment of inside) decodedSegment(segment, href);
  // The Hub's download links are on its own root (https on huggingface.co, not www.), where the token goes.
  return { folder: `${hub.root}/${org}/${name}/resolve/${inside.join('/')}/`, weightsLink: kind === 'resolve' };
}

/**
 * The files convert_lora_to_gguf.py reads beside an adapter for a GGUF's general.* keys
 * (gguf-lora-card.ts), which a Hub adapter's set (its two files) does not list.
 */
export const CARD_FILES: readonly string[] = ['README.md', 'config.json', 'generation_config.json'];

/** The Hub adapters' folders' card files (CARD_FILES), by the adapter's set: see {@link hubCardText}. */
const cardReaders = new WeakMap<InputFileSet, (path: string) => Promise<string | undefined>>();

/**
 * For a Hub adapter's set (openHubAdapter, a folder of its two files), the reader of a file of
 * CARD_FILES at the folder's download link: its text (MAX_CONFIG_BYTES and UTF-8 as any config a URL
 * gives), or undefined where the Hub has none there (HTTP 404), as a downloaded folder would lack it;
 * any other failure is thrown. Undefined for any other set (its files are listed).
 */
export function hubCardText(files: object): ((path: string) => Promise<string | undefined>) | undefined {
  return cardReaders.get(files as InputFileSet);
}

/** A Hub adapter URL, opened (its config read, nothing else). */
export interface OpenedHubAdapter {
  /** The URL as given: the files' set is named by it. */
  text: string;
  files: InputFileSet;
  /** The set is the folder of both files; false where a weights link was read alone. */
  many: boolean;
  /**
   * A weights link read alone (its repository has no config there, HTTP 404): the URL of the
   * `adapter_config.json` that was looked for beside it. Undefined for a folder.
   */
  absentConfigUrl?: string;
}

/**
 * `files` with `path`'s text already read (the config fetched to find the adapter is not fetched
 * again), each file named in messages by its URL in `urls` (by path), not under the URL given.
 */
function withTextRead(files: InputFileSet, path: string, text: string, urls: ReadonlyMap<string, string>, namesFolder: boolean): InputFileSet {
  return {
    name: files.name,
    ...(namesFolder && { namesFolder: true }),
    list: () => files.list(),
    open: (p) => files.open(p),
    readText: (p) => (p === path ? Promise.resolve(text) : files.readText(p)),
    fileName: (p) => urls.get(p) ?? `${files.name}/${p}`,
  };
}

/**
 * A PEFT adapter on the Hub, read as the folder of its two files at `hub.folder`: the set of
 * `adapter_config.json` and `adapter_model.safetensors` (named by their last path segments, as in
 * a folder), under the name `text` (the URL as given). The config is fetched first, through the
 * same requests (and token, where `auth` gives one) as any URL input: where it is absent (HTTP 404),
 * a link of the weights is read alone, as any URL of one file (a kohya or diffusers file of that name
 * still merges), and a repository or `tree/` URL is a NOT_FOUND saying what was looked for where.
 */
export async function openHubAdapter(
  text: string, hub: HubAdapterFolder, options: UrlInputOptions, auth: HfAuth | undefined,
): Promise<OpenedHubAdapter> {
  const configUrl = `${hub.folder}${PEFT_CONFIG}`;
  const weightsUrl = `${hub.folder}${PEFT_WEIGHTS}`;
  const files = urlInputFileSetWithAuth([configUrl, weightsUrl], text, options, auth);
  let config: string;
  try {
    config = await files.readText(PEFT_CONFIG);
  } catch (e) {
    if (httpStatusOf(e) !== 404) throw e;
    if (hub.weightsLink) return { text, files: urlInputFileSetWithAuth([text], text, options, auth), many: false, absentConfigUrl: configUrl };
    throw new MergeError('NOT_FOUND', `${text}: no PEFT adapter there: looked for ${PEFT_CONFIG} and ${PEFT_WEIGHTS} at ${hub.folder} (${PEFT_CONFIG}: HTTP 404); a single-file LoRA is given by its file's download link, such as ${hub.folder}FILE.safetensors`, { cause: e });
  }
  // The URL's last segment names the adapter's folder (convert_lora_to_gguf's general.name comes
  // from it) for a repository (ORG/NAME) or a tree/REV/SUBFOLDER page, not for tree/REV (a
  // revision) or a weights link.
  const namesFolder = !hub.weightsLink && !/\/tree\/[^/]+\/?$/.test(new URL(text).pathname);
  const set = withTextRead(files, PEFT_CONFIG, config, new Map([[PEFT_CONFIG, configUrl], [PEFT_WEIGHTS, weightsUrl]]), namesFolder);
  // Fetched only when asked (convert's general.* keys), through the same requests and token.
  const card = urlInputFileSetWithAuth(CARD_FILES.map((f) => `${hub.folder}${f}`), text, options, auth);
  cardReaders.set(set, (path) => card.readText(path).catch((e: unknown) => {
    if (httpStatusOf(e) === 404) return undefined;
    throw e;
  }));
  return { text, files: set, many: true };
}

/** How a caller takes the URL given to {@link openHubSource}. */
export interface HubSourceUse {
  /** The argument, for refusals (`--base`, `the base`). */
  what: string;
  /** It is an adapter: a Hub repository, `tree/` page or weights link is read as a PEFT folder. */
  adapter: boolean;
  /** What else to do with a repository given where one file is taken (default: download the folder and give its path). */
  folderAdvice?: string;
}

/**
 * Refuses, before any request, a Hub URL given as a source that it cannot be: a `blob/` page (HTML
 * about a file, not the file) with its `resolve/` download link; where one file is taken (not an
 * adapter), a model repository or its `tree/` page, saying to give the URL of one file; and a
 * `tree/` page of anything else (a dataset's, a Space's) where an adapter is not read from it. Each
 * is a BAD_ARGUMENT naming the URL; any other URL passes (bad percent-encoding in a Hub adapter URL
 * is refused too, as hubAdapterFolder refuses it).
 */
export function checkHubSourceUrl(text: string, use: HubSourceUse, endpoint: HfEndpoint | undefined): void {
  const hub = hubAdapterFolder(text, endpoint);
  if (hub !== undefined) {
    if (use.adapter || hub.weightsLink) return;
    throw new MergeError('BAD_ARGUMENT', `${text}: names a Hugging Face repository or folder; ${use.what} takes the URL of one file (such as …/resolve/main/model.safetensors), or ${use.folderAdvice ?? 'download the folder and give its path'} (only an adapter is read from a repository's URL)`);
  }
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return;
  }
  const page = hubPageOf(url, endpoint);
  if (page?.kind === 'blob') {
    const segments = url.pathname.split('/');
    segments[page.index] = 'resolve';
    url.pathname = segments.join('/');
    throw new MergeError('BAD_ARGUMENT', `${text}: is Hugging Face's web page about the file, not the file; give its download link ${url.href}`);
  }
  if (page?.kind === 'tree') throw folderUrlRefusal(text, use.what, use.folderAdvice);
}

/**
 * A URL as a source, where it is a Hub adapter URL (hubAdapterFolder): as an adapter, opened by
 * {@link openHubAdapter}. A URL it cannot be ({@link checkHubSourceUrl}: a `blob/` page, a
 * repository or `tree/` page given where one file is taken) is a BAD_ARGUMENT, before any request.
 * Undefined where the URL is to be read as one file as before (no Hub adapter URL; a weights link
 * that is not an adapter).
 */
export async function openHubSource(
  text: string, use: HubSourceUse, options: UrlInputOptions, auth: HfAuth | undefined,
): Promise<OpenedHubAdapter | undefined> {
  checkHubSourceUrl(text, use, auth?.endpoint);
  const hub = hubAdapterFolder(text, auth?.endpoint);
  return hub !== undefined && use.adapter ? openHubAdapter(text, hub, options, auth) : undefined;
}

/**
 * The reader's refusal of PEFT weights without their config (`NAME: looks like a PEFT adapter but
 * adapter_config.json is missing`) for a weights link read alone, said as what it is: the
 * repository has no config there. `opened` are the Hub adapters a merge opened; any other error
 * is returned as it is.
 */
export function explainLoneHubWeights(e: unknown, opened: readonly OpenedHubAdapter[]): unknown {
  if (!isLoneWeightsRefusal(e)) return e;
  const input = opened.find((i) => i.absentConfigUrl !== undefined && e.message.startsWith(`${i.files.name}:`));
  if (input === undefined) return e;
  return new MergeError('BAD_CONFIG', `${input.text}: is a PEFT adapter's weights, which need its ${PEFT_CONFIG} (r and lora_alpha) beside them, and the repository has none there (${input.absentConfigUrl}: HTTP 404); download the weights and their ${PEFT_CONFIG} into a folder and give the folder's path`, { cause: e });
}

/** Is `e` the reader's refusal of a PEFT adapter's weights read without their config? */
export function isLoneWeightsRefusal(e: unknown): e is MergeError {
  return e instanceof MergeError && e.code === 'BAD_CONFIG' && e.message.includes(`${PEFT_CONFIG} is missing`);
}
