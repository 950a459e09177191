/**
 * The `hfToken` option as every entry point takes it: checked, cleaned as huggingface_hub cleans a
 * token, and made the HfAuth of a call. Platform-neutral: the browser entry has only this option
 * (it reads no environment and no file); the Node entry points also find a token (hf-token.ts).
 *
 * The token is never put in a message: a refusal names the option, not its content.
 */
import { badArgument, shown } from '../api-arguments.js';
import type { HfAuth } from './url-input-files.js';

/** As huggingface_hub cleans a token: line breaks anywhere dropped, whitespace around trimmed; empty is none. */
export function cleanHfToken(text: string): string | undefined {
  const token = text.replace(/[\r\n]/g, '').trim();
  return token === '' ? undefined : token;
}

/**
 * A token goes into an HTTP header: visible ASCII only. Anything else is refused before a request,
 * since fetch's own refusal of such a header value quotes it.
 */
export const isHfTokenText = (token: string): boolean => /^[\x21-\x7e]+$/.test(token);

/**
 * An explicit token option checked: a string of visible ASCII (trimmed), or false, or undefined.
 * Anything else is a BAD_ARGUMENT naming `what` (the option); a string's content is never shown.
 */
export function checkHfTokenOption(what: string, explicit: unknown): asserts explicit is string | false | undefined {
  if (explicit === undefined || explicit === false) return;
  if (typeof explicit !== 'string') throw badArgument(`${what} must be a Hugging Face token (a string) or false, not ${shown(explicit)}`);
  const token = cleanHfToken(explicit);
  if (token === undefined || !isHfTokenText(token)) {
    throw badArgument(`${what} must be a Hugging Face token (visible ASCII, not empty) or false; the string given holds other characters or none`);
  }
}

/** What to do about a Hub 401/403 where hfToken was false. */
const TOKEN_OFF_ADVICE = 'hfToken is false, so no token was sent: pass your Hugging Face token as hfToken, or download the file with your account and give the file instead';

/**
 * The Hugging Face login of the browser entry: the `hfToken` option (checked first, as
 * {@link checkHfTokenOption}) and nothing else; sent where hfTokenScope says, with no HF_ENDPOINT
 * (a page has no environment). Without one, a 401/403 from Hugging Face says to pass it.
 */
export function explicitHfAuth(hfToken: unknown): HfAuth {
  checkHfTokenOption('hfToken', hfToken);
  if (hfToken === false) return { endpoint: undefined, token: () => undefined, noTokenAdvice: TOKEN_OFF_ADVICE };
  const token = hfToken === undefined ? undefined : cleanHfToken(hfToken);
  return {
    endpoint: undefined,
    token: () => token,
    noTokenAdvice: 'no hfToken was given, so no token was sent: pass the Hugging Face token of an account that has accepted the model\'s terms as hfToken, or download the file with your account and give the file instead',
  };
}

/** The Node entry's HfAuth for an explicit token (a string, or false for none), HF_ENDPOINT's Hub known. */
export function givenHfAuth(hfToken: string | false, endpoint: HfAuth['endpoint']): HfAuth {
  return { ...explicitHfAuth(hfToken), endpoint };
}
