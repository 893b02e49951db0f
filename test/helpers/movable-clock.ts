// The boxes' clock in market tests: the wall clock moved by an offset, so
// that a test starts where it wants in a market interval and jumps to the
// next boundary at once instead of waiting out 15 minutes.
export class MovableClock {
  private offsetMs: number;

  /** A clock that reads `startMs` now, and runs on from there. */
  constructor(startMs: number) {
    this.offsetMs = startMs - Date.now();
  }

  /** What the clock reads (pass it as a box's `now`). */
  readonly now = (): number => Date.now() + this.offsetMs;

  /** Move the clock so that it reads `ms` now. */
  set(ms: number): void {
    this.offsetMs += ms - this.now();
  }
}
