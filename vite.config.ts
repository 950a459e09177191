import { defineConfig } from 'vite';

/**
 * Cross-origin isolation (COOP + COEP) gives the page SharedArrayBuffer, which the CPU backend's
 * worker threads need; the page loads nothing from other origins, so nothing breaks. Static hosts
 * get the same headers from demo/public/_headers (Netlify, Cloudflare Pages); elsewhere the page
 * falls back to one CPU thread and says so.
 */
const isolation = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
};

// The demo page: `npm run demo` serves it, `npm run build` writes static files to demo-dist/.
export default defineConfig({
  root: 'demo',
  base: './',
  build: { outDir: '../demo-dist', emptyOutDir: true, target: 'es2022' },
  worker: { format: 'es' },
  server: { host: '127.0.0.1', headers: isolation },
  preview: { host: '127.0.0.1', headers: isolation },
});
