/**
 * The page given crafted files, as a person would pick them: each broken file is one clear message
 * naming it, in the plan's place and read out once (no plan, nothing to merge), in bounded browser
 * memory; names from files (markup, control characters, bidirectional overrides, 4 KB) are shown as
 * text with their controls escaped, never as markup, and do not widen the page; a folder past the
 * command line's limits is refused when picked.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'puppeteer';
import { describe, expect, it } from 'vitest';
// @ts-expect-error plain JavaScript module shared with the benchmark
import { treeRss } from '../bench/page-merge.mjs';
import { MAX_CHART_LABEL } from '../demo/dom.js';
import { MAX_INPUT_FILES } from '../src/limits.js';
import { PAGE_RETRY } from './helpers/browser.js';
import { announced, planReady, refusal, text, upload, useDemoSession } from './helpers/demo-session.js';
import { buildSafetensors } from './helpers/fixtures.js';
import { llamaWithPeft } from './helpers/page-fixtures.js';

const session = useDemoSession();
const MIB = 2 ** 20;

/** A safetensors file of an 8-byte length field (any value) and the header bytes after it. */
function withHeader(header: Uint8Array, lengthField: bigint): Uint8Array {
  const out = new Uint8Array(8 + header.byteLength);
  new DataView(out.buffer).setBigUint64(0, lengthField, true);
  out.set(header, 8);
  return out;
}

const fixture = llamaWithPeft(41);
const PEFT = ['llama-lora/adapter_config.json', 'llama-lora/adapter_model.safetensors'];

