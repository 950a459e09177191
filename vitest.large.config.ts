import { defineConfig } from 'vitest/config';

// Long runs kept out of `npm test`: `npm run test:large`.
export default defineConfig({
  test: {
    include: ['test/large/**/*.test.ts'],
    pool: 'forks',
    maxWorkers: 1,
    testTimeout: 900_000,
    hookTimeout: 300_000,
  },
});
