import { describe, expect, it } from 'vitest';
import { cancelledMessage, outArgument } from '../src/cli/cancel-signals.js';

// A cancel before the command has parsed its arguments (main.ts's handler) must say what one during
// the merge says: the --out comes from the raw command line.
describe('the line a cancelled command prints', () => {
  it('names --out in both spellings, and nothing when there is none', () => {
    expect(outArgument(['--base', 'b.safetensors', '--out', 'm.safetensors', '--adapter', 'a'])).toBe('m.safetensors');
    expect(outArgument(['--out=dir/m', '--base', 'b'])).toBe('dir/m');
    expect(outArgument(['model.safetensors'])).toBeUndefined();
    expect(cancelledMessage('merge', 'm.safetensors')).toBe('merge cancelled; nothing was written to m.safetensors');
    expect(cancelledMessage('inspect', undefined)).toBe('inspect cancelled');
  });
});
