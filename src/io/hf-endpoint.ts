/**
 * The Hugging Face Hub's address, as huggingface_hub takes it: `https://huggingface.co` (hf.co its
 * short name), or the mirror or private Hub that the HF_ENDPOINT variable names (the Node entry
 * points read it; the browser entry reads no environment). huggingface_hub builds every URL it
 * fetches as `HF_ENDPOINT/ORG/NAME/resolve/REV/FILE` and sends its token with each of them, over
 * the endpoint's own scheme, http included; it drops the token where a download is redirected to
 * another host. Which URLs get the token here follows that: see {@link hfTokenScope}.
 *
 * Platform-neutral: the caller passes the variable's value.
 */
import { MergeError } from '../errors.js';
import { HF_TOKEN_HOSTS } from './hf-token-hosts.js';

/** A Hub at another address than huggingface.co, from HF_ENDPOINT. */
export interface HfEndpoint {
  /** Its scheme, host and port, as `URL.origin` gives them (`https://hf-mirror.com`): the token goes to URLs of this origin. */
  readonly origin: string;
  /**
   * The path its repositories are under, without a trailing slash: empty for a Hub at the root
   * (`https://hf-mirror.com/ORG/NAME`), `/hub` for `https://example.com/hub/ORG/NAME`.
   */
  readonly path: string;
}

/**
 * HF_ENDPOINT's value as a Hub address, or undefined where it is unset or empty (then only
 * huggingface.co and hf.co are the Hub). As huggingface_hub does, trailing slashes are dropped
 * (`https://hf-mirror.com/` is `https://hf-mirror.com`). A value that is no http:// or https://
 * URL, or one with a user name, password, query or fragment (no Hub URL can be built on it), is a
 * BAD_ARGUMENT MergeError naming HF_ENDPOINT.
 */
export function parseHfEndpoint(value: string | undefined): HfEndpoint | undefined {
  if (value === undefined || value.trim() === '') return undefined;
  const text = value.trim();
  let url: URL | undefined;
  try {
    url = new URL(text);
  } catch {
    url = undefined;
  }
  const advice = 'set it to the Hub\'s address, such as https://hf-mirror.com, or unset it to use https://huggingface.co';
  if (url === undefined || (url.protocol !== 'https:' && url.protocol !== 'http:')) {
    // Shown unless a password may be in it (an `@`), to make a missing `https://` plain to see.
    const shownValue = text.includes('@') ? '' : ` ("${text.length > 80 ? `${text.slice(0, 80)}…` : text}")`;
    throw new MergeError('BAD_ARGUMENT', `HF_ENDPOINT${shownValue} is not an http:// or https:// URL; ${advice}`);
  }
  if (url.username !== '' || url.password !== '') {
    throw new MergeError('BAD_ARGUMENT', `HF_ENDPOINT holds a user name or password, which no request may carry in its URL; ${advice}`);
  }
  if (url.search !== '' || url.hash !== '' || text.includes('?') || text.includes('#')) {
    throw new MergeError('BAD_ARGUMENT', `HF_ENDPOINT (${url.origin}${url.pathname}…) has a query or fragment, on which no Hub URL can be built; ${advice}`);
  }
  return { origin: url.origin, path: url.pathname.replace(/\/+$/, '') };
}

/**
 * Where a URL stands for the Hugging Face token: `hub` for https on a host of HF_TOKEN_HOSTS
 * exactly (huggingface.co, hf.co; the port included where not 443; never plain http there),
 * `endpoint` for a URL of HF_ENDPOINT's origin (its scheme, host and port, http where the
 * variable says http, as huggingface_hub sends it), undefined for any other (no token).
 */
export function hfTokenScope(url: URL, endpoint: HfEndpoint | undefined): 'hub' | 'endpoint' | undefined {
  if (url.protocol === 'https:' && HF_TOKEN_HOSTS.includes(url.host)) return 'hub';
  if (endpoint !== undefined && url.origin === endpoint.origin) return 'endpoint';
  return undefined;
}
