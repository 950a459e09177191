/**
 * The browser types the public declarations mention, declared empty so that the library's types
 * compile under a plain Node configuration (no DOM lib, no @webgpu/types). Interfaces merge: where
 * the DOM lib or @webgpu/types are present, their full declarations apply unchanged.
 */
declare global {
  /* eslint-disable @typescript-eslint/no-empty-interface */
  interface GPU {}
  interface GPUAdapter {}
  interface GPUDevice {}
  interface FileSystemHandle {}
  interface FileSystemFileHandle {}
  interface FileSystemDirectoryHandle {}
  interface Worker {}
  namespace WebAssembly {
    interface Instance {}
    interface Module {}
    interface Memory {}
  }
}

export {};
