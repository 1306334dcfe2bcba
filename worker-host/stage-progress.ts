/**
 * What one stage worker's loops have done lately, for the host's /health and
 * its log: when they last made progress (a read settled, a batch committed)
 * and the failure episode they are in, if any. An episode is logged once when
 * it starts and once when it ends, never per retry.
 */
export interface StageProgressSnapshot {
  stage: string;
  /** Milliseconds since a read settled or a batch was committed. */
  msSinceProgress: number;
  /** Milliseconds the current failure episode has lasted (absent when none). */
  failingForMs?: number;
  /** What failed last in the current episode. */
  lastError?: string;
}

export class StageProgress {
  private lastProgressAt = Date.now();
  private failingSince: number | undefined;
  private lastError: string | undefined;

  constructor(
    private readonly stage: string,
    private readonly log: (line: string) => void,
  ) {}

  /** A read settled (with or without entries) or a batch was committed. */
  advanced(): void {
    this.lastProgressAt = Date.now();
    if (this.failingSince === undefined) return;
    this.log(`[${this.stage}] working again after ${((this.lastProgressAt - this.failingSince) / 1000).toFixed(1)} s`);
    this.failingSince = undefined;
    this.lastError = undefined;
  }

  /** Something the loops retry failed; the first failure of an episode is logged. */
  failed(what: string, err: unknown): void {
    const message = err instanceof Error ? err.message : String(err);
    this.lastError = `${what}: ${message}`;
    if (this.failingSince !== undefined) return;
    this.failingSince = Date.now();
    this.log(`[${this.stage}] ${what} failed (${message}); retrying until it works`);
  }

  snapshot(): StageProgressSnapshot {
    const now = Date.now();
    return {
      stage: this.stage,
      msSinceProgress: now - this.lastProgressAt,
      ...(this.failingSince !== undefined ? { failingForMs: now - this.failingSince, lastError: this.lastError } : {}),
    };
  }
}
