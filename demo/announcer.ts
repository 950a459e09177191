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

  say(message: string): void {
    this.status.textContent = '';
    setTimeout(() => { this.status.textContent = oneLine(printable(message)); }, 50);
  }
}
