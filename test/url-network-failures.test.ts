/**
 * A URL input whose request fails before any answer: the error says what failed in words a user
 * can act on (the host has no address, nothing listens on the port, https to a plain http server,
 * a server that does not speak HTTP, a port fetch blocks, a browser's bare "Failed to fetch"),
 * not only the system's code. Real sockets where this machine can make the fault; a fetch that
 * throws as Node's and browsers' do where it cannot (name lookups, CORS).
 */
import { createServer as createTcpServer, type AddressInfo, type Server as TcpServer, type Socket } from 'node:net';
import { createServer, type Server } from 'node:http';
import { afterAll, describe, expect, it } from 'vitest';
import { urlInputFileSet } from '../src/io/url-input-files.js';
import { oneErrorLine, runCliInProcess } from './helpers/cli.js';
import { closeServer, listenLocally } from './helpers/local-server.js';

const tcpServers: TcpServer[] = [];
const sockets: Socket[] = [];
const httpServers: Server[] = [];
afterAll(async () => {
  for (const socket of sockets) socket.destroy();
  for (const s of tcpServers) await new Promise((resolve) => s.close(resolve));
  for (const s of httpServers) await closeServer(s);
});

/** Listens on a free port of 127.0.0.1. */
function listenTcp(server: TcpServer): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port));
  });
}

/** A port on this machine where nothing listens: one a server just had, closed again. */
async function closedPort(): Promise<number> {
  const server = createTcpServer();
  const port = await listenTcp(server);
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** A server that answers every connection with bytes that are not HTTP. */
async function notHttpPort(): Promise<number> {
  const server = createTcpServer((socket) => {
    sockets.push(socket);
    socket.end('SSH-2.0-OpenSSH_9.6\r\n');
  });
  tcpServers.push(server);
  return listenTcp(server);
}

/** A plain HTTP server (an https:// URL of it fails in the TLS handshake). */
async function plainHttpPort(): Promise<number> {
  const server = createServer((_request, response) => response.end('plain'));
  httpServers.push(server);
  return listenLocally(server);
}

describe('a request that fails before an answer', () => {
  it('nothing listening on the port: names host and port, and what to check', async () => {
    const port = await closedPort();
    const url = `http://127.0.0.1:${port}/model.safetensors`;
    expect(oneErrorLine(await runCliInProcess(['inspect', url]))).toBe(
      `error: ${url}: could not be fetched for its size (HEAD): nothing accepts connections at 127.0.0.1:${port} (ECONNREFUSED): check the port in the URL, and that the server is running`);
  });

  it('https:// to a server that speaks plain http: the TLS failure says so', async () => {
    const port = await plainHttpPort();
    const url = `https://127.0.0.1:${port}/model.safetensors`;
    expect(oneErrorLine(await runCliInProcess(['inspect', url]))).toMatch(new RegExp(
      `^error: ${url.replace(/[.]/g, '\\.')}: could not be fetched for its size \\(HEAD\\): the TLS connection to 127\\.0\\.0\\.1 failed \\(ERR_SSL_[A-Z_]+\\): an https:// URL of a server that speaks plain http fails so; otherwise the server's certificate is not trusted here$`));
  });

  it('a server that does not speak HTTP: says to check the scheme and port', async () => {
    const port = await notHttpPort();
    const url = `http://127.0.0.1:${port}/model.safetensors`;
    expect(oneErrorLine(await runCliInProcess(['inspect', url]))).toMatch(new RegExp(
      `^error: ${url.replace(/[.]/g, '\\.')}: could not be fetched for its size \\(HEAD\\): 127\\.0\\.0\\.1:${port} did not answer in HTTP \\(HPE_[A-Z_]+\\): check the scheme and the port in the URL$`));
  });

  it('a port fetch blocks (9, "discard"): says so instead of "bad port"', async () => {
    const url = 'http://127.0.0.1:9/model.safetensors';
    expect(oneErrorLine(await runCliInProcess(['inspect', url]))).toBe(
      `error: ${url}: could not be fetched for its size (HEAD): fetch refuses port 9, one of the ports browsers block: serve the file on another port`);
  });

  it('a host with no address (Node\'s fetch: TypeError "fetch failed", the lookup\'s error as cause)', async () => {
    const url = 'https://models.example.invalid/lora/adapter_model.safetensors';
    const lookup = Object.assign(new Error('getaddrinfo ENOTFOUND models.example.invalid'), { code: 'ENOTFOUND', syscall: 'getaddrinfo', hostname: 'models.example.invalid' });
    const fetch = async () => { throw new TypeError('fetch failed', { cause: lookup }); };
    const files = urlInputFileSet([url], 'lora', { fetch });
    await expect(files.open('adapter_model.safetensors')).rejects.toThrow(
      `${url}: could not be fetched for its size (HEAD): no address found for the host models.example.invalid (ENOTFOUND): check the host name in the URL, and that this machine is online`);
  });

  it('a browser\'s bare "Failed to fetch" (a network error or a CORS refusal) names CORS and the headers it needs', async () => {
    const url = 'https://files.example/model.safetensors';
    const fetch = async () => { throw new TypeError('Failed to fetch'); };
    const files = urlInputFileSet([url], 'model', { fetch });
    await expect(files.open('model.safetensors')).rejects.toThrow(
      `${url}: could not be fetched for its size (HEAD): Failed to fetch: a network error, or a server that does not let this page read it (CORS: it must send Access-Control-Allow-Origin, and expose Content-Range and Content-Length)`);
  });
});
