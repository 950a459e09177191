/**
 * The Hugging Face token the Node entry points send with URL inputs (only to the hosts of
 * hf-token-hosts.ts over https, and to the Hub HF_ENDPOINT names: hf-endpoint.ts), found where huggingface_hub finds it: the HF_TOKEN variable
 * (or the older HUGGING_FACE_HUB_TOKEN), else the token file `hf auth login` writes: HF_TOKEN_PATH,
 * else HF_HOME/token, else $XDG_CACHE_HOME/huggingface/token, else ~/.cache/huggingface/token.
 * HF_HUB_DISABLE_IMPLICIT_TOKEN=1 turns that off. Node only: the browser entry reads no
 * environment and no file.
 *
 * The token is never put in a message: a refusal names the variable or the file, not its content.
 */
import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { MergeError } from '../errors.js';
import { parseHfEndpoint } from './hf-endpoint.js';
import { cleanHfToken, givenHfAuth, isHfTokenText } from './hf-token-option.js';
import type { HfAuth } from './url-input-files.js';

/** A token file larger than this is no token (Hugging Face's are under 100 bytes). */
export const MAX_HF_TOKEN_FILE_BYTES = 4096;

/** The values huggingface_hub takes as true in a switch variable (compared without case). */
const TRUE_VALUES = new Set(['1', 'ON', 'YES', 'TRUE']);

type Env = Readonly<Record<string, string | undefined>>;

/** HF_HUB_DISABLE_IMPLICIT_TOKEN set to a true value: no token is looked for. */
const implicitTokenOff = (env: Env): boolean => TRUE_VALUES.has((env.HF_HUB_DISABLE_IMPLICIT_TOKEN ?? '').toUpperCase());

/** `~` and `$VAR` / `${VAR}` in a path expanded, as huggingface_hub does for its paths (an unset variable is left as written). */
function expandPath(path: string, env: Env): string {
  const home = path === '~' || path.startsWith('~/') ? homedir() + path.slice(1) : path;
  return home.replace(/\$(\w+)|\$\{(\w+)\}/g, (all, a: string | undefined, b: string | undefined) => env[(a ?? b)!] ?? all);
}

/** The token file huggingface_hub reads: HF_TOKEN_PATH, else HF_HOME/token (HF_HOME's default under XDG_CACHE_HOME or ~/.cache). */
export function hfTokenPath(env: Env = process.env): string {
  if (env.HF_TOKEN_PATH) return expandPath(env.HF_TOKEN_PATH, env);
  const home = env.HF_HOME ? env.HF_HOME : join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'huggingface');
  return join(expandPath(home, env), 'token');
}

/** The token file's text; undefined where there is no such file. Refuses one that cannot be read or is too large. */
function readTokenFile(path: string): string | undefined {
  let fd: number;
  try {
    // Without waiting: opening a FIFO (named pipe) for reading would wait for a writer, forever.
    fd = openSync(path, constants.O_RDONLY | (constants.O_NONBLOCK ?? 0));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw unusableFile(path, `could not be read (${code ?? 'error'})`);
  }
  try {
    const info = fstatSync(fd);
    if (!info.isFile()) throw unusableFile(path, 'is not a file');
    if (info.size > MAX_HF_TOKEN_FILE_BYTES) throw unusableFile(path, `is ${info.size} bytes, more than a token (at most ${MAX_HF_TOKEN_FILE_BYTES})`);
    // One byte more than allowed: a file that grew since fstat is still caught.
    const bytes = Buffer.alloc(MAX_HF_TOKEN_FILE_BYTES + 1);
    let got = 0;
    for (let n; (n = readSync(fd, bytes, got, bytes.length - got, null)) > 0;) got += n;
    if (got > MAX_HF_TOKEN_FILE_BYTES) throw unusableFile(path, `is more than ${MAX_HF_TOKEN_FILE_BYTES} bytes, more than a token`);
    return bytes.subarray(0, got).toString('latin1');
  } catch (e) {
    if (e instanceof MergeError) throw e;
    throw unusableFile(path, `could not be read (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
  } finally {
    closeSync(fd);
  }
}

const HOW_ELSE = 'fix or remove it, set HF_TOKEN, or set HF_HUB_DISABLE_IMPLICIT_TOKEN=1 to read URLs without a token';

function unusableFile(path: string, why: string): MergeError {
  return new MergeError('BAD_ARGUMENT', `${path}: the Hugging Face token file ${why}; ${HOW_ELSE}`);
}

/**
 * The token found in `env` or its token file, as huggingface_hub finds it, or undefined (none, or
 * HF_HUB_DISABLE_IMPLICIT_TOKEN set). A token that is not visible ASCII, or a token file that
 * cannot be read or is larger than MAX_HF_TOKEN_FILE_BYTES, is a BAD_ARGUMENT MergeError naming
 * the variable or the file and never showing its content.
 */
export function findHfToken(env: Env = process.env): string | undefined {
  if (implicitTokenOff(env)) return undefined;
  // An empty HF_TOKEN gives way to the older name, as in huggingface_hub; one of only whitespace to the file.
  const variable = env.HF_TOKEN ? 'HF_TOKEN' : env.HUGGING_FACE_HUB_TOKEN ? 'HUGGING_FACE_HUB_TOKEN' : undefined;
  const fromEnv = variable === undefined ? undefined : cleanHfToken(env[variable]!);
  if (fromEnv !== undefined) {
    if (!isHfTokenText(fromEnv)) throw new MergeError('BAD_ARGUMENT', `${variable} holds characters no Hugging Face token has (only visible ASCII is); set it to the token itself`);
    return fromEnv;
  }
  const path = hfTokenPath(env);
  const text = readTokenFile(path);
  const fromFile = text === undefined ? undefined : cleanHfToken(text);
  if (fromFile !== undefined && !isHfTokenText(fromFile)) throw unusableFile(path, 'holds characters no token has (only visible ASCII is)');
  return fromFile;
}

/**
 * The Hugging Face login of a Node entry point: `explicit` a token to send, `false` none, or
 * undefined to find one in `env` (findHfToken), once: on the first request that would carry it,
 * so a token file is read only where a URL needs it. A refusal of what was found is thrown again
 * at each later request. The Hub's address is HF_ENDPOINT's where it is set, read here, so a
 * value that is no http(s) URL is refused (BAD_ARGUMENT naming it) before any request.
 */
export function hfAuthFor(explicit: string | false | undefined, env: Env = process.env): HfAuth {
  const endpoint = parseHfEndpoint(env.HF_ENDPOINT);
  if (explicit !== undefined) return givenHfAuth(explicit, endpoint);
  let found: { token: string | undefined } | { error: unknown } | undefined;
  return {
    endpoint,
    noTokenAdvice: implicitTokenOff(env)
      ? 'HF_HUB_DISABLE_IMPLICIT_TOKEN is set, so no token was sent: unset it to send HF_TOKEN or `hf auth login`\'s token, or download the file with your account and give the file instead'
      : 'set HF_TOKEN to a token of an account that has accepted the model\'s terms, or log in with `hf auth login`; or download it with your account and give the file instead',
    token() {
      if (found === undefined) {
        try {
          found = { token: findHfToken(env) };
        } catch (error) {
          found = { error };
        }
      }
      if ('error' in found) throw found.error;
      return found.token;
    },
  };
}
