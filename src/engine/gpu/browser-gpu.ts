/** The page's or worker's WebGPU entry point, if the environment has one. */
export function getBrowserGpu(): GPU | undefined {
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  return nav?.gpu ?? undefined;
}
