/** Finding a Vulkan driver for Dawn in Node: SwiftShader only where no real driver exists. */
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { chooseVulkanDriver } from '../src/engine/gpu/node-gpu.js';

describe('chooseVulkanDriver', () => {
  it('never overrides a driver the user chose', () => {
    const env: NodeJS.ProcessEnv = { VK_ICD_FILENAMES: '/opt/vendor/icd.json' };
    expect(chooseVulkanDriver(env)).toBeUndefined();
    expect(env.VK_ICD_FILENAMES).toBe('/opt/vendor/icd.json');
    const env2: NodeJS.ProcessEnv = { VK_DRIVER_FILES: '/opt/vendor/icd.json' };
    expect(chooseVulkanDriver(env2)).toBeUndefined();
    expect(env2.VK_ICD_FILENAMES).toBeUndefined();
  });

  it('points the loader at an existing SwiftShader ICD, or leaves the system driver alone', () => {
    const env: NodeJS.ProcessEnv = {};
    const icd = chooseVulkanDriver(env);
    if (icd === undefined) {
      expect(env.VK_ICD_FILENAMES).toBeUndefined();
    } else {
      expect(existsSync(icd)).toBe(true);
      expect(icd).toMatch(/vk_swiftshader_icd\.json$/);
      expect(env.VK_ICD_FILENAMES).toBe(icd);
    }
  });
});
