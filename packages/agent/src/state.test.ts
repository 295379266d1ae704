import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { AgentConfig } from "@dso/core";
import type { Provider } from "./providers/provider.js";
import { configHash, SecretSet } from "./secret-set.js";
import { loadState, saveState, STATE_FILE, type AgentState } from "./state.js";
import { capturingLogger, tempDir } from "./testing/helpers.js";
import { contentHash } from "./writer.js";

const state = (over: Partial<AgentState> = {}): AgentState => ({
  version: 1,
  writtenAt: 1,
  configHash: "abc",
  providers: {},
  secrets: {},
  files: {},
  ...over,
});

describe("state hand-off", () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  beforeEach(async () => {
    ({ dir, cleanup } = await tempDir());
  });
  afterEach(async () => {
    await cleanup();
  });

  it("round-trips", async () => {
    await saveState(join(dir, "s"), state());
    expect(await loadState(join(dir, "s"), "abc")).toEqual({ ok: true, state: state() });
  });

  it.each([
    { name: "missing", text: undefined, reason: "no state was handed over" },
    { name: "not JSON", text: "{", reason: "not valid JSON" },
    {
      name: "another version",
      text: JSON.stringify(state({ version: 2 as 1 })),
      reason: "unknown version",
    },
    {
      name: "another configuration",
      text: JSON.stringify(state({ configHash: "zzz" })),
      reason: "different configuration",
    },
    {
      name: "missing fields",
      text: JSON.stringify({ version: 1, configHash: "abc" }),
      reason: "missing fields",
    },
  ])("explains why a $name state is unusable", async ({ text, reason }) => {
    await mkdir(join(dir, "s"));
    if (text !== undefined) await writeFile(join(dir, "s", STATE_FILE), text);
    const got = await loadState(join(dir, "s"), "abc");
    expect(got.ok).toBe(false);
    if (!got.ok) expect(got.reason).toContain(reason);
  });
});

/** A provider that only answers dedupeKey and authGeneration; the SecretSet logic under test does not read. */
const stubProvider = {
  name: "vault",
  dedupeKey: (ref: { path?: string }) => `vault:${ref.path ?? ""}`,
  authGeneration: () => 1,
} as unknown as Provider;

const config: AgentConfig = {
  apiVersion: "dso.io/v1",
  kind: "AgentConfig",
  mountPath: "/x",
  refreshSeconds: 60,
  fileMode: 0o440,
  secrets: [
    { file: "a", ref: { provider: "vault", path: "secret/data/a", key: "x" } },
    { file: "b", ref: { provider: "vault", path: "secret/data/a", key: "y" } },
    { file: "db", ref: { provider: "vault", path: "database/creds/app" } },
  ],
};

describe("SecretSet", () => {
  it("groups files that share a reference into one unit", () => {
    const set = new SecretSet(config, new Map([["vault", stubProvider]]), capturingLogger().logger);
    expect([...set.units.values()].map((u) => [u.key, u.files.map((f) => f.file)])).toEqual([
      ["vault:secret/data/a", ["a", "b"]],
      ["vault:database/creds/app", ["db"]],
    ]);
  });

  it("restores from state and computes a versions hash that ignores per-pod leased credentials", () => {
    const now = Date.now();
    const mk = (dbContent: string) => {
      const set = new SecretSet(
        config,
        new Map([["vault", stubProvider]]),
        capturingLogger().logger,
      );
      const written = { a: "1", b: "2", db: dbContent };
      const problem = set.restore(
        state({
          configHash: configHash(config),
          secrets: {
            "vault:secret/data/a": { fetchedAt: now, version: "3" },
            "vault:database/creds/app": {
              fetchedAt: now,
              lease: {
                id: "l",
                durationSeconds: 60,
                initialDurationSeconds: 60,
                renewable: true,
                renewedAt: now,
              },
            },
          },
          files: { a: contentHash("1"), b: contentHash("2"), db: contentHash(dbContent) },
        }),
        written,
      );
      return { set, problem };
    };
    const one = mk('{"username":"v-1"}');
    const two = mk('{"username":"v-2"}');
    expect(one.problem).toBeUndefined();
    expect(one.set.versionsHash()).toBe(two.set.versionsHash());
    expect(one.set.unhealthyReason()).toBeUndefined();
    const tampered = new SecretSet(
      config,
      new Map([["vault", stubProvider]]),
      capturingLogger().logger,
    );
    expect(
      tampered.restore(
        state({
          secrets: {
            "vault:secret/data/a": { fetchedAt: now },
            "vault:database/creds/app": { fetchedAt: now },
          },
          files: {},
        }),
        { a: "1", b: "2", db: "x" },
      ),
    ).toContain("does not match");
  });
});
