/**
 * Whether a browser context can run the CPU backend on Web Workers sharing memory, in a module of
 * its own that imports nothing: a page's main thread asks it (the demo's "CPU threads" control)
 * without loading the pool.
 */

/** Why a pool of Web Workers cannot be made here, or undefined when it can. */
export function browserCpuPoolUnavailable(): string | undefined {
  if (typeof Worker === 'undefined') {
    // The browser entry in Node: say where Node's threads are.
    const node = (globalThis as { process?: { versions?: { node?: string } } }).process?.versions?.node !== undefined;
    return node ? 'Node has no Web Workers (loramerge/node runs the CPU backend on worker threads)' : 'this context cannot start Web Workers';
  }
  if (typeof SharedArrayBuffer === 'undefined' || (globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated === false) {
    return 'the page is not cross-origin isolated, so workers cannot share memory';
  }
  return undefined;
}
