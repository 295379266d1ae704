import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { locateHelm } from "./helm.js";

const root = mkdtempSync(join(tmpdir(), "dso-locate-helm-"));
afterAll(() => {
  rmSync(root, { recursive: true, force: true });
});

function fakeHelm(...segments: string[]): string {
  const file = join(root, ...segments);
  mkdirSync(join(file, ".."), { recursive: true });
  writeFileSync(file, "#!/bin/sh\n");
  chmodSync(file, 0o755);
  return file;
}

describe("locateHelm", () => {
  const home = join(root, "home");
  const cache = (...segments: string[]): string[] => ["home", ".cache", "dso-e2e", ...segments];
  const older = fakeHelm(...cache("helm-v3.9.0", "bin", "helm"));
  const newest = fakeHelm(...cache("helm-v3.19.5", "bin", "helm"));
  fakeHelm(...cache("helm-v3.20.0.partial", "bin", "helm"));
  const onPath = fakeHelm("path-bin", "helm");
  const explicit = fakeHelm("explicit", "helm");

  it.each([
    ["DSO_HELM first", { DSO_HELM: explicit, PATH: join(root, "path-bin") }, explicit],
    ["then helm on PATH", { PATH: `/nonexistent:${join(root, "path-bin")}` }, onPath],
    ["then the newest finished build in the cache", { PATH: "/nonexistent" }, newest],
    ["an empty DSO_HELM counts as unset", { DSO_HELM: "", PATH: "" }, newest],
  ])("%s", (_name, env, expected) => {
    expect(locateHelm(env, home)).toBe(expected);
    expect(older).not.toBe(expected);
  });

  it("refuses a DSO_HELM that is not an executable", () => {
    expect(() => locateHelm({ DSO_HELM: join(root, "missing") }, home)).toThrow(
      /DSO_HELM is .*missing, which is not an executable file.*go install helm\.sh\/helm\/v3\/cmd\/helm@/,
    );
  });

  it("fails saying where it looked and how to build helm when there is none", () => {
    const empty = join(root, "empty-home");
    expect(() => locateHelm({ PATH: "/nonexistent" }, empty)).toThrow(
      `helm not found: DSO_HELM is not set, there is no helm on PATH and none under ${empty}/.cache/dso-e2e/*/`,
    );
  });
});
