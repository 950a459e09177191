/**
 * Refusals of merged values past the output dtype count over the whole tensor and name its first
 * and last row (by expert for a stack of experts), whichever slab the merge stopped in (the cases:
 * test/helpers/overflow-cases.ts). On one thread and on worker threads.
 */
import { beforeAll, describe } from 'vitest';
import type { MergeBackend } from '../src/index.js';
import { overflowCases } from './helpers/overflow-cases.js';
import { threadBackends } from './helpers/thread-backends.js';

const backends: Record<string, MergeBackend> = {};
const threads = threadBackends();
beforeAll(() => {
  backends['one thread'] = threads.backend();
  backends['worker threads'] = threads.backend(threads.sharedPool);
});

describe.each(['one thread', 'worker threads'])('%s', (name) => overflowCases(() => backends[name]));
