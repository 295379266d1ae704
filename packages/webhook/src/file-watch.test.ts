import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { watchFiles, type FileWatch } from "./file-watch.js";
import { eventually } from "./test-helpers.js";

describe("watchFiles", () => {
  let dir: string;
  let watch: FileWatch | undefined;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "dso-watch-"));
  });
  afterEach(() => {
    watch?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("reports a change in the watched directory, once for a burst of writes", async () => {
    const file = join(dir, "tls.crt");
    writeFileSync(file, "one");
    let calls = 0;
    // A long poll interval: only the directory events can be the source here.
    watch = watchFiles(
      [file, join(dir, "tls.key")],
      () => {
        calls++;
      },
      {
        pollIntervalMs: 60_000,
        debounceMs: 50,
      },
    );
    writeFileSync(file, "two");
    writeFileSync(join(dir, "tls.key"), "key");
    await eventually(() => calls > 0);
    await new Promise((resolve) => setTimeout(resolve, 150));
    expect(calls).toBe(1);
  });

  it("falls back to polling when the directory cannot be watched", async () => {
    // The directory does not exist yet, so no watch can be set up; only the poll can see it.
    const missing = join(dir, "later");
    const file = join(missing, "policy.yaml");
    let calls = 0;
    watch = watchFiles(
      [file],
      () => {
        calls++;
      },
      { pollIntervalMs: 50, debounceMs: 10 },
    );
    mkdirSync(missing);
    writeFileSync(file, "apiVersion: dso.io/v1\n");
    await eventually(() => calls > 0);
  });

  it("never runs the callback concurrently and reports its failures", async () => {
    const file = join(dir, "f");
    writeFileSync(file, "0");
    let running = 0;
    let maxRunning = 0;
    const errors: unknown[] = [];
    let calls = 0;
    watch = watchFiles(
      [file],
      async () => {
        calls++;
        running++;
        maxRunning = Math.max(maxRunning, running);
        await new Promise((resolve) => setTimeout(resolve, 80));
        running--;
        if (calls === 1) throw new Error("reload failed");
      },
      { pollIntervalMs: 60_000, debounceMs: 5, onError: (e) => errors.push(e) },
    );
    writeFileSync(file, "1");
    await eventually(() => calls === 1);
    writeFileSync(file, "2");
    await eventually(() => calls >= 2);
    await eventually(() => running === 0);
    expect(maxRunning).toBe(1);
    expect(errors).toHaveLength(1);
  });
});
