// The box's retention of raw readings (DESIGN.md: Storage; ledger/store.ts).
//
// A box keeps its meters' raw readings for a window (config
// `ledger.keepReadingsDays`) and everything else for ever. Every
// `checkpointEveryMs` of chain time it copies its state (a checkpoint); once a
// checkpoint is older than the window, the readings of every block up to it
// are given up, a batch of rows at a time within a small time budget per
// housekeeping call, so the box never misses its one-second block.
//
// The plan (what to do now) is pure: retentionPlan. The shell (LedgerPruner)
// does it on the store. Checkpoints are per box: boxes need not agree on them
// (the chain's state roots are what they agree on).
import type { Checkpoint, LedgerStore } from "../ledger/store.js";
import { MS_PER_DAY, MS_PER_HOUR } from "../sim/site.js";
/** The shortest window: recent readings answer submitters, the API's live charts and the open period. */
export const KEEP_READINGS_MS_MIN = MS_PER_HOUR;

export interface RetentionOptions {
  /** Raw readings are kept at least this long (chain time). */
  readonly keepReadingsMs: number;
  /** A checkpoint every this much chain time (default: a quarter of the window, 1 minute to 1 day). */
  readonly checkpointEveryMs?: number;
  /** Rows deleted per SQLite transaction (default 2,000). */
  readonly batchRows?: number;
  /** Real ms of deleting per housekeeping call at most (default 20). */
  readonly budgetMs?: number;
}

/** The retention of `keepReadingsDays` (config and --keep-readings-days), or the problem with it. */
export function retentionOfDays(days: number): RetentionOptions | string {
  const ms = Math.round(days * MS_PER_DAY);
  if (!Number.isFinite(days) || ms < KEEP_READINGS_MS_MIN || days > 36_500) return `${days} is not a number of days from 1/24 (an hour) to 36500`;
  return { keepReadingsMs: ms };
}

/** How often to checkpoint for a window: often enough that pruning lags the window by a quarter at most. */
export function checkpointEveryFor(keepReadingsMs: number): number {
  return Math.min(MS_PER_DAY, Math.max(60_000, Math.floor(keepReadingsMs / 4)));
}

export interface RetentionPlan {
  /** Copy the state at the head now. */
  readonly checkpoint: boolean;
  /** Give up the readings of blocks up to this checkpoint's height (null: nothing new to give up). */
  readonly pruneTo: number | null;
}

/**
 * What retention asks for, given the head, the checkpoints kept (oldest
 * first) and how far readings are pruned: the newest checkpoint whose time is
 * a whole window behind the head becomes the new pruning point.
 */
export function retentionPlan(head: { readonly height: number; readonly timeMs: number }, checkpoints: readonly Checkpoint[], prunedTo: number, keepReadingsMs: number, checkpointEveryMs: number): RetentionPlan {
  const last = checkpoints.at(-1);
  const checkpoint = head.height > 0 && (last === undefined || (last.height < head.height && head.timeMs - last.timeMs >= checkpointEveryMs));
  let pruneTo: number | null = null;
  for (const c of checkpoints) if (c.timeMs <= head.timeMs - keepReadingsMs && c.height > prunedTo) pruneTo = c.height;
  return { checkpoint, pruneTo };
}

export interface RetentionStatus {
  readonly keepReadingsMs: number;
  readonly checkpointEveryMs: number;
  /** Blocks 1..readingsPrunedTo hold no readings any more. */
  readonly readingsPrunedTo: number;
  /** The checkpoints kept: their heights, oldest first. */
  readonly checkpoints: readonly number[];
  /** Reading rows deleted since this box started. */
  readonly rowsDeleted: number;
  /** Rows of pruned blocks are still being deleted. */
  readonly deleting: boolean;
}

export class LedgerPruner {
  readonly checkpointEveryMs: number;
  private readonly batchRows: number;
  private readonly budgetMs: number;
  private rowsDeleted = 0;
  private deleting = true; // until a step says done (a restart may find a half-done pruning)

  constructor(
    private readonly store: LedgerStore,
    readonly options: RetentionOptions,
    private readonly log: (msg: string, fields: Record<string, unknown>) => void = () => {},
    private readonly realNowMs: () => number = () => performance.now(),
  ) {
    if (!(Number.isSafeInteger(options.keepReadingsMs) && options.keepReadingsMs >= 1)) throw new RangeError("keepReadingsMs is a whole number of ms");
    this.checkpointEveryMs = options.checkpointEveryMs ?? checkpointEveryFor(options.keepReadingsMs);
    this.batchRows = options.batchRows ?? 2_000;
    this.budgetMs = options.budgetMs ?? 20;
  }

  /** Checkpoint, start a pruning, and delete rows for at most the budget. Called from the box's housekeeping. */
  step(): void {
    const head = this.store.head();
    const prunedTo = this.store.readingsPrunedTo();
    const plan = retentionPlan(head, this.store.checkpoints(), prunedTo, this.options.keepReadingsMs, this.checkpointEveryMs);
    if (plan.checkpoint) {
      const c = this.store.checkpoint();
      this.log("checkpoint of the state", { height: c.height, records: c.records });
    }
    if (plan.pruneTo !== null) {
      this.store.pruneReadingsTo(plan.pruneTo);
      this.deleting = true;
      this.log("giving up raw readings", { throughHeight: plan.pruneTo, keepReadingsMs: this.options.keepReadingsMs });
    }
    if (!this.deleting) return;
    const start = this.realNowMs();
    do {
      const r = this.store.pruneStep(this.batchRows);
      this.rowsDeleted += r.deleted;
      if (r.done) {
        this.deleting = false;
        return;
      }
    } while (this.realNowMs() - start < this.budgetMs);
  }

  status(): RetentionStatus {
    return {
      keepReadingsMs: this.options.keepReadingsMs,
      checkpointEveryMs: this.checkpointEveryMs,
      readingsPrunedTo: this.store.readingsPrunedTo(),
      checkpoints: this.store.checkpoints().map((c) => c.height),
      rowsDeleted: this.rowsDeleted,
      deleting: this.deleting,
    };
  }
}
