import type { Lease } from "./providers/provider.js";

export const BACKOFF_MIN_MS = 1_000;
/** setTimeout fires at once for delays above 2^31-1 ms (~24.8 days); longer waits are re-evaluated then. */
export const MAX_TIMER_MS = 2_147_483_647;
export const BACKOFF_MAX_MS = 5 * 60_000;

/** Delay before re-reading a static secret: the interval ±10%, so 500 pods started together spread out. */
export function staticRefreshDelayMs(refreshSeconds: number, random: () => number): number {
  return Math.round(refreshSeconds * 1000 * (0.9 + 0.2 * random()));
}

/** Epoch ms when a lease runs out. */
export function leaseExpiresAt(lease: Lease): number {
  return lease.renewedAt + lease.durationSeconds * 1000;
}

/** Delay until two thirds of a lease has passed, when it is renewed or replaced. */
export function leaseRefreshDelayMs(lease: Lease, now: number): number {
  return Math.max(0, lease.renewedAt + (lease.durationSeconds * 1000 * 2) / 3 - now);
}

/**
 * Whether to renew a lease or fetch new credentials at its two-thirds point. A lease that cannot be
 * renewed, or whose last renewal came back much shorter than issued (Vault caps renewals at the max
 * TTL), is replaced by new credentials before it runs out.
 */
export function leaseAction(lease: Lease): "renew" | "refetch" {
  return lease.renewable && lease.durationSeconds * 2 >= lease.initialDurationSeconds
    ? "renew"
    : "refetch";
}

/**
 * Whether a renewal came back more than 10% shorter than the lease was issued for: Vault capped
 * it at the max TTL (a small shortfall is clock rounding, not a cap).
 */
export function renewalWasCapped(lease: Lease | undefined): boolean {
  return lease !== undefined && lease.durationSeconds * 10 < lease.initialDurationSeconds * 9;
}

/**
 * Exponential backoff after `failures` consecutive failures (1 → 1s, 2 → 2s, …), capped at 5 minutes.
 * With `random`, half of the delay is random ("equal jitter"), so pods throttled together (429)
 * or cut off by the same outage do not come back in lockstep.
 */
export function backoffDelayMs(failures: number, random?: () => number): number {
  const exp = Math.max(0, failures - 1);
  const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** Math.min(exp, 30));
  return random === undefined ? delay : Math.round(delay / 2 + (random() * delay) / 2);
}

/**
 * Runs keyed tasks on timers. Each run returns the delay until its next run (or undefined to stop),
 * so the policy lives in the caller and the timing is testable with fake timers. A task never
 * overlaps itself.
 */
export class Scheduler {
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private readonly running = new Set<string>();
  private stopped = false;

  constructor(
    private readonly run: (key: string) => Promise<number | undefined>,
    private readonly onError: (key: string, err: unknown) => void,
  ) {}

  schedule(key: string, delayMs: number): void {
    if (this.stopped) return;
    const existing = this.timers.get(key);
    if (existing !== undefined) clearTimeout(existing);
    const timer = setTimeout(
      () => {
        this.timers.delete(key);
        void this.fire(key);
      },
      Math.min(MAX_TIMER_MS, Math.max(0, delayMs)),
    );
    this.timers.set(key, timer);
  }

  /** Pending keys with their timers; for health and tests. */
  pending(): string[] {
    return [...this.timers.keys()];
  }

  private async fire(key: string): Promise<void> {
    if (this.stopped || this.running.has(key)) return;
    this.running.add(key);
    let next: number | undefined;
    try {
      next = await this.run(key);
    } catch (err) {
      this.onError(key, err);
    } finally {
      this.running.delete(key);
    }
    if (next !== undefined) this.schedule(key, next);
  }

  stop(): void {
    this.stopped = true;
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
  }

  /** Resolves once no task is running (after stop, so shutdown does not race a fetch). */
  async idle(): Promise<void> {
    while (this.running.size > 0) await new Promise((r) => setTimeout(r, 10));
  }
}
