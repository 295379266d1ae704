// The container images, tested through what they run (no Docker engine here, issue 8): each
// Dockerfile's runtime stage is parsed (harness/image.ts) and its exact ENTRYPOINT is started on
// this run's bundle (the files the image COPYs), with the image's ENV, as its numeric USER, with
// the bundle read-only at the WORKDIR and a read-only root filesystem (harness/image-process.ts).
// The webhook must serve, the agent must render against a real OpenBao. The Dockerfiles' security
// properties are asserted statically.
import { randomBytes } from "node:crypto";
import {
  chownSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { request } from "node:https";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { repoRoot } from "./global-setup.js";
import { renderChart, writePolicyFile } from "./harness/chart.js";
import { imageRuntime } from "./harness/image.js";
import { imageBundleDir, spawnImage, volumeDir } from "./harness/image-process.js";
import { startOpenBao, type OpenBao } from "./harness/openbao.js";
import { makeTempDir } from "./harness/processes.js";
import { startWebhook, type Webhook } from "./harness/webhook.js";

const IMAGES = ["agent", "webhook"] as const;

/** The instructions of a Dockerfile's last stage (continuation lines joined). */
function runtimeStage(name: string): { from: string; lines: string[] } {
  const text = readFileSync(join(repoRoot, `Dockerfile.${name}`), "utf8").replace(/\\\n\s*/g, " ");
  const stages = text.split(/^FROM /m);
  const last = stages[stages.length - 1] ?? "";
  const [fromLine = "", ...rest] = last.split("\n");
  return {
    from: fromLine.trim(),
    lines: rest.map((l) => l.trim()).filter((l) => l !== "" && !l.startsWith("#")),
  };
}

function httpsCall(
  url: string,
  ca: string,
  method: string,
  body?: string,
): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method,
        ca,
        timeout: 5_000,
        headers: body === undefined ? {} : { "content-type": "application/json" },
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => (text += c));
        res.on("end", () => {
          resolve({ status: res.statusCode ?? 0, text });
        });
      },
    );
    req.on("timeout", () => req.destroy(new Error(`${method} ${url}: no answer within 5 s`)));
    req.on("error", reject);
    req.end(body);
  });
}

/** What the kernel says about a running process: its uid/gid, cwd, argv and mounts. */
function processView(pid: number): {
  uids: string;
  gids: string;
  noNewPrivs: string;
  capEff: string;
  cwd: string;
  argv: string[];
  mountOptions(target: string): string[];
} {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const field = (k: string): string =>
    (new RegExp(`^${k}:\\s*(.*)$`, "m").exec(status)?.[1] ?? "").trim();
  const mountinfo = readFileSync(`/proc/${pid}/mountinfo`, "utf8").split("\n");
  return {
    uids: field("Uid"),
    gids: field("Gid"),
    noNewPrivs: field("NoNewPrivs"),
    capEff: field("CapEff"),
    cwd: readlinkSync(`/proc/${pid}/cwd`),
    argv: readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").slice(0, -1),
    mountOptions(target) {
      // The last mount on a target is the visible one.
      const line = mountinfo.filter((l) => l.split(" ")[4] === target).at(-1);
      return (line?.split(" ")[5] ?? "").split(",");
    },
  };
}

