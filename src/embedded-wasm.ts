/**
 * The library's small WebAssembly modules ship as base64 text inside its JavaScript (no extra file
 * for a bundler or a server to find). These decode and instantiate one synchronously.
 */

/** The module's bytes, or null where this engine has no WebAssembly (or no `atob`). */
export function embeddedWasmBytes(base64: string): Uint8Array<ArrayBuffer> | null {
  if (typeof WebAssembly !== 'object' || typeof atob !== 'function') return null;
  const text = atob(base64);
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return bytes;
}

/**
 * A module without imports, compiled and instantiated synchronously (they are small), or null where
 * the engine lacks WebAssembly or its SIMD, or a policy forbids compiling: callers then run TypeScript.
 */
export function instantiateEmbeddedWasm<Exports>(base64: string): Exports | null {
  try {
    const bytes = embeddedWasmBytes(base64);
    return bytes ? (new WebAssembly.Instance(new WebAssembly.Module(bytes), {}).exports as unknown as Exports) : null;
  } catch {
    return null;
  }
}
