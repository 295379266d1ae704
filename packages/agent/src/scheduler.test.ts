import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { Lease } from "./providers/provider.js";
import {
  BACKOFF_MAX_MS,
  backoffDelayMs,
  leaseAction,
  leaseRefreshDelayMs,
  Scheduler,
  staticRefreshDelayMs,
} from "./scheduler.js";

const lease = (over: Partial<Lease> = {}): Lease => ({
  id: "database/creds/app/x",
  durationSeconds: 900,
  initialDurationSeconds: 900,
  renewable: true,
  renewedAt: 1_000_000,
  ...over,
});

describe("refresh policy", () => {
  it.each([0, 0.25, 0.5, 0.999999])("keeps static refreshes within ±10%% (random %f)", (r) => {
    const d = staticRefreshDelayMs(300, () => r);
    expect(d).toBeGreaterThanOrEqual(270_000);
    expect(d).toBeLessThanOrEqual(330_000);
  });

  it("spreads 500 pods over the jitter window", () => {
    const delays = Array.from({ length: 500 }, () => staticRefreshDelayMs(300, Math.random));
    expect(Math.min(...delays)).toBeGreaterThanOrEqual(270_000);
    expect(Math.max(...delays)).toBeLessThanOrEqual(330_000);
    expect(new Set(delays).size).toBeGreaterThan(400);
  });

  it("acts on a lease at two thirds of its duration", () => {
    expect(leaseRefreshDelayMs(lease(), 1_000_000)).toBe(600_000);
    expect(leaseRefreshDelayMs(lease(), 1_300_000)).toBe(300_000);
    expect(leaseRefreshDelayMs(lease(), 2_000_000)).toBe(0);
  });

  it.each([
    { l: lease(), action: "renew" },
    { l: lease({ renewable: false }), action: "refetch" },
    { l: lease({ durationSeconds: 300 }), action: "refetch" },
    { l: lease({ durationSeconds: 450 }), action: "renew" },
  ])(
    "decides $action for a lease of $l.durationSeconds/$l.initialDurationSeconds s (renewable $l.renewable)",
    ({ l, action }) => {
      expect(leaseAction(l)).toBe(action);
    },
  );

  it("backs off exponentially from 1s to a 5 minute cap", () => {
    expect([1, 2, 3, 4, 5].map((n) => backoffDelayMs(n))).toEqual([1000, 2000, 4000, 8000, 16000]);
    expect(backoffDelayMs(9)).toBe(256_000);
    expect(backoffDelayMs(10)).toBe(BACKOFF_MAX_MS);
    expect(backoffDelayMs(1000)).toBe(BACKOFF_MAX_MS);
  });

  it.each([
    { failures: 1, random: 0, ms: 500 },
    { failures: 1, random: 1, ms: 1000 },
    { failures: 3, random: 0.5, ms: 3000 },
    { failures: 1000, random: 0, ms: BACKOFF_MAX_MS / 2 },
    { failures: 1000, random: 1, ms: BACKOFF_MAX_MS },
  ])("jittered backoff after $failures failures with random $random is $ms ms", (c) => {
    expect(backoffDelayMs(c.failures, () => c.random)).toBe(c.ms);
  });
});

describe("Scheduler with fake timers", () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("runs each task at the delay it returned, and stops", async () => {
    const runs: [string, number][] = [];
    const s = new Scheduler(
      (key) => {
        runs.push([key, Date.now()]);
        return Promise.resolve(key === "a" ? 1000 : undefined);
      },
      () => undefined,
    );
    const t0 = Date.now();
    s.schedule("a", 500);
    s.schedule("b", 200);
    await vi.advanceTimersByTimeAsync(2600);
    expect(runs.map(([k, t]) => [k, t - t0])).toEqual([
      ["b", 200],
      ["a", 500],
      ["a", 1500],
      ["a", 2500],
    ]);
    s.stop();
    await vi.advanceTimersByTimeAsync(5000);
    expect(runs).toHaveLength(4);
  });

  it("does not fire early for delays beyond the timer limit", async () => {
    let runs = 0;
    const s = new Scheduler(
      () => {
        runs += 1;
        return Promise.resolve(undefined);
      },
      () => undefined,
    );
    s.schedule("long", 40 * 24 * 3600 * 1000);
    await vi.advanceTimersByTimeAsync(24 * 3600 * 1000);
    expect(runs).toBe(0);
    s.stop();
  });

  it("backs a failing task off exponentially up to the cap, and reports errors", async () => {
    const times: number[] = [];
    let failures = 0;
    const errors: string[] = [];
    const s = new Scheduler(
      () => {
        times.push(Date.now());
        failures += 1;
        return Promise.resolve(backoffDelayMs(failures));
      },
      (_k, e) => errors.push(String(e)),
    );
    const t0 = Date.now();
    s.schedule("x", 0);
    await vi.advanceTimersByTimeAsync(30 * 60_000);
    const gaps = times.slice(1).map((t, i) => t - (times[i] ?? t0));
    expect(gaps.slice(0, 6)).toEqual([1000, 2000, 4000, 8000, 16000, 32000]);
    expect(Math.max(...gaps)).toBe(BACKOFF_MAX_MS);
    s.stop();
    const s2 = new Scheduler(
      () => Promise.reject(new Error("boom")),
      (k, e) => errors.push(`${k}:${(e as Error).message}`),
    );
    s2.schedule("y", 10);
    await vi.advanceTimersByTimeAsync(20);
    expect(errors).toEqual(["y:boom"]);
  });
});
