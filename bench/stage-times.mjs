/**
 * Where a file-to-file merge spends its time: runs the library's mergeModel once with wrappers
 * around its three interfaces (input files, backend, output) that add up the time each stage is
 * busy. Stages overlap in the pipeline, so the sum can exceed the wall time; the gap between
 * wall time and the busiest stage is what the overlap leaves on the table.
 *
 * usage: node bench/stage-times.mjs BASE_DIR ADAPTER_DIR OUT_DIR cpu|webgpu|auto [slabMiB]
 * Prints one JSON line: { wall, read, merge, write, merges, slabBytes, maxRssKiB }.
 */
import { performance } from 'node:perf_hooks';
import {
  createNodeBackend, createNodeOutputTarget, mergeModel, openNodeInputFileSet, prepareMerge,
} from '../dist/node.js';

const busy = { read: 0, merge: 0, write: 0, merges: 0 };

async function timed(stage, work) {
  const t0 = performance.now();
  try {
    return await work();
  } finally {
    busy[stage] += performance.now() - t0;
  }
}

function timedInputs(files) {
  return {
    name: files.name,
    list: () => files.list(),
    readText: (path) => files.readText(path),
    async open(path) {
      const source = await files.open(path);
      return {
        name: source.name,
        size: source.size,
        read: (offset, length) => timed('read', () => source.read(offset, length)),
        close: () => source.close(),
      };
    },
  };
}

function timedOutput(output) {
  return {
    name: output.name,
    commit: () => timed('write', () => output.commit()),
    abort: () => output.abort(),
    async createFile(path) {
      const sink = await output.createFile(path);
      return {
        write: (chunk) => timed('write', () => sink.write(chunk)),
        close: () => timed('write', () => sink.close()),
      };
    },
  };
}

async function main([baseDir, adapterDir, outDir, kind = 'auto', slabMiB]) {
  const baseFiles = timedInputs(await openNodeInputFileSet(baseDir));
  const adapterFiles = timedInputs(await openNodeInputFileSet(adapterDir));
  const prepared = await prepareMerge(baseFiles, [{ files: adapterFiles }]);
  const backend = await createNodeBackend(kind);
  const merge = backend.merge.bind(backend);
  backend.merge = (op, signal) => {
    busy.merges++;
    return timed('merge', () => merge(op, signal));
  };
  const output = timedOutput(await createNodeOutputTarget(outDir, 'folder', [baseDir, adapterDir]));
  const slabBytes = slabMiB ? Number(slabMiB) * 1024 * 1024 : undefined;
  const t0 = performance.now();
  try {
    await mergeModel({ prepared, output, backend, slabBytes });
  } finally {
    backend.dispose();
    await prepared.close();
  }
  const wall = performance.now() - t0;
  const s = (ms) => Math.round(ms) / 1000;
  console.log(JSON.stringify({
    backend: backend.description, wall: s(wall), read: s(busy.read), merge: s(busy.merge), write: s(busy.write),
    merges: busy.merges, slabBytes: slabBytes ?? 'default', maxRssKiB: process.resourceUsage().maxRSS,
  }));
  process.exit(0);
}

await main(process.argv.slice(2));
