/**
 * Extract on the page from a fine-tune that grew its vocabulary (embed_tokens 50 → 52 rows, as
 * transformers' resize_token_embeddings leaves it after tokens are added): the embedding is saved
 * whole at 52 rows, and the page says so, shown with the result and aloud, naming the tensor and
 * both row counts, since the adapter then loads only on a base resized the same way.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PAGE_RETRY } from './helpers/browser.js';
import { texts, upload, useDemoSession } from './helpers/demo-session.js';
import { buildSafetensors, seededRandom } from './helpers/fixtures.js';
import { gaussian } from './helpers/svd-reference.js';

const session = useDemoSession();
const Q = 'model.layers.0.self_attn.q_proj.weight';
const E = 'model.embed_tokens.weight';

describe('extract of a fine-tune with a grown vocabulary', PAGE_RETRY, () => {
  it('says, shown and aloud, which embedding grew and from how many rows to how many', async () => {
    const rand = seededRandom(71);
    const values = (n: number) => Float32Array.from({ length: n }, () => gaussian(rand));
    const q = values(16 * 16), embed = values(50 * 16);
    // The tuned q_proj moved by a rank-1 update; two tokens' rows appended to the embedding.
    const u = values(16), v = values(16);
    const tunedQ = q.map((x, k) => x + 0.1 * u[Math.floor(k / 16)] * v[k % 16]);
    const grown = new Float32Array(52 * 16);
    grown.set(embed);
    grown.set(values(2 * 16), 50 * 16);
    const dir = session.dirs.make({
      'base.safetensors': buildSafetensors([{ name: Q, dtype: 'F32', shape: [16, 16], data: q }, { name: E, dtype: 'F32', shape: [50, 16], data: embed }]),
      'tuned.safetensors': buildSafetensors([{ name: Q, dtype: 'F32', shape: [16, 16], data: tunedQ }, { name: E, dtype: 'F32', shape: [52, 16], data: grown }]),
    });
    const demo = await session.open('?backend=cpu&mode=extract');
    const { page } = demo;
    await upload(page, 'job-base-input', join(dir, 'base.safetensors'));
    await upload(page, 'job-tuned-input', join(dir, 'tuned.safetensors'));
    await page.waitForFunction(() => !document.querySelector<HTMLButtonElement>('[data-testid="job-run"]')!.disabled, { timeout: 30_000 });
    await page.click('[data-testid="job-run"]');
    await page.waitForFunction(() => document.querySelectorAll('#job-warnings li').length > 0, { timeout: 60_000 });
    const note = 'tuned.safetensors has a vocabulary grown for added tokens: model.embed_tokens.weight has 52 rows (50 in base.safetensors); saved whole, so the adapter loads only on a base resized to 52 rows the same way (transformers\' resize_token_embeddings) before it is loaded';
    expect(await texts(page, '#job-warnings li')).toEqual([`warning: ${note}`]);
    expect(await page.$eval('#job-warnings', (e) => (e as HTMLElement).offsetParent !== null)).toBe(true);
    await page.waitForFunction(() => /^Extracted/.test(document.querySelector('[data-testid="status"]')!.textContent ?? ''), { timeout: 30_000 });
    expect(await page.$eval('[data-testid="status"]', (e) => e.textContent)).toMatch(new RegExp(`with the rank chosen for each module\\. Warning: ${note.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`));
  }, 120_000);
});
