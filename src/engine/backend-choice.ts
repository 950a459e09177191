/** The backend a front end asks for: see createBackend for how `auto` decides. */
export type BackendChoice = 'auto' | 'webgpu' | 'cpu';