describe("Dockerfiles (static)", () => {
  it.each(IMAGES)(
    "Dockerfile.%s: minimal Node 24 base, numeric non-root USER, OCI labels, only the bundle copied in",
    (name) => {
      const stage = runtimeStage(name);
      // distroless Node 24, or a slim Debian Node 24.
      expect(stage.from).toMatch(
        /^(gcr\.io\/distroless\/nodejs24-debian\d+(:[\w.-]+)?|node:24(\.[\d.]+)?-[a-z]+-slim)(@sha256:[0-9a-f]{64})?(\s|$)/,
      );
      const user = stage.lines.filter((l) => l.startsWith("USER ")).at(-1);
      expect(user, "a USER instruction in the runtime stage").toMatch(/^USER \d+(:\d+)?$/);
      const rt = imageRuntime(name);
      expect(rt.uid).toBeGreaterThan(0);
      expect(rt.gid).toBeGreaterThan(0);

      const labels = stage.lines
        .filter((l) => l.startsWith("LABEL "))
        .join(" ")
        .matchAll(/(org\.opencontainers\.image\.[\w.]+)="([^"]*)"/g);
      const found: Record<string, string | undefined> = Object.fromEntries(
        [...labels].map((m) => [m[1] ?? "", m[2]]),
      );
      for (const key of ["title", "description", "version", "licenses", "source"])
        expect(
          found[`org.opencontainers.image.${key}`],
          `LABEL org.opencontainers.image.${key}`,
        ).toMatch(/\S/);

      // Exactly one COPY/ADD: the bundle from the build stage into the WORKDIR, nothing else.
      const copies = stage.lines.filter((l) => /^(COPY|ADD) /.test(l));
      expect(copies).toEqual([`COPY --from=build /src/build/${name}/ ${rt.workdir}/`]);
      expect(stage.lines.some((l) => l.startsWith("RUN "))).toBe(false);
      // The entrypoint is the image's node on the bundle's main.mjs (exec form, no shell).
      expect(rt.entrypoint).toEqual(["/nodejs/bin/node", `${rt.workdir}/main.mjs`]);
    },
  );

  it.each(IMAGES)(
    "build/%s (what the image copies) holds only the bundle: ES modules, source maps, licences",
    (name) => {
      const files = readdirSync(imageBundleDir(name), { recursive: true, encoding: "utf8" });
      expect(files).toContain("main.mjs");
      expect(files.filter((f) => !/\.(mjs|mjs\.map|mjs\.LEGAL\.txt)$/.test(f))).toEqual([]);
      expect(files.some((f) => f.includes("node_modules"))).toBe(false);
    },
  );
});

describe("the webhook image's entrypoint", () => {
  let webhook: Webhook;
  beforeAll(async () => {
    const chart = await renderChart({ set: { "certificates.mode": "helm" } });
    webhook = await startWebhook(undefined, { policyFile: writePolicyFile(chart) });
  });

  it("runs node /app/main.mjs as the image's user, read-only root and /app, no capabilities", () => {
    const rt = imageRuntime("webhook");
    const view = processView(webhook.process.pid);
    expect(view.argv).toEqual(rt.entrypoint);
    expect(view.uids.split(/\s+/)).toEqual(Array(4).fill(String(rt.uid)));
    expect(view.gids.split(/\s+/)).toEqual(Array(4).fill(String(rt.gid)));
    expect(view.noNewPrivs).toBe("1");
    expect(view.capEff).toBe("0000000000000000");
    expect(view.cwd).toBe(rt.workdir);
    expect(view.mountOptions("/")).toContain("ro");
    expect(view.mountOptions(rt.workdir)).toContain("ro");
    expect(view.mountOptions("/etc/dso/tls")).toContain("ro");
  });

  it("serves /healthz, /readyz and a real AdmissionReview on /mutate", async () => {
    const base = `https://127.0.0.1:${webhook.port}`;
    expect((await httpsCall(`${base}/healthz`, webhook.caPem, "GET")).status).toBe(200);
    expect((await httpsCall(`${base}/readyz`, webhook.caPem, "GET")).status).toBe(200);
    const review = readFileSync(
      join(repoRoot, "packages/webhook/src/testdata/review-deployment-pod.json"),
      "utf8",
    );
    const uid = (JSON.parse(review) as { request: { uid: string } }).request.uid;
    const r = await httpsCall(`${base}/mutate`, webhook.caPem, "POST", review);
    expect(r.status).toBe(200);
    const answer = JSON.parse(r.text) as {
      apiVersion: string;
      kind: string;
      response: { uid: string; allowed: boolean; patchType?: string; patch?: string };
    };
    expect(answer.apiVersion).toBe("admission.k8s.io/v1");
    expect(answer.kind).toBe("AdmissionReview");
    expect(answer.response.uid).toBe(uid);
    expect(answer.response.allowed).toBe(true);
    expect(answer.response.patchType).toBe("JSONPatch");
    const patch = Buffer.from(answer.response.patch ?? "", "base64").toString("utf8");
    expect(patch).toContain("dso-agent-init");
    expect(patch).toContain("dso.io~1injected");
  });
});

