/**
 * `urlByteSource` and `urlInputFileSet` as `loramerge/node` exports them: those of the browser
 * entry, whose `hfToken` left out is found as huggingface_hub finds it (hf-token.ts), sent only to
 * Hugging Face's hosts over https and to the Hub HF_ENDPOINT names (hf-endpoint.ts).
 */
import { hfAuthFor } from './hf-token.js';
import { checkHfTokenOption } from './hf-token-option.js';
import {
  hfTokenOf, URL_INPUT_OPTION_NAMES, urlByteSourceWithAuth, urlInputFileSetWithAuth, type FetchFunction, type UrlInputOptions,
} from './url-input-files.js';
import type { ByteSource, InputFileSet } from './types.js';

/** How remote files are fetched from Node. */
export interface NodeUrlInputOptions extends UrlInputOptions {
  /**
   * The Hugging Face token: sent only to https://huggingface.co and https://hf.co (never over
   * plain http there) and to the origin of the Hub the HF_ENDPOINT variable names (over its own
   * scheme, as huggingface_hub sends it), never to the hosts their downloads redirect to. Left out, it is found as
   * huggingface_hub finds it (HF_TOKEN, HUGGING_FACE_HUB_TOKEN, HF_TOKEN_PATH, HF_HOME/token,
   * ~/.cache/huggingface/token; none with HF_HUB_DISABLE_IMPLICIT_TOKEN set). `false` sends none.
   */
  hfToken?: string | false;
}

/** The `hfToken` option, checked; a bad one is a BAD_ARGUMENT that never shows the string. */
function hfTokenOption(options: FetchFunction | NodeUrlInputOptions | undefined): string | false | undefined {
  const hfToken = hfTokenOf(options);
  checkHfTokenOption('hfToken', hfToken);
  return hfToken;
}

/** A file behind `url` as a ByteSource (see the browser entry's), with the Hugging Face token. */
export async function urlByteSource(url: string | URL, options?: FetchFunction | NodeUrlInputOptions): Promise<ByteSource> {
  return urlByteSourceWithAuth(url, options, hfAuthFor(hfTokenOption(options)), URL_INPUT_OPTION_NAMES);
}

/** Remote files as one InputFileSet (see the browser entry's), with the Hugging Face token. */
export function urlInputFileSet(urls: readonly (string | URL)[], name?: string, options?: FetchFunction | NodeUrlInputOptions): InputFileSet {
  return urlInputFileSetWithAuth(urls, name, options, hfAuthFor(hfTokenOption(options)), URL_INPUT_OPTION_NAMES);
}