describe('the page given crafted files', PAGE_RETRY, () => {
  it('refuses each broken file with one message naming it, no plan, in bounded memory', async () => {
    const nested = new TextEncoder().encode(`{"a":${'['.repeat(20_000_000)}${']'.repeat(20_000_000)}}`);
    const dir = session.dirs.make({
      ...fixture.files,
      'huge-length.safetensors': withHeader(new TextEncoder().encode('{}'), 2n ** 60n),
      'nested.safetensors': withHeader(nested, BigInt(nested.byteLength)),
      'truncated.safetensors': fixture.base.subarray(0, fixture.base.byteLength - 100),
      'empty.safetensors': new Uint8Array(0),
      'deep/adapter_config.json': `{"peft_type":"LORA","r":2,"lora_alpha":4,"x":${'['.repeat(100_000)}${']'.repeat(100_000)}}`,
      'deep/adapter_model.safetensors': fixture.adapter,
    });
    const pid = session.browser.process()!.pid;
    const cases: [string, string[], string[], string][] = [
      ['a header length of 2^60', ['huge-length.safetensors'], PEFT, 'huge-length.safetensors: header length 1152921504606846976 bytes is above the 100000000-byte limit (not a safetensors file?)'],
      ['a 40 MB nested header', ['nested.safetensors'], PEFT, 'nested.safetensors: header nests deeper than 64 levels (the limit MAX_HEADER_NESTING); not a safetensors header'],
      ['a base cut mid-tensor', ['truncated.safetensors'], PEFT, 'truncated.safetensors: tensor "model.embed_tokens.weight" ends at byte 5184 of the data but the file holds only 5084 data bytes (truncated download?): download the file again'],
      ['a 0-byte adapter', ['llama.safetensors'], ['empty.safetensors'], 'empty.safetensors: file is empty, not a safetensors file'],
      ['a config nested 100 000 deep', ['llama.safetensors'], ['deep/adapter_config.json', 'deep/adapter_model.safetensors'], 'PEFT adapter/adapter_config.json: nests deeper than 64 levels (the limit MAX_CONFIG_NESTING); not a config this tool reads'],
      ['the base picked as the adapter too', ['llama.safetensors'], ['llama.safetensors'], 'llama.safetensors: not a LoRA adapter this tool recognises (no lora_up/lora_down, lora_A/lora_B or LyCORIS tensors); it holds a model\'s weights (5 tensors such as model.layers.0.self_attn.q_proj.weight): is it the base model, given as an adapter?'],
    ];
    const measured: string[] = [];
    for (const [what, base, adapter, message] of cases) {
      const demo = await session.open('?backend=cpu');
      const idle: number = await treeRss(pid);
      await upload(demo.page, 'base-input', ...base.map((f) => join(dir, f)));
      await upload(demo.page, 'adapter-input', ...adapter.map((f) => join(dir, f)));
      const shown = await refusal(demo.page);
      const over = ((await treeRss(pid)) - idle) / MIB;
      measured.push(`${what}: ${over.toFixed(0)} MiB over idle`);
      // An adapter that cannot be read blocks the plan: the alert says which, and what to do.
      const blocker = adapter === PEFT ? undefined : adapter[0].includes('/') ? 'PEFT adapter' : adapter[0];
      const alert = blocker ? `${message} The plan is blocked by ${blocker}, which cannot be read: remove it, or fix it and pick it again.` : message;
      expect(shown, what).toEqual({ status: message, alert, planShown: false, mergeDisabled: true });
      // The 40 MB header is held once as the picked File; nothing builds it.
      expect(over, what).toBeLessThan(200);
      await demo.page.close();
    }
    process.stdout.write(`browser memory: ${measured.join('; ')}\n`);
  }, 300_000);

  it('shows names from files as text, controls escaped, bounded, in the plan, the modules table and the alert', async () => {
    // The first in order is the one the alert quotes: 4 KB with a line break.
    const names = [`!ctl\u001b]0;title\u0007\r\n\u202Enext${'x'.repeat(4000)}`, '<img src=x onerror="window.pwned=1">', 'rlo\u202Eexe.txt'];
    const values = (n: number, v: number) => new Array(n).fill(v);
    const base = buildSafetensors(names.map((n) => ({ name: `${n}.weight`, dtype: 'F32' as const, shape: [4, 4], data: values(16, 0.5) })));
    const adapter = (on: string[]) => buildSafetensors(on.flatMap((n) => [
      { name: `${n}.lora_A.weight`, dtype: 'F32' as const, shape: [2, 4], data: values(8, 0.1) },
      { name: `${n}.lora_B.weight`, dtype: 'F32' as const, shape: [4, 2], data: values(8, 0.1) },
    ]));
    const dir = session.dirs.make({
      'hostile.safetensors': base, 'matching.safetensors': adapter(names),
      ...fixture.files,
    });
    const expectShownAsText = async (page: Page) => {
      const seen = await page.evaluate(() => ({
        pwned: (window as unknown as { pwned?: number }).pwned,
        images: document.querySelectorAll('img').length,
        text: document.body.innerText + [...document.querySelectorAll('[title]')].map((e) => e.getAttribute('title')).join(''),
        alert: document.querySelector('[data-testid="alert"]')!.textContent!,
        wider: document.documentElement.scrollWidth - document.documentElement.clientWidth,
      }));
      expect(seen.pwned).toBeUndefined();
      expect(seen.images).toBe(0);
      expect(seen.text).toContain('<img src=x onerror="window.pwned=1">');
      expect(seen.text).toContain('rlo\\u202eexe.txt');
      expect(seen.text).toContain('ctl\\u001b]0;title\\u0007\\u000d');
      expect(seen.text).not.toMatch(/[\u001b\u0007\u202e\r]/);
      expect(seen.alert).not.toMatch(/[\u001b\u0007\u202e\r\n]/);
      expect(seen.alert.length).toBeLessThanOrEqual(4096 + 64);
      expect(seen.wider).toBe(0);
    };

    // On a base without them: every name is in an error, the alert reads the first.
    const unmatched = await session.open('?backend=cpu');
    await upload(unmatched.page, 'base-input', join(dir, 'llama.safetensors'));
    await upload(unmatched.page, 'adapter-input', join(dir, 'matching.safetensors'));
    await planReady(unmatched.page);
    await unmatched.page.waitForFunction(() => document.querySelector('[data-testid="alert"]')!.textContent, { timeout: 30_000 });
    expect(await unmatched.page.$$eval('[data-testid="plan-problems"] li', (els) => els.length)).toBe(3);
    expect(await text(unmatched.page, '[data-testid="alert"]')).toMatch(/^The plan has 3 errors. First: matching.safetensors: module "!ctl/);
    await expectShownAsText(unmatched.page);

    // Matched: the names are in the modules table (and its tooltips) and the merge can run.
    const matched = await session.open('?backend=cpu');
    await upload(matched.page, 'base-input', join(dir, 'hostile.safetensors'));
    await upload(matched.page, 'adapter-input', join(dir, 'matching.safetensors'));
    await planReady(matched.page);
    await announced(matched.page, /3 modules/);
    await matched.page.$eval('#modules-details', (d) => { (d as HTMLDetailsElement).open = true; });
    expect(await matched.page.$$eval('#plan-modules tbody tr', (rows) => rows.length)).toBe(3);
    await expectShownAsText(matched.page);

    // The chart draws each module kind (here the names' last parts) as a legend entry and tooltip
    // line: escaped, on one line, at most MAX_CHART_LABEL characters with the middle left out.
    const described = await matched.page.$eval('[data-testid="magnitude-chart"]', (c) => c.getAttribute('aria-label')!);
    const kinds = described.split('; module kinds: ')[1].split(', ');
    expect(kinds).toHaveLength(3);
    expect(kinds).toContain(`!ctl\\u001b]0;title\\u0007\\u000d \\u202enextx…${'x'.repeat(21)}`);
    expect(kinds).toContain('pwned=1">');
    for (const kind of kinds) expect(kind.length).toBeLessThanOrEqual(MAX_CHART_LABEL);
    expect(described).not.toMatch(/[\u001b\u0007\u202e\r\n]/);
  }, 120_000);

  it(`refuses a picked folder of more than MAX_INPUT_FILES files or deeper than MAX_INPUT_DEPTH, shown and read out`, async () => {
    const many = session.dirs.make();
    mkdirSync(join(many, 'home'));
    for (let i = 0; i <= MAX_INPUT_FILES; i++) writeFileSync(join(many, 'home', `f${i}.txt`), '');
    const deep = session.dirs.make();
    const deepPath = join(deep, 'nest', ...Array.from({ length: 12 }, (_, i) => `d${i}`));
    mkdirSync(deepPath, { recursive: true });
    writeFileSync(join(deepPath, 'model.safetensors'), fixture.base);
    for (const [folder, message] of [
      [join(many, 'home'), `home: more than ${MAX_INPUT_FILES} files (the limit MAX_INPUT_FILES); pick or drop the model's own folder`],
      [join(deep, 'nest'), 'nest: folders nest deeper than 8 levels (the limit MAX_INPUT_DEPTH); pick or drop the model\'s own folder'],
    ]) {
      const demo = await session.open('?backend=cpu');
      await upload(demo.page, 'base-folder-input', folder);
      await demo.page.waitForFunction(() => !document.getElementById('page-error')!.hidden, { timeout: 60_000 });
      expect(await text(demo.page, '[data-testid="page-error"]')).toBe(message);
      // The alert is cleared and set again 50 ms later, so that a repeated message is read out again.
      await demo.page.waitForFunction(() => document.querySelector('[data-testid="alert"]')!.textContent, { timeout: 30_000 });
      expect(await text(demo.page, '[data-testid="alert"]')).toBe(message);
      expect(await demo.page.$eval('[data-testid="base-summary"]', (e) => (e as HTMLElement).hidden)).toBe(true);
      await demo.page.close();
    }
  }, 180_000);
});
