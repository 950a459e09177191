/**
 * What every page test file sets up and does the same way: the built page served, one Chromium,
 * temporary folders, and after each test the page closed with no errors and no request off the
 * machine; plus the person's gestures those tests share (upload files, drop files or folders,
 * Tab to a control, open a file chooser by keyboard) and waits on the page's state (never fixed sleeps).
 */
import { createRequire } from 'node:module';
import type { Browser, ElementHandle, Page } from 'puppeteer';
import { afterAll, afterEach, beforeAll, expect } from 'vitest';
import { launchChromium, openDemo, serveDemo, type DemoPage, type DemoServer } from './browser.js';
import { tempDirs } from './fixtures.js';

export interface DemoSession {
  readonly browser: Browser;
  readonly server: DemoServer;
  /** Temporary folders, removed after the file's tests. */
  readonly dirs: ReturnType<typeof tempDirs>;
  /** Opens the page (`query` added to its address; another server's when given); it is checked and closed after the test. */
  open(query?: string, server?: DemoServer): Promise<DemoPage>;
}

/** Registers the file's hooks: call once at the top of a test file. */
export function useDemoSession(): DemoSession {
  let server: DemoServer | undefined;
  let browser: Browser | undefined;
  const opened: DemoPage[] = [];
  const dirs = tempDirs();

  beforeAll(async () => {
    server = await serveDemo();
    browser = await launchChromium();
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await server?.close();
    dirs.removeAll();
  });

  afterEach(async () => {
    const pages = opened.splice(0);
    try {
      for (const demo of pages) {
        expect(demo.errors).toEqual([]);
        expect(demo.foreignRequests).toEqual([]);
      }
    } finally {
      for (const demo of pages) await demo.page.close().catch(() => undefined);
    }
  });

  return {
    get browser() {
      if (!browser) throw new Error('the browser starts in beforeAll');
      return browser;
    },
    get server() {
      if (!server) throw new Error('the page is served from beforeAll');
      return server;
    },
    dirs,
    async open(query = '', other?: DemoServer) {
      const demo = await openDemo(this.browser, other ?? this.server, query);
      opened.push(demo);
      return demo;
    },
  };
}

/**
 * Gives files to the file input with this `data-testid`, as a picker would, and returns once the
 * page has taken them. A folder input's files reach it later than the call that gives them:
 * Chromium lists the folder on its own and fires `change` when done, so two folders given one
 * after the other could reach the page in either order (or the second replace the first before
 * the page read it) on a loaded machine; this waits for that `change` (after the page's own
 * handler, registered first, has run). A file input's `change` fires within the call.
 */
export async function upload(page: Page, testid: string, ...paths: string[]): Promise<void> {
  const input = (await page.$(`[data-testid="${testid}"]`)) as ElementHandle<HTMLInputElement>;
  const folder = await input.evaluate((e) => {
    const watched = e as HTMLInputElement & { folderTaken?: boolean };
    if (!e.webkitdirectory) return false;
    watched.folderTaken = false;
    e.addEventListener('change', () => { watched.folderTaken = true; }, { once: true });
    return true;
  });
  await input.uploadFile(...paths);
  if (folder) {
    await page.waitForFunction((e) => (e as HTMLInputElement & { folderTaken?: boolean }).folderTaken === true, { timeout: 30_000 }, input)
      .catch((e: unknown) => { throw new Error(`${testid}: the page did not take ${paths.join(', ')} (no change event in 30 s)`, { cause: e }); });
  }
}

/** Drops files built in the page from these bytes onto the zone, as a file manager's drag of loose files does. */
export function dropFiles(page: Page, zone: string, files: Record<string, ArrayLike<number>>): Promise<void> {
  const given = Object.fromEntries(Object.entries(files).map(([name, bytes]) => [name, Array.from(bytes)]));
  return page.evaluate((id, named) => {
    const data = new DataTransfer();
    for (const [name, bytes] of Object.entries(named)) data.items.add(new File([new Uint8Array(bytes)], name));
    const target = document.getElementById(id)!;
    for (const type of ['dragenter', 'dragover', 'drop']) target.dispatchEvent(new DragEvent(type, { dataTransfer: data, bubbles: true, cancelable: true }));
  }, zone, given);
}

/** What `webkitGetAsEntry()` gave for each dropped item, as the page's drop handler sees it. */
export type DroppedEntry = 'directory' | 'file' | 'none';

/**
 * Drops files and folders from disk onto the zone as a file manager does: Chromium's own drag and
 * drop (CDP `Input.dispatchDragEvent` with the paths in `data.files`), so each item carries a real
 * file-system entry and a folder arrives as a FileSystemDirectoryEntry the page walks. Returns the
 * entry kinds, read in the capture phase before the page's own handler.
 */
