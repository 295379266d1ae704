import { createHash, randomBytes } from "node:crypto";
import {
  chmod,
  mkdir,
  readdir,
  readFile,
  readlink,
  rename,
  rm,
  symlink,
  writeFile,
} from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "pino";
import { AgentError } from "./errors.js";

const DATA_LINK = "..data";
const DIR_MODE = 0o750;

export function contentHash(content: string): string {
  return createHash("sha256").update(content).digest("hex");
}

/** One hash over every file's name and content hash; any change to any file changes it. */
export function filesHash(hashes: Record<string, string>): string {
  const h = createHash("sha256");
  for (const name of Object.keys(hashes).sort()) h.update(`${name}\0${hashes[name] ?? ""}\n`);
  return h.digest("hex");
}

export interface WriteOutcome {
  changed: boolean;
  /** Content hash per file as now visible. */
  hashes: Record<string, string>;
}

/**
 * Writes a set of files the way the kubelet writes projected volumes, so a reader never sees a
 * half-written file or a mix of old and new files:
 *
 *   mountPath/..2026_11_23_01_02_03.123456789_ab12/  every file, written in full
 *   mountPath/..data -> ..2026_11_23_...             swapped atomically (symlink + rename)
 *   mountPath/<file> -> ..data/<file>                stable names the application opens
 *
 * A reader that opens `<file>` resolves `..data` once, so it sees one complete generation.
 */
export class AtomicWriter {
  private current: Record<string, string> | undefined;

  constructor(
    private readonly mountPath: string,
    private readonly fileMode: number,
    private readonly logger: Logger,
  ) {}

  /** Hashes of the files currently visible, read from disk the first time (the init container may have written them). */
  async currentHashes(): Promise<Record<string, string>> {
    if (this.current !== undefined) return this.current;
    const contents = await this.readCurrent();
    this.current = Object.fromEntries(
      Object.entries(contents).map(([name, content]) => [name, contentHash(content)]),
    );
    return this.current;
  }

  /** Contents of the current generation; empty when nothing was written yet. */
  async readCurrent(): Promise<Record<string, string>> {
    const out: Record<string, string> = {};
    let names: string[];
    try {
      names = await readdir(join(this.mountPath, DATA_LINK));
    } catch {
      return out;
    }
    for (const name of names) {
      try {
        out[name] = await readFile(join(this.mountPath, DATA_LINK, name), "utf8");
      } catch {
        // A file that vanished between readdir and read belongs to a generation being replaced.
      }
    }
    return out;
  }

  async write(files: Record<string, string>): Promise<WriteOutcome> {
    const hashes = Object.fromEntries(
      Object.entries(files).map(([name, content]) => [name, contentHash(content)]),
    );
    const before = await this.currentHashes();
    if (filesHash(before) === filesHash(hashes)) return { changed: false, hashes };
    try {
      await this.swap(files);
    } catch (err) {
      throw new AgentError(
        "WRITE_FAILED",
        `cannot write secret files to ${this.mountPath}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
      );
    }
    this.current = hashes;
    this.logger.info({ files: Object.keys(files).sort() }, "wrote secret files");
    return { changed: true, hashes };
  }

  private async swap(files: Record<string, string>): Promise<void> {
    await mkdir(this.mountPath, { recursive: true });
    const stamp = new Date().toISOString().replace(/[-:T]/g, "_").replace("Z", "");
    const dirName = `..${stamp}_${randomBytes(3).toString("hex")}`;
    const dir = join(this.mountPath, dirName);
    await mkdir(dir, { mode: DIR_MODE });
    await chmod(dir, DIR_MODE);
    for (const [name, content] of Object.entries(files)) {
      const path = join(dir, name);
      await writeFile(path, content, { mode: this.fileMode, flag: "wx" });
      await chmod(path, this.fileMode);
    }
    const previous = await readlink(join(this.mountPath, DATA_LINK)).catch(() => undefined);
    await replaceSymlink(this.mountPath, DATA_LINK, dirName);
    for (const name of Object.keys(files)) {
      const target = `${DATA_LINK}/${name}`;
      const existing = await readlink(join(this.mountPath, name)).catch(() => undefined);
      if (existing !== target) await replaceSymlink(this.mountPath, name, target);
    }
    // Files no longer in the set (a secret removed after its lease expired) disappear with their link.
    for (const entry of await readdir(this.mountPath)) {
      if (entry.startsWith("..") || Object.hasOwn(files, entry)) continue;
      const link = await readlink(join(this.mountPath, entry)).catch(() => undefined);
      if (link === `${DATA_LINK}/${entry}`) await rm(join(this.mountPath, entry), { force: true });
    }
    // The previous generation stays until the next swap, so a reader that resolved `..data` just
    // before this swap can still open its files; older generations go now.
    const keep = new Set([DATA_LINK, dirName, previous]);
    for (const entry of await readdir(this.mountPath)) {
      if (entry.startsWith("..") && !keep.has(entry) && !entry.endsWith(".tmp")) {
        // Best effort: the new generation is already live; a leftover only costs memory.
        await rm(join(this.mountPath, entry), { recursive: true, force: true }).catch(
          (err: unknown) => {
            this.logger.warn(
              { entry, reason: (err as NodeJS.ErrnoException).code },
              "could not remove an old generation",
            );
          },
        );
      }
    }
  }
}

/** Points `name` at `target` atomically: a new symlink under a temporary name renamed over the old one. */
async function replaceSymlink(dir: string, name: string, target: string): Promise<void> {
  const tmp = join(dir, `..${name}.${randomBytes(3).toString("hex")}.tmp`);
  await symlink(target, tmp);
  await rename(tmp, join(dir, name));
}
