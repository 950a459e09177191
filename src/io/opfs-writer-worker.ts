/**
 * The OPFS writer's worker (a module Web Worker): holds the synchronous handles of the files it is
 * given and writes each chunk in order, answering once it is written.
 */
import { openSyncHandle, writeAll } from './opfs-writer.js';
import type { OpfsWriterReply, OpfsWriterRequest } from './opfs-writer-protocol.js';

const files = new Map<number, Awaited<ReturnType<typeof openSyncHandle>>>();

async function handle(request: OpfsWriterRequest): Promise<void> {
  switch (request.op) {
    case 'open':
      files.set(request.file, await openSyncHandle(request.handle));
      return;
    case 'write': {
      const sync = files.get(request.file);
      if (!sync) throw new Error('write to a file that is not open');
      writeAll(sync, request.bytes, request.at);
      return;
    }
    case 'close':
      files.get(request.file)?.close();
      files.delete(request.file);
  }
}

// Requests are handled one at a time, in order: an open's await must not let a write overtake it.
let queue = Promise.resolve();
self.addEventListener('message', (event: MessageEvent<OpfsWriterRequest>) => {
  const request = event.data;
  queue = queue.then(async () => {
    let reply: OpfsWriterReply;
    try {
      await handle(request);
      reply = { id: request.id };
    } catch (e) {
      reply = { id: request.id, error: { name: e instanceof Error ? e.name : 'Error', message: e instanceof Error ? e.message : String(e) } };
    }
    self.postMessage(reply);
  });
});
