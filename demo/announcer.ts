/**
 * Screen-reader announcements: errors at once (role=alert), milestones politely (role=status). Each
 * is one line of at most MAX_MESSAGE_CHARS (a 4 KB tensor name is not read out whole), controls escaped.
 */
import { oneLine, printable } from '../src/shown-text.js';

export class Announcer {
  constructor(private readonly alert: HTMLElement, private readonly status: HTMLElement) {}

  error(message: string): void {
    // Cleared first, so the same message twice is announced twice.
    this.alert.textContent = '';
    setTimeout(() => { this.alert.textContent = oneLine(printable(message)); }, 50);
  }

  /**
   * Empties the alert once what it said no longer holds (the plan's errors are gone): a screen
   * reader going through the page meets the region's text, and read the old error as current.
   * An error on its way (given under 50 ms ago) is newer, and still arrives.
   */
  clearError(): void {
    this.alert.textContent = '';
  }

  private pendingSay: ReturnType<typeof setTimeout> | undefined;

  say(message: string): void {
    this.status.textContent = '';
    clearTimeout(this.pendingSay);
    this.pendingSay = setTimeout(() => { this.status.textContent = oneLine(printable(message)); }, 50);
  }

  /**
   * Empties the status once the inputs it spoke of have changed: "Merged 2 GB in 8 s" stayed in the
   * region after another base was picked, where a screen reader going through the page met it as
   * news of the new inputs. A message on its way is dropped with it; the new plan says its own.
   */
  clearStatus(): void {
    clearTimeout(this.pendingSay);
    this.status.textContent = '';
  }
}
