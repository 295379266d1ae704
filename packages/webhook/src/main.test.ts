import { execFileSync, spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { localhostPair } from "./test-helpers.js";

const packageDir = fileURLToPath(new URL("..", import.meta.url));
const bin = fileURLToPath(new URL("../bin/dso-webhook.js", import.meta.url));
let dir: string;

beforeAll(async () => {
  // The tests run the real executable; make sure it matches the sources. `-p` builds this
  // package only (not @dso/core), so parallel test files never write the same outputs.
  const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");
  execFileSync(process.execPath, [tsc, "-p", join(packageDir, "tsconfig.json")], {
    stdio: "inherit",
  });
  dir = mkdtempSync(join(tmpdir(), "dso-webhook-main-"));
  const pair = await localhostPair();
  writeFileSync(join(dir, "tls.crt"), pair.cert);
  writeFileSync(join(dir, "tls.key"), pair.key);
}, 60_000);

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe("dso-webhook executable", () => {
  it("exits 2 listing every configuration problem", () => {
    const run = spawnSync(process.execPath, [bin, "--port", "x"], {
      encoding: "utf8",
      env: { PATH: process.env.PATH ?? "", DSO_CERT_MODE: "self-signed" },
    });
    expect(run.status).toBe(2);
    expect(run.stderr).toContain('--port (DSO_WEBHOOK_PORT): "x" is not a whole number');
    expect(run.stderr).toContain("--self-signed-secret (DSO_SELF_SIGNED_SECRET) is required");
    expect(run.stderr).toContain("--namespace (DSO_NAMESPACE) is required");
  });

  it("exits 1 on a bad policy, logging every problem", () => {
    const policy = join(dir, "bad-policy.yaml");
    writeFileSync(
      policy,
      "apiVersion: dso.io/v1\nkind: InjectionPolicy\nagent:\n  runAsUser: 0\n  sidecarStyle: x\n",
    );
    const run = spawnSync(
      process.execPath,
      [bin, "--port=0", `--tls-cert=${join(dir, "tls.crt")}`, `--tls-key=${join(dir, "tls.key")}`],
      { encoding: "utf8", env: { PATH: process.env.PATH ?? "", DSO_POLICY_FILE: policy } },
    );
    expect(run.status).toBe(1);
    const fatal = JSON.parse(run.stdout.trim().split("\n").at(-1) ?? "{}") as {
      level: string;
      msg: string;
      problems: { field: string }[];
    };
    expect(fatal.level).toBe("fatal");
    expect(fatal.problems.map((p) => p.field)).toEqual(
      ["agent.sidecarStyle", "agent.runAsUser"].filter((f) => fatal.msg.includes(f)),
    );
    expect(fatal.msg).toContain("agent.runAsUser");
    expect(fatal.msg).toContain("agent.sidecarStyle");
  });

  it("serves, then exits 0 on SIGTERM", async () => {
    const child = spawn(
      process.execPath,
      [
        bin,
        "--host=127.0.0.1",
        "--port=0",
        `--tls-cert=${join(dir, "tls.crt")}`,
        `--tls-key=${join(dir, "tls.key")}`,
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    let output = "";
    child.stdout.setEncoding("utf8");
    child.stdout.on("data", (chunk: string) => {
      output += chunk;
      if (chunk.includes("dso-webhook listening")) child.kill("SIGTERM");
    });
    const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
    expect(code).toBe(0);
    const messages = output
      .trim()
      .split("\n")
      .map((l) => (JSON.parse(l) as { msg: string }).msg);
    expect(messages).toEqual(
      expect.arrayContaining(["dso-webhook listening", "signal received", "stopped"]),
    );
  });
});