export async function dropPaths(page: Page, zone: string, ...paths: string[]): Promise<DroppedEntry[]> {
  const target = (await page.$(`#${zone}`))!;
  await target.scrollIntoView();
  const box = (await target.boundingBox())!;
  await page.evaluate(() => {
    const seen = window as unknown as { droppedEntries?: DroppedEntry[] };
    delete seen.droppedEntries;
    window.addEventListener('drop', (event) => {
      seen.droppedEntries = Array.from(event.dataTransfer?.items ?? [], (item) => {
        // Chromium names the spec's FileSystemDirectoryEntry and FileSystemFileEntry DirectoryEntry
        // and FileEntry, and exposes neither constructor: told apart by what each can do.
        const entry = item.webkitGetAsEntry();
        if (entry?.isDirectory && typeof (entry as FileSystemDirectoryEntry).createReader === 'function') return 'directory';
        return entry?.isFile && typeof (entry as FileSystemFileEntry).file === 'function' ? 'file' : 'none';
      });
    }, { capture: true, once: true });
  });
  const cdp = await page.createCDPSession();
  try {
    const at = { x: box.x + box.width / 2, y: box.y + box.height / 2 };
    // dragOperationsMask 1: copy, what a file manager offers.
    const data = { items: [], files: paths, dragOperationsMask: 1 };
    for (const type of ['dragEnter', 'dragOver', 'drop'] as const) await cdp.send('Input.dispatchDragEvent', { type, ...at, data });
  } finally {
    await cdp.detach();
  }
  await page.waitForFunction(() => 'droppedEntries' in window, { timeout: 30_000 });
  return page.evaluate(() => (window as unknown as { droppedEntries: DroppedEntry[] }).droppedEntries);
}

export const text = (page: Page, selector: string) => page.$eval(selector, (e) => e.textContent ?? '');
export const texts = (page: Page, selector: string) => page.$$eval(selector, (els) => els.map((e) => e.textContent ?? ''));
export const count = (page: Page, selector: string) => page.$$eval(selector, (els) => els.length);
/** The plan is on screen. */
export const planReady = (page: Page) => page.waitForFunction(() => !document.getElementById('plan')!.hidden, { timeout: 30_000 });
/** The merge button can be pressed. */
export const mergeEnabled = (page: Page) =>
  page.waitForFunction(() => !document.querySelector<HTMLButtonElement>('[data-testid="merge-button"]')!.disabled, { timeout: 30_000 });

/** Waits until the polite live region has said something matching `pattern`, and returns it. */
export async function announced(page: Page, pattern: RegExp): Promise<string> {
  await page.waitForFunction((source: string) => new RegExp(source).test(document.querySelector('[data-testid="status"]')!.textContent ?? ''), { timeout: 30_000 }, pattern.source);
  return text(page, '[data-testid="status"]');
}

/** Types into a number box as a person would: select all, then the keys. */
export async function typeInto(page: Page, selector: string, value: string): Promise<void> {
  await page.focus(selector);
  await page.keyboard.down('Control');
  await page.keyboard.press('a');
  await page.keyboard.up('Control');
  await page.keyboard.type(value);
}

/** Presses Tab until `selector` has focus; fails if it is not reached in `limit` presses. */
export async function tabTo(page: Page, selector: string, limit = 60): Promise<void> {
  for (let i = 0; i < limit; i++) {
    if (await page.evaluate((s) => document.activeElement?.matches(s) ?? false, selector)) return;
    await page.keyboard.press('Tab');
  }
  throw new Error(`${selector} was not reached by Tab`);
}

/** Presses `key` on the focused picker button until its file chooser opens (a loaded machine can miss one). */
export async function openChooser(page: Page, key: 'Enter' | 'Space') {
  for (let attempt = 1; ; attempt++) {
    const chooser = page.waitForFileChooser({ timeout: 15_000 });
    await page.keyboard.press(key);
    try {
      return await chooser;
    } catch (error) {
      if (attempt === 3) throw error;
    }
  }
}

/** axe-core's serious and critical violations on the page as it stands (axe is added on first use). */
export async function seriousViolations(page: Page): Promise<{ id: string; impact: string; targets: string[] }[]> {
  if (!(await page.evaluate(() => 'axe' in window))) await page.addScriptTag({ path: createRequire(import.meta.url).resolve('axe-core/axe.min.js') });
  return page.evaluate(async () => {
    const result = await (window as unknown as { axe: { run(o: object): Promise<{ violations: { id: string; impact: string; nodes: { target: string[] }[] }[] }> } })
      .axe.run({ resultTypes: ['violations'] });
    return result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical')
      .map((v) => ({ id: v.id, impact: v.impact, targets: v.nodes.map((n) => n.target.join(' ')).slice(0, 3) }));
  });
}

/**
 * The page's refusal once the plan fails: its status line, the alert, and whether a plan is shown
 * and Merge is off.
 */
export async function refusal(page: Page, timeout = 60_000) {
  await page.waitForFunction(() => document.getElementById('plan-status')!.className === 'error-text', { timeout });
  const alert = await page.waitForFunction(() => document.querySelector('[data-testid="alert"]')!.textContent || undefined, { timeout: 30_000 });
  return {
    status: await text(page, '[data-testid="plan-status"]'),
    alert: await alert.jsonValue(),
    planShown: await page.$eval('#plan', (e) => !(e as HTMLElement).hidden),
    mergeDisabled: await page.$eval('[data-testid="merge-button"]', (b) => (b as HTMLButtonElement).disabled),
  };
}