describe("the agent image's entrypoint", () => {
  let bao: OpenBao;
  beforeAll(async () => {
    bao = await startOpenBao();
  });

  it("renders (`render --config`) against OpenBao with AppRole, as the image's user on a read-only root", async () => {
    const rt = imageRuntime("agent");
    const password = randomBytes(18).toString("base64url");
    await bao.api("POST", "sys/auth/approle", { type: "approle" });
    await bao.kv2Put("secret", "image/db", { username: "image-user", password });
    await bao.putPolicy("image", `path "secret/data/image/*" { capabilities = ["read"] }`);
    await bao.api("POST", "auth/approle/role/image", { token_policies: ["image"] });
    const roleId = (
      await bao.api<{ data: { role_id: string } }>("GET", "auth/approle/role/image/role-id")
    ).data.role_id;
    const secretId = (
      await bao.api<{ data: { secret_id: string } }>("POST", "auth/approle/role/image/secret-id")
    ).data.secret_id;

    const root = makeTempDir("dso-e2e-image", "/dev/shm");
    const config = volumeDir(root, "config", 0o755, 0, 0);
    writeFileSync(
      join(config, "agent.yaml"),
      [
        "apiVersion: dso.io/v1",
        "kind: AgentConfig",
        "mountPath: /run/app-secrets",
        "refreshSeconds: 300",
        "fileMode: 0o440",
        "vault:",
        `  addresses: [${bao.address}]`,
        "  authMethod: approle",
        "  authPath: auth/approle",
        "  roleIdFile: /run/secrets/role_id",
        "  secretIdFile: /run/secrets/secret_id",
        "secrets:",
        "  - file: password",
        "    ref: { provider: vault, path: secret/data/image/db, key: password }",
        "",
      ].join("\n"),
    );
    const creds = volumeDir(root, "creds", 0o500, rt.uid, rt.gid);
    writeFileSync(join(creds, "role_id"), roleId, { mode: 0o400 });
    writeFileSync(join(creds, "secret_id"), secretId, { mode: 0o400 });
    const out = volumeDir(root, "out", 0o750, rt.uid, rt.gid);
    for (const f of ["role_id", "secret_id"]) chownSync(join(creds, f), rt.uid, rt.gid);

    const proc = spawnImage("agent", {
      name: "agent-image-render",
      args: ["render", "--config", "/etc/dso/agent.yaml", "--timeout", "30"],
      mounts: [
        { source: config, target: "/etc/dso", readOnly: true },
        { source: creds, target: "/run/secrets", readOnly: true },
        { source: out, target: "/run/app-secrets" },
      ],
    });
    const exit = await proc.exited;
    expect(exit.code, proc.logs()).toBe(0);
    expect(proc.argv).toEqual([
      ...rt.entrypoint,
      "render",
      "--config",
      "/etc/dso/agent.yaml",
      "--timeout",
      "30",
    ]);
    expect(readFileSync(join(out, "password"), "utf8")).toBe(password);
    const st = statSync(join(out, "password"));
    expect(st.uid).toBe(rt.uid);
    expect(st.mode & 0o777).toBe(0o440);
    expect(proc.logs()).not.toContain(password);
    expect(proc.logs()).not.toContain(secretId);
  });
});
