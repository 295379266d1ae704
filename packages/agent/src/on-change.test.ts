import { spawn } from "node:child_process";
import { mkdir, writeFile } from "node:fs/promises";
import { createServer } from "node:https";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { AgentConfig } from "@dso/core";
import { listProcesses, pickMainProcess, ROLLOUT_ANNOTATION, runOnChange } from "./on-change.js";
import { capturingLogger, tempDir } from "./testing/helpers.js";
import { makeCert } from "./testing/tls.js";

const config: AgentConfig = {
  apiVersion: "dso.io/v1",
  kind: "AgentConfig",
  mountPath: "/x",
  refreshSeconds: 60,
  fileMode: 0o440,
  secrets: [{ file: "a", ref: { provider: "vault", path: "kv/a" } }],
  pod: { namespace: "team", name: "web-7d9f-abcde", serviceAccount: "web" },
};

const proc = (
  pid: number,
  ppid: number,
  name: string,
  cgroup = `0::/kubepods/pod1/cri-containerd-${name}.scope`,
) => ({
  pid,
  ppid,
  name,
  cgroup,
});

describe("pickMainProcess", () => {
  it.each([
    {
      name: "the only other top-level process",
      procs: [proc(1, 0, "pause"), proc(7, 0, "node"), proc(12, 0, "nginx"), proc(13, 12, "nginx")],
      self: 7,
      id: undefined,
      want: 12,
    },
    {
      name: "nothing when two containers could match and no container id is known",
      procs: [proc(1, 0, "pause"), proc(7, 0, "node"), proc(12, 0, "nginx"), proc(20, 0, "envoy")],
      self: 7,
      id: undefined,
      want: undefined,
    },
    {
      name: "the process whose cgroup carries the container id",
      procs: [proc(1, 0, "pause"), proc(7, 0, "node"), proc(12, 0, "nginx"), proc(20, 0, "envoy")],
      self: 7,
      id: "envoy",
      want: 20,
    },
    {
      name: "not the agent's own children or the pause process",
      procs: [proc(1, 0, "pause"), proc(7, 0, "node"), proc(8, 7, "sh")],
      self: 7,
      id: undefined,
      want: undefined,
    },
  ])("picks $name", ({ procs, self, id, want }) => {
    expect(pickMainProcess(procs, self, id)?.pid).toBe(want);
  });
});

describe("runOnChange", () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  beforeEach(async () => {
    ({ dir, cleanup } = await tempDir());
  });
  afterEach(async () => {
    await cleanup();
  });

  it("signals the target container's main process found through /proc", async () => {
    const child = spawn(process.execPath, [
      "-e",
      "process.on('SIGHUP', () => process.exit(42)); setTimeout(() => {}, 10000);",
    ]);
    await new Promise((r) => setTimeout(r, 200));
    const procDir = join(dir, "proc");
    const entries: [number, number, string][] = [
      [1, 0, "pause"],
      [process.pid, 0, "node"],
      [child.pid ?? 0, 0, "app"],
    ];
    for (const [pid, ppid, name] of entries) {
      await mkdir(join(procDir, String(pid)), { recursive: true });
      await writeFile(
        join(procDir, String(pid), "status"),
        `Name:\t${name}\nState:\tS\nPPid:\t${ppid}\n`,
      );
      await writeFile(join(procDir, String(pid), "cgroup"), `0::/kubepods/c-${name}\n`);
    }
    expect((await listProcesses(procDir)).map((p) => p.pid).sort((a, b) => a - b)).toEqual(
      entries.map((e) => e[0]).sort((a, b) => a - b),
    );
    const exited = new Promise<number | null>((r) => child.once("exit", r));
    const { logger, lines } = capturingLogger();
    await runOnChange(
      { kind: "signal", signal: "SIGHUP", container: "app" },
      { config, logger, versionsHash: "h", files: ["a"], procDir, env: {} },
    );
    expect(await exited).toBe(42);
    expect(lines.join("")).toContain("signalled the application");
  });

  it("patches the owning Deployment's pod template through pod → ReplicaSet ownerReferences", async () => {
    const tls = makeCert({ commonName: "kubernetes", altNames: ["127.0.0.1"] });
    const seen: {
      method: string;
      path: string;
      auth: string | undefined;
      type: string | undefined;
      body: string;
    }[] = [];
    const api = createServer({ key: tls.keyPem, cert: tls.certPem }, (req, res) => {
      let body = "";
      req.on("data", (c: Buffer) => (body += c.toString()));
      req.on("end", () => {
        seen.push({
          method: req.method ?? "",
          path: req.url ?? "",
          auth: req.headers.authorization,
          type: req.headers["content-type"],
          body,
        });
        const send = (o: unknown) =>
          res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(o));
        if (req.url === "/api/v1/namespaces/team/pods/web-7d9f-abcde") {
          send({
            metadata: {
              ownerReferences: [{ kind: "ReplicaSet", name: "web-7d9f", controller: true }],
            },
          });
        } else if (req.url === "/apis/apps/v1/namespaces/team/replicasets/web-7d9f") {
          send({
            metadata: { ownerReferences: [{ kind: "Deployment", name: "web", controller: true }] },
          });
        } else if (
          req.url === "/apis/apps/v1/namespaces/team/deployments/web" &&
          req.method === "PATCH"
        ) {
          send({});
        } else {
          res.writeHead(404).end("{}");
        }
      });
    });
    await new Promise<void>((r) => api.listen(0, "127.0.0.1", r));
    const port = (api.address() as AddressInfo).port;
    const kubeApiDir = join(dir, "kube-api");
    await mkdir(kubeApiDir);
    await writeFile(join(kubeApiDir, "token"), "kube-api-token-abc123\n");
    await writeFile(join(kubeApiDir, "ca.crt"), tls.certPem);
    const { logger, lines } = capturingLogger();
    try {
      await runOnChange(
        { kind: "rollout" },
        {
          config,
          logger,
          versionsHash: "0123abcd",
          files: ["a"],
          kubeApiDir,
          env: {
            KUBERNETES_SERVICE_HOST: "127.0.0.1",
            KUBERNETES_SERVICE_PORT: String(port),
            DSO_POD_NAME: "web-7d9f-abcde",
          },
        },
      );
    } finally {
      api.closeAllConnections();
      await new Promise<void>((r) =>
        api.close(() => {
          r();
        }),
      );
    }
    const patch = seen.find((s) => s.method === "PATCH");
    expect(patch?.path).toBe("/apis/apps/v1/namespaces/team/deployments/web");
    expect(patch?.type).toBe("application/merge-patch+json");
    expect(patch?.auth).toBe("Bearer kube-api-token-abc123");
    expect(JSON.parse(patch?.body ?? "{}")).toEqual({
      spec: { template: { metadata: { annotations: { [ROLLOUT_ANNOTATION]: "0123abcd" } } } },
    });
    expect(lines.join("")).not.toContain("kube-api-token-abc123");
  });

  it("logs, and does not throw, when the action fails", async () => {
    const { logger, lines } = capturingLogger();
    await runOnChange(
      { kind: "rollout" },
      { config, logger, versionsHash: "h", files: [], env: {} },
    );
    expect(lines.join("")).toContain("on-change action failed");
  });
});
