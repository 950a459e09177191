/**
 * What the tests of Hugging Face URLs share: a `fetch` that carries https:// requests to local
 * plain-HTTP servers (no TLS here, and huggingface.co cannot be reached), and a home where no
 * Hugging Face token is found.
 */
import { vi } from 'vitest';

const realFetch = globalThis.fetch;

/**
 * A fetch that sends a request for any host on one of `ports()` to http://127.0.0.1 on that port
 * (path and query kept), with the request's headers and redirect mode as given; the code under
 * test still sees https URLs and sets every header itself. The response comes back without its URL,
 * as a fetch of one's own may give it. Another port is a TypeError, as an unreachable host is.
 */
export function localFetch(ports: () => readonly number[]): typeof fetch {
  return async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const url = new URL(String(input));
    if (!ports().includes(Number(url.port))) throw new TypeError(`test transport: no server at ${url.host}`);
    const response = await realFetch(`http://127.0.0.1:${url.port}${url.pathname}${url.search}`, init);
    return new Response(response.body, { status: response.status, statusText: response.statusText, headers: response.headers });
  };
}

/**
 * No token anywhere and huggingface.co the only Hub: every variable huggingface_hub reads for them
 * cleared (HF_ENDPOINT included), HF_HOME and HOME fresh empty folders.
 */
export function stubTokenlessHome(makeDir: () => string): void {
  for (const name of ['HF_TOKEN', 'HUGGING_FACE_HUB_TOKEN', 'HF_TOKEN_PATH', 'HF_HUB_DISABLE_IMPLICIT_TOKEN', 'XDG_CACHE_HOME', 'HF_ENDPOINT']) vi.stubEnv(name, undefined);
  vi.stubEnv('HF_HOME', makeDir());
  vi.stubEnv('HOME', makeDir());
}
