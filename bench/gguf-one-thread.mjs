/**
 * The GGUF case's one-thread contestant: the CLI's merge through the library, on the CPU backend
 * without worker threads, so merging and re-encoding run on the calling thread alone (as every
 * GGUF requantization did before it went to the worker pool). Same files, same bytes written.
 *
 * usage: node bench/gguf-one-thread.mjs BASE.gguf ADAPTER_DIR OUT.gguf
 */
import { createBackend, mergeModel, prepareMerge } from '../dist/index.js';
import { createNodeOutputTarget, openNodeInputFileSet } from '../dist/node.js';

const [base, adapter, out] = process.argv.slice(2);
const prepared = await prepareMerge(await openNodeInputFileSet(base), [{ files: await openNodeInputFileSet(adapter) }]);
const backend = await createBackend({ kind: 'cpu' });
try {
  const output = await createNodeOutputTarget(out, 'file', [base, adapter], {});
  const result = await mergeModel({ prepared, output, backend });
  process.stderr.write(`backend: ${result.backend}\n`);
} finally {
  backend.dispose();
  await prepared.close();
}
