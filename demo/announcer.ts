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

  say(message: string): void {
    this.status.textContent = '';
    setTimeout(() => { this.status.textContent = oneLine(printable(message)); }, 50);
  }
}
