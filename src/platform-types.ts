/**
 * The browser types the public declarations mention, declared (nearly) empty so that the library's
 * types compile under a plain Node configuration (no DOM lib, no @webgpu/types). Interfaces merge:
 * where the DOM lib or @webgpu/types are present, their full declarations apply unchanged.
 */
declare global {
  /* eslint-disable @typescript-eslint/no-empty-interface */
  interface GPU {}
  interface GPUAdapter {}
  interface GPUDevice {}
  interface FileSystemHandle {}
  // Each with the one member the DOM lib gives it too (identical, so they merge): an empty
  // interface would take any value, and `out: 3` or a Node WriteStream would compile.
  interface FileSystemFileHandle {
    readonly kind: 'file';
  }
  interface FileSystemDirectoryHandle {
    readonly kind: 'directory';
  }
  interface Worker {}
  namespace WebAssembly {
    interface Instance {}
    interface Module {}
    interface Memory {}
  }
}

export {};
