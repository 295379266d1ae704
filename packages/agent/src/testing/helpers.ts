import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { pino, type Logger } from "pino";

/** A pino logger whose every line is kept, so tests can search all output for leaked values. */
export function capturingLogger(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(chunk.toString());
      cb();
    },
  });
  return { logger: pino({ level: "trace" }, stream), lines };
}

export function capturingStream(): { stream: Writable; lines: string[] } {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(chunk.toString());
      cb();
    },
  });
  return { stream, lines };
}

export async function tempDir(): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), "dso-agent-"));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

export async function writeText(path: string, text: string): Promise<string> {
  await writeFile(path, text);
  return path;
}

/** An address nothing listens on: a port that was free a moment ago. */
export async function deadAddress(): Promise<string> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const addr = s.address();
  const port = typeof addr === "object" && addr !== null ? addr.port : 1;
  await new Promise<void>((r) =>
    s.close(() => {
      r();
    }),
  );
  return `http://127.0.0.1:${port}`;
}

/** Fails if any of the values occurs in any of the texts. */
export function findLeaks(texts: string[], values: Iterable<string>): string[] {
  const leaks: string[] = [];
  for (const v of values) {
    if (v.length < 6) continue;
    for (const t of texts) if (t.includes(v)) leaks.push(v);
  }
  return [...new Set(leaks)];
}
