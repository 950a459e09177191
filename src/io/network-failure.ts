/**
 * What a failed request's error means, in words a user can act on. `fetch` rejects with a bare
 * "fetch failed" (Node) or "Failed to fetch" (browsers); Node puts the system's reason in `cause`
 * (`getaddrinfo ENOTFOUND host`, `connect ECONNREFUSED 127.0.0.1:8000`), which names the fault but
 * not what to do about it.
 */

/** The innermost error of a `cause` chain, where the system's reason lies. */
function innermost(e: unknown): unknown {
  let inner = e;
  while (inner instanceof Error && inner.cause instanceof Error) inner = inner.cause;
  return inner;
}

/**
 * The innermost cause's message, for a failure networkFailureReason does not know: Node's fetch
 * says only "fetch failed" above "redirect count exceeded".
 */
export function innermostMessage(e: unknown): string {
  const inner = innermost(e);
  return inner instanceof Error ? inner.message : String(inner);
}

function errorCode(e: unknown): string | undefined {
  const code = typeof e === 'object' && e !== null ? (e as { code?: unknown }).code : undefined;
  return typeof code === 'string' ? code : undefined;
}

/** The URL's port as the connection uses it (the scheme's default when the URL names none). */
function portOf(url: URL): string {
  return url.port || (url.protocol === 'https:' ? '443' : '80');
}

/**
 * Why a request to `href` failed, with what to check, where the cause is one of the known ones; else
 * undefined (the caller shows the innermost error's own message). One line, no trailing period.
 */
export function networkFailureReason(e: unknown, href: string): string | undefined {
  const inner = innermost(e);
  const message = innermostMessage(inner);
  const url = URL.canParse(href) ? new URL(href) : undefined;
  if (url === undefined) return undefined;
  const code = errorCode(inner) ?? '';
  const host = url.hostname;
  if (/^(ENOTFOUND|EAI_AGAIN|EAI_NONAME|EAI_FAIL)$/.test(code)) {
    return `no address found for the host ${host} (${code}): check the host name in the URL, and that this machine is online`;
  }
  if (code === 'ECONNREFUSED') return `nothing accepts connections at ${host}:${portOf(url)} (ECONNREFUSED): check the port in the URL, and that the server is running`;
  if (/^(ETIMEDOUT|UND_ERR_CONNECT_TIMEOUT|ENETUNREACH|EHOSTUNREACH)$/.test(code)) {
    return `${host}:${portOf(url)} cannot be reached (${code}): check the URL, the connection, and any firewall or proxy on the way`;
  }
  if (/CERT|SELF_SIGNED|UNABLE_TO_VERIFY|^ERR_TLS_|^ERR_SSL_/.test(code)) {
    return `the TLS connection to ${host} failed (${code}): an https:// URL of a server that speaks plain http fails so; otherwise the server's certificate is not trusted here`;
  }
  if (code.startsWith('HPE_')) return `${host}:${portOf(url)} did not answer in HTTP (${code}): check the scheme and the port in the URL`;
  // The fetch standard's blocked ports (1, 9, 25, 6000, …), which Node's fetch blocks as browsers do.
  if (message === 'bad port') return `fetch refuses port ${portOf(url)}, one of the ports browsers block: serve the file on another port`;
  // A browser says no more than this for any network error, a CORS refusal included.
  if (inner instanceof TypeError && /^(Failed to fetch|NetworkError when attempting to fetch resource\.|Load failed)$/.test(message)) {
    return `${message}: a network error, or a server that does not let this page read it (CORS: it must send Access-Control-Allow-Origin, and expose Content-Range and Content-Length)`;
  }
  return undefined;
}
