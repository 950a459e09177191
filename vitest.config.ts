import { defineConfig } from 'vitest/config';

// GPU tests share one software GPU on a 2-core machine: run files in forked processes (Dawn's Node
// bindings are not safe in worker threads) and keep parallelism low.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    exclude: ['test/large/**', 'node_modules/**'],
    // The developer's Hugging Face token and HF_ENDPOINT stay out of the tests.
    setupFiles: ['test/setup/hub-environment.ts'],
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});
