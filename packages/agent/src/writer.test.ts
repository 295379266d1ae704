import { lstat, readdir, readFile, readlink, stat } from "node:fs/promises";
import { join } from "node:path";
import { Worker } from "node:worker_threads";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { capturingLogger, tempDir } from "./testing/helpers.js";
import { AtomicWriter } from "./writer.js";

describe("AtomicWriter", () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  beforeEach(async () => {
    ({ dir, cleanup } = await tempDir());
  });
  afterEach(async () => {
    await cleanup();
  });

  it("lays files out as symlinks into a swapped ..data directory with the configured modes", async () => {
    const w = new AtomicWriter(dir, 0o440, capturingLogger().logger);
    const out = await w.write({ "db.json": '{"a":1}\n', password: "s3cret-value" });
    expect(out.changed).toBe(true);
    expect(await readlink(join(dir, "password"))).toBe("..data/password");
    const target = await readlink(join(dir, "..data"));
    expect(target).toMatch(/^\.\.\d{4}_/);
    expect((await stat(join(dir, target))).mode & 0o777).toBe(0o750);
    expect((await stat(join(dir, "password"))).mode & 0o777).toBe(0o440);
    expect(await readFile(join(dir, "password"), "utf8")).toBe("s3cret-value");
    expect((await lstat(join(dir, "db.json"))).isSymbolicLink()).toBe(true);
  });

  it("does not swap when no content changed, and removes files that left the set", async () => {
    const w = new AtomicWriter(dir, 0o400, capturingLogger().logger);
    await w.write({ a: "1", b: "2" });
    const first = await readlink(join(dir, "..data"));
    expect((await w.write({ b: "2", a: "1" })).changed).toBe(false);
    expect(await readlink(join(dir, "..data"))).toBe(first);
    // A new writer (the sidecar after init) learns the current hashes from disk.
    const again = new AtomicWriter(dir, 0o400, capturingLogger().logger);
    expect((await again.write({ a: "1", b: "2" })).changed).toBe(false);
    expect((await again.write({ a: "1" })).changed).toBe(true);
    expect((await readdir(dir)).filter((e) => !e.startsWith(".."))).toEqual(["a"]);
  });

  it("keeps only the current and the previous generation", async () => {
    const w = new AtomicWriter(dir, 0o400, capturingLogger().logger);
    for (let i = 0; i < 5; i++) await w.write({ a: String(i) });
    const gens = (await readdir(dir)).filter((e) => e.startsWith("..") && e !== "..data");
    expect(gens).toHaveLength(2);
  });

  it("never lets a concurrent reader see a partial file or a mix of generations", async () => {
    const w = new AtomicWriter(dir, 0o440, capturingLogger().logger);
    const body = (gen: number, name: string) =>
      `${name}:${gen}:` + "x".repeat(200_000) + `:end:${gen}`;
    await w.write({ a: body(0, "a"), b: body(0, "b") });
    // A reader on another thread, reading synchronously, races the writer for real.
    const worker = new Worker(
      `
      const { readFileSync, readlinkSync } = require("node:fs");
      const { join } = require("node:path");
      const { workerData, parentPort } = require("node:worker_threads");
      const dir = workerData.dir;
      const problems = [];
      let reads = 0;
      const check = (text, name) => {
        const m = /^(\\w):(\\d+):x+:end:(\\d+)$/.exec(text);
        if (!m || m[1] !== name || m[2] !== m[3]) problems.push("partial " + name + " " + text.length);
        return m ? m[2] : undefined;
      };
      const stopAt = Date.now() + 1500;
      while (Date.now() < stopAt) {
        try {
          check(readFileSync(join(dir, "a"), "utf8"), "a");
          const gen = readlinkSync(join(dir, "..data"));
          const ga = check(readFileSync(join(dir, gen, "a"), "utf8"), "a");
          const gb = check(readFileSync(join(dir, gen, "b"), "utf8"), "b");
          if (ga !== gb) problems.push("mixed " + ga + " " + gb);
          reads++;
        } catch (e) {
          // A generation two swaps old may vanish between readlink and open: a retry, not a torn read.
          if (e.code !== "ENOENT") problems.push(String(e));
        }
      }
      parentPort.postMessage({ problems, reads });
      `,
      { eval: true, workerData: { dir } },
    );
    const result = new Promise<{ problems: string[]; reads: number }>((resolve, reject) => {
      worker.once("message", resolve);
      worker.once("error", reject);
    });
    let gen = 1;
    const state = { done: false };
    void result.then(() => (state.done = true));
    while (!state.done) {
      await w.write({ a: body(gen, "a"), b: body(gen, "b") });
      gen++;
    }
    const { problems, reads } = await result;
    expect(problems).toEqual([]);
    expect(reads).toBeGreaterThan(10);
    expect(gen).toBeGreaterThan(10);
  });
});
