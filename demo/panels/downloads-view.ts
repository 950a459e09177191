/**
 * What the merge's and the adapter jobs' result views share: download links to disk-backed files
 * in browser storage, made again when the result changes (the old links' object URLs revoked), and
 * a result made with other settings than the current ones marked out of date: its box styled so,
 * its links renamed and their test ids changed, so nobody takes it for the current one.
 */
import { el } from '../dom.js';

/** A result's box and list of download links; subclasses fill the list and say what the result is. */
export abstract class DownloadsView<R extends { stale: boolean }> {
  /** The result on screen. */
  protected shown?: R;
  private shownStale = false;
  private urls: string[] = [];

  /** `testid`: the primary link's test id; an extra link's adds `-extra`, an out-of-date one's `-stale`. */
  constructor(protected readonly box: HTMLElement, protected readonly list: HTMLUListElement, private readonly testid: string) {}

  /** Shows `result` (undefined: none), rebuilding the links only when it is another result than the one shown. */
  render(result: R | undefined): void {
    if (result === this.shown && result?.stale === this.shownStale) return;
    if (result !== this.shown) {
      for (const url of this.urls) URL.revokeObjectURL(url);
      this.urls = [];
      this.list.replaceChildren();
      this.box.hidden = !result;
      this.build(result);
    }
    this.shown = result;
    this.shownStale = result?.stale ?? false;
    if (!result) return;
    this.box.classList.toggle('stale', result.stale);
    this.describe(result);
    for (const control of this.list.querySelectorAll<HTMLElement>('[data-label]')) this.label(control);
  }

  /**
   * Labels a link or button of the result shown (its `data-label`, its test id `data-current-testid`)
   * as current or out of date; a control made later (a zip packed on request) is labelled so too.
   * A disabled button is at work and says so itself.
   */
  protected label(control: HTMLElement): void {
    if ((control as HTMLButtonElement).disabled) return;
    control.textContent = `${this.shownStale ? 'Out of date: ' : ''}${control.dataset.label}`;
    control.dataset.testid = `${control.dataset.currentTestid}${this.shownStale ? '-stale' : ''}`;
  }

  /** Moves focus to the result, so keyboard and screen-reader users land on it. */
  focus(): void {
    this.box.focus();
  }

  /** Fills the emptied list for a new result, and whatever goes with it (undefined: none is shown). */
  protected abstract build(result: R | undefined): void;

  /** Says what the result is, or that it is out of date. */
  protected abstract describe(result: R): void;

  /** A link to `file` that downloads it as `downloadName`, labelled `Download <label>`; its URL is revoked with the result. */
  protected link(file: File, downloadName: string, role: 'primary' | 'extra', label: string): HTMLAnchorElement {
    const url = URL.createObjectURL(file); // a disk-backed File: the link holds no copy
    this.urls.push(url);
    const link = el('a', { href: url, download: downloadName, title: label });
    link.dataset.role = role;
    link.dataset.label = `Download ${label}`;
    link.dataset.currentTestid = role === 'primary' ? this.testid : `${this.testid}-extra`;
    this.label(link);
    return link;
  }
}
