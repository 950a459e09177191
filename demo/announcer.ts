/** Screen-reader announcements: errors at once (role=alert), milestones politely (role=status). */
export class Announcer {
  constructor(private readonly alert: HTMLElement, private readonly status: HTMLElement) {}

  error(message: string): void {
    // Cleared first, so the same message twice is announced twice.
    this.alert.textContent = '';
    setTimeout(() => { this.alert.textContent = message; }, 50);
  }

  say(message: string): void {
    this.status.textContent = '';
    setTimeout(() => { this.status.textContent = message; }, 50);
  }
}
