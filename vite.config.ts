import { defineConfig } from 'vite';

// The demo page: `npm run demo` serves it, `npm run build` writes static files to demo-dist/.
export default defineConfig({
  root: 'demo',
  base: './',
  build: { outDir: '../demo-dist', emptyOutDir: true, target: 'es2022' },
  worker: { format: 'es' },
  server: { host: '127.0.0.1' },
  preview: { host: '127.0.0.1' },
});
