/**
 * How fast a page reads a picked file, by strategy, with and without busy threads beside it:
 * headless Chromium reads FILE in a Web Worker into reused 8 MiB (or `W`) buffers, each read a BYOB
 * read with `min`, and prints the time and the browser process's CPU. Strategies (`kind:W:k[:S]`,
 * sizes in MiB, k windows in flight):
 * - `one`: one byte stream of the whole file (the page's merge reads this way, blob-byte-source.ts);
 * - `fetch`: the body of a `fetch` of the file's blob URL, one stream;
 * - `perwin`: a stream of its own per window;
 * - `lanes`: two streams, each over alternate stripes of S MiB, read at the same time.
 * `--spin N` starts N workers spinning on the CPU during the read (comma-separated counts: each
 * run), as a merge's CPU workers would.
 *
 * usage: node bench/page-read.mjs FILE [--modes one:8:4,perwin:8:4,lanes:8:8:32] [--spin 0,2] [--reps 2]
 */
import http from 'node:http';
import { parseArgs } from 'node:util';
import { launchBenchBrowser, treeCpu } from './page-merge.mjs';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { modes: { type: 'string', default: 'one:8:4,perwin:8:4,lanes:8:8:32' }, spin: { type: 'string', default: '0,2' }, reps: { type: 'string', default: '2' } },
});
if (positionals.length !== 1) {
  console.error('usage: node bench/page-read.mjs FILE [--modes one:8:4,perwin:8:4,lanes:8:8:32] [--spin 0,2] [--reps 2]');
  process.exit(2);
}

const PAGE = `<!doctype html><input type="file" id="file"><script>
window.readWith = (mode, spin) => new Promise((resolve, reject) => {
  const worker = new Worker('reader.js');
  worker.onmessage = (e) => { worker.terminate(); e.data.error ? reject(new Error(e.data.error)) : resolve(e.data); };
  worker.postMessage({ file: document.getElementById('file').files[0], mode, spin });
});
</script>`;

const READER = `
const held = new Set(); // a stream nothing holds is collected in Chromium and its read never settles
async function fill(reader, buffer, length) {
  held.add(reader);
  let got = 0, memory = buffer;
  while (got < length) {
    const { value, done } = await reader.read(new Uint8Array(memory, got, length - got), { min: length - got });
    if (value) memory = value.buffer;
    if (done || !value) break;
    got += value.byteLength;
  }
  if (got !== length) throw new Error('short read: ' + got + ' of ' + length);
  return memory;
}
onmessage = async (e) => {
  const { file, mode, spin } = e.data;
  const spinners = Array.from({ length: spin }, () => new Worker(URL.createObjectURL(new Blob(['for (;;) {}'], { type: 'text/javascript' }))));
  await new Promise((r) => setTimeout(r, 300));
  try {
    const [kind, w, k, s] = mode.split(':');
    const W = Number(w) * 2 ** 20, inFlight = Number(k), S = Number(s || 0) * 2 ** 20;
    const windows = Math.ceil(file.size / W);
    const free = [];
    const length = (i) => Math.min(W, file.size - i * W);
    let readWindow;
    if (kind === 'one') {
      const reader = file.stream().getReader({ mode: 'byob' });
      let queue = Promise.resolve();
      readWindow = (i) => (queue = queue.then(() => fill(reader, free.pop() ?? new ArrayBuffer(W), length(i))));
    } else if (kind === 'fetch') {
      const reader = (await fetch(URL.createObjectURL(file))).body.getReader({ mode: 'byob' });
      let queue = Promise.resolve();
      readWindow = (i) => (queue = queue.then(() => fill(reader, free.pop() ?? new ArrayBuffer(W), length(i))));
    } else if (kind === 'perwin') {
      readWindow = (i) => fill(file.slice(i * W, i * W + length(i)).stream().getReader({ mode: 'byob' }), free.pop() ?? new ArrayBuffer(W), length(i));
    } else if (kind === 'lanes') {
      if (!(S >= W) || S % W) throw new Error('lanes: the stripe must be a multiple of the window');
      const lanes = [0, 1].map(() => ({ queue: Promise.resolve(), stripe: -1, reader: undefined }));
      readWindow = (i) => {
        const stripe = Math.floor((i * W) / S), lane = lanes[stripe % 2];
        const read = lane.queue.then(() => {
          if (lane.stripe !== stripe) {
            lane.stripe = stripe;
            lane.reader = file.slice(stripe * S, Math.min(file.size, (stripe + 1) * S)).stream().getReader({ mode: 'byob' });
          }
          return fill(lane.reader, free.pop() ?? new ArrayBuffer(W), length(i));
        });
        lane.queue = read.then(() => {}, () => {});
        return read;
      };
    } else throw new Error('unknown strategy ' + kind);
    const t0 = performance.now();
    const pending = [];
    let next = 0, bytes = 0;
    while (next < windows && pending.length < inFlight) pending.push([next, readWindow(next++)]);
    while (pending.length) {
      const [i, read] = pending.shift();
      free.push(await read);
      bytes += length(i);
      if (next < windows) pending.push([next, readWindow(next++)]);
    }
    postMessage({ seconds: (performance.now() - t0) / 1000, bytes });
  } catch (error) {
    postMessage({ error: String(error) });
  } finally {
    spinners.forEach((w) => w.terminate());
  }
};`;

const server = http.createServer((req, res) => {
  const js = req.url === '/reader.js';
  res.writeHead(req.url === '/' || js ? 200 : 404, {
    'Content-Type': js ? 'text/javascript' : 'text/html',
    'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp',
  });
  res.end(js ? READER : req.url === '/' ? PAGE : '');
}).listen(0, '127.0.0.1');
await new Promise((r) => server.once('listening', r));
const browser = await launchBenchBrowser();
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(600_000);
  await page.goto(`http://127.0.0.1:${server.address().port}/`);
  await (await page.$('#file')).uploadFile(positionals[0]);
  const pid = browser.process().pid;
  for (let rep = 0; rep < Number(values.reps); rep++) {
    for (const mode of values.modes.split(',')) {
      for (const spin of values.spin.split(',').map(Number)) {
        await new Promise((r) => setTimeout(r, 1500));
        const before = await treeCpu(pid);
        const { seconds, bytes } = await page.evaluate((m, s) => window.readWith(m, s), mode, spin);
        const after = await treeCpu(pid);
        console.log(`${mode}, ${spin} busy workers: ${(bytes / 1e9).toFixed(2)} GB in ${seconds.toFixed(2)} s (browser process CPU ${(after.browser - before.browser).toFixed(2)} s)`);
      }
    }
  }
} finally {
  await browser.close();
  server.close();
}
