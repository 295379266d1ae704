/**
 * The V8 heap of another Node process, through its inspector (`node --inspect=127.0.0.1:<port>`):
 * force a full garbage collection, then read the heap's used size. Used after many refresh cycles
 * to show that live objects do not grow (a leak survives a full GC; garbage does not).
 */
export interface HeapUsage {
  usedBytes: number;
  totalBytes: number;
}

interface Pending {
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
}

export class InspectorSession {
  #ws: WebSocket;
  #next = 1;
  readonly #pending = new Map<number, Pending>();

  private constructor(ws: WebSocket) {
    this.#ws = ws;
    ws.addEventListener("message", (ev: MessageEvent) => {
      const msg = JSON.parse(String(ev.data)) as {
        id?: number;
        result?: unknown;
        error?: { message: string };
      };
      if (msg.id === undefined) return;
      const p = this.#pending.get(msg.id);
      if (p === undefined) return;
      this.#pending.delete(msg.id);
      if (msg.error !== undefined) p.reject(new Error(`inspector: ${msg.error.message}`));
      else p.resolve(msg.result);
    });
  }

  /** Connects to the first target of the inspector listening on 127.0.0.1:`port`. */
  static async connect(port: number): Promise<InspectorSession> {
    const res = await fetch(`http://127.0.0.1:${port}/json/list`);
    const targets = (await res.json()) as { webSocketDebuggerUrl?: string }[];
    const url = targets[0]?.webSocketDebuggerUrl;
    if (url === undefined) throw new Error(`no inspector target on port ${port}`);
    const ws = new WebSocket(url);
    await new Promise<void>((resolve, reject) => {
      ws.addEventListener("open", () => {
        resolve();
      });
      ws.addEventListener("error", () => {
        reject(new Error(`cannot connect to the inspector at ${url}`));
      });
    });
    return new InspectorSession(ws);
  }

  call(method: string, params: Record<string, unknown> = {}): Promise<unknown> {
    const id = this.#next++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#ws.send(JSON.stringify({ id, method, params }));
    });
  }

  /** Full GC, then the heap's used and total size. */
  async heapAfterGc(): Promise<HeapUsage> {
    await this.call("HeapProfiler.enable");
    await this.call("HeapProfiler.collectGarbage");
    const r = (await this.call("Runtime.getHeapUsage")) as { usedSize: number; totalSize: number };
    return { usedBytes: r.usedSize, totalBytes: r.totalSize };
  }

  close(): void {
    this.#ws.close();
  }
}
