/**
 * Refusals of the format readers that no other test reached (found by mutating each check to
 * false and running the tests that touch its file): each case is the smallest file of the format
 * it stands for that breaks one rule, and the test asserts the one line that names the file or
 * tensor and what is wrong.
 */
import { describe, expect, it } from 'vitest';
import { MergeError, type MergeErrorCode } from '../src/errors.js';
import { checkJsonBounds, parseBoundedJson } from '../src/formats/bounded-json.js';
import { openGgufModel } from '../src/formats/gguf/gguf-model.js';
import { openGguf } from '../src/formats/gguf/gguf-reader.js';
import { openSafetensors } from '../src/formats/safetensors-reader.js';
import { MAX_CONFIG_NESTING, MAX_CONFIG_VALUES, MAX_METADATA_ENTRIES, MAX_TENSOR_DIMS } from '../src/limits.js';
import { bytesSource, memoryInputFileSet } from '../src/io/memory-source.js';
import { concatBytes } from './helpers/fixtures.js';
import { buildGguf, tensorData } from './helpers/gguf-builder.js';
import { splitF16Llama } from './helpers/gguf-models.js';

/** The MergeError `run` rejects with: its code, one line, and every fragment in `mentions`. */
async function refusal(run: () => Promise<unknown>, code: MergeErrorCode, ...mentions: string[]): Promise<string> {
  let caught: unknown;
  try {
    await run();
  } catch (e) {
    caught = e;
  }
  expect(caught, `expected ${code}`).toBeInstanceOf(MergeError);
  const error = caught as MergeError;
  expect(error.code, error.message).toBe(code);
  expect(error.message).not.toContain('\n');
  for (const m of mentions) expect(error.message).toContain(m);
  return error.message;
}

const ST = 'unet/diffusion_pytorch_model.safetensors';

/** A safetensors file of exactly this header text (8-byte little-endian length, header, data). */
function safetensorsOf(header: string, data = new Uint8Array(0)): Uint8Array {
  const text = new TextEncoder().encode(header);
  const prefix = new Uint8Array(8);
  new DataView(prefix.buffer).setBigUint64(0, BigInt(text.byteLength), true);
  return concatBytes([prefix, text, data]);
}

const openSt = (header: string, data?: Uint8Array) => () => openSafetensors(bytesSource(safetensorsOf(header, data), ST));

/** One real tensor entry of a UNet: conv_in's bias, 320 f16 values. */
const CONV_IN_BIAS = '"conv_in.bias":{"dtype":"F16","shape":[320],"data_offsets":[0,640]}';

describe('safetensors header: hostile headers refused in one line', () => {
  it('a second __metadata__ object is refused, not merged over the first', async () => {
    const message = await refusal(openSt(`{"__metadata__":{"format":"pt"},"__metadata__":{"format":"pt"},${CONV_IN_BIAS}}`, new Uint8Array(640)), 'INVALID_HEADER');
    expect(message).toBe(`${ST}: __metadata__ appears twice`);
  });

  it('a __metadata__ key given twice is refused, naming the key', async () => {
    const message = await refusal(openSt(`{"__metadata__":{"format":"pt","format":"flax"},${CONV_IN_BIAS}}`, new Uint8Array(640)), 'INVALID_HEADER');
    expect(message).toBe(`${ST}: __metadata__ key "format" appears twice`);
  });

  it(`__metadata__ with more than MAX_METADATA_ENTRIES (${MAX_METADATA_ENTRIES}) entries is refused by the limit`, async () => {
    const entries = Array.from({ length: MAX_METADATA_ENTRIES + 1 }, (_, i) => `"k${i}":""`).join(',');
    const message = await refusal(openSt(`{"__metadata__":{${entries}}}`), 'LIMIT_EXCEEDED');
    expect(message).toBe(`${ST}: __metadata__ has more than ${MAX_METADATA_ENTRIES} entries (the limit MAX_METADATA_ENTRIES)`);
  });

  it('data_offsets of more than two numbers past the element budget, or a dtype nested too deep, are refused by name', async () => {
    const offsets = Array.from({ length: MAX_TENSOR_DIMS + 2 }, (_, i) => i * 640).join(',');
    const message = await refusal(openSt(`{"conv_in.bias":{"dtype":"F16","shape":[320],"data_offsets":[${offsets}]}}`), 'INVALID_HEADER');
    expect(message).toBe(`${ST}: tensor "conv_in.bias": "data_offsets" is not a [begin, end] pair`);
    const dtype = await refusal(openSt('{"conv_in.bias":{"dtype":[[["F16"]]],"shape":[320],"data_offsets":[0,640]}}'), 'INVALID_HEADER');
    expect(dtype).toBe(`${ST}: tensor "conv_in.bias": "dtype" is not a dtype name`);
  });

  it('a tensor name with an escape JSON does not define is refused as bad JSON, with its offset', async () => {
    const message = await refusal(openSt('{"conv_in\\q.bias":{"dtype":"F16","shape":[320],"data_offsets":[0,640]}}', new Uint8Array(640)), 'INVALID_HEADER');
    expect(message).toBe(`${ST}: header is not valid JSON (bad escape in a string at byte 1)`);
  });
});

describe('bounded JSON: configs refused before JSON.parse builds them', () => {
  it(`nesting deeper than MAX_CONFIG_NESTING (${MAX_CONFIG_NESTING}) is refused naming the file`, () => {
    const deep = `{"lora_alpha":${'['.repeat(MAX_CONFIG_NESTING)}1${']'.repeat(MAX_CONFIG_NESTING)}}`;
    expect(() => parseBoundedJson(deep, 'adapter/adapter_config.json')).toThrow(
      `adapter/adapter_config.json: nests deeper than ${MAX_CONFIG_NESTING} levels (the limit MAX_CONFIG_NESTING); not a config this tool reads`,
    );
    // One level less is only JSON.parse's to judge.
    const ok = `{"lora_alpha":${'['.repeat(MAX_CONFIG_NESTING - 1)}1${']'.repeat(MAX_CONFIG_NESTING - 1)}}`;
    expect(() => checkJsonBounds(ok, 'adapter/adapter_config.json')).not.toThrow();
  });

  it(`more than MAX_CONFIG_VALUES (${MAX_CONFIG_VALUES}) values is refused naming the file`, () => {
    const many = `{"target_modules":[${Array.from({ length: MAX_CONFIG_VALUES + 1 }, () => '0').join(',')}]}`;
    let caught: unknown;
    try {
      parseBoundedJson(many, 'adapter/adapter_config.json');
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(MergeError);
    expect((caught as MergeError).code).toBe('LIMIT_EXCEEDED');
    expect((caught as MergeError).message).toBe(`adapter/adapter_config.json: holds more than ${MAX_CONFIG_VALUES} values (the limit MAX_CONFIG_VALUES); not a config this tool reads`);
  });
});
