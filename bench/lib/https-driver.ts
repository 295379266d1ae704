/**
 * A small HTTPS load driver on node:https with keep-alive connections, as the API server calls
 * webhooks: a closed loop (N connections, each sends its next review when the last is answered:
 * the maximum rate) and an open loop at a fixed rate. Open-loop latency is measured from when a
 * request was due, not when it was sent, so a server that falls behind is not flattered
 * (coordinated omission).
 */
import { Agent, request } from "node:https";
import { monitorEventLoopDelay, performance } from "node:perf_hooks";

export interface Target {
  host: string;
  port: number;
  /** CA that signed the webhook's certificate. */
  ca: string;
  /** Name the certificate is checked against, as the API server uses the Service's DNS name. */
  servername: string;
}

/** Supplies request bodies and judges answers. */
export interface ReviewSource {
  next(): { body: Buffer; uid: string };
  /** Why the answer is wrong, or undefined; `thorough` asks for a full check (patch applied). */
  check(body: string, uid: string, thorough: boolean): string | undefined;
}

export interface LatencySummary {
  count: number;
  meanMs: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  p999Ms: number;
  maxMs: number;
}

export interface PhaseResult {
  /** Reviews sent (open loop: fewer than planned when the phase was cut short as saturated). */
  sent: number;
  completed: number;
  /**
   * Open loop only: the backlog of unanswered reviews passed two seconds' worth, so sending
   * stopped early to keep the run bounded. The webhook cannot sustain that rate here.
   */
  saturated: boolean;
  errors: number;
  /** The first few error messages. */
  errorSamples: string[];
  durationMs: number;
  /** Answered reviews per second over the phase. */
  ratePerSecond: number;
  latency: LatencySummary;
  /** CPU time of this driver process during the phase: if near the wall time, the driver was the bottleneck. */
  driverCpuMs: number;
  /**
   * Largest delay of this driver's event loop during the phase. A stall here delays sending and
   * is charged to the webhook by the open loop, so a large value makes the latencies suspect.
   */
  driverStallMaxMs: number;
  /** New TLS connections opened during the phase (each costs a handshake on both sides). */
  connectionsOpened: number;
}

/** Nearest-rank quantile of ascending `sorted`. */
export function quantile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil(q * sorted.length)));
  return sorted[rank - 1] ?? Number.NaN;
}

export function summarize(samples: readonly number[]): LatencySummary {
  const sorted = Float64Array.from(samples).sort();
  const sum = samples.reduce((a, b) => a + b, 0);
  return {
    count: sorted.length,
    meanMs: sorted.length === 0 ? Number.NaN : sum / sorted.length,
    p50Ms: quantile(sorted, 0.5),
    p90Ms: quantile(sorted, 0.9),
    p99Ms: quantile(sorted, 0.99),
    p999Ms: quantile(sorted, 0.999),
    maxMs: sorted.length === 0 ? Number.NaN : (sorted[sorted.length - 1] ?? Number.NaN),
  };
}

interface Answer {
  status: number;
  body: string;
}

const REQUEST_TIMEOUT_MS = 10_000;

/** Sockets seen so far, to count the connections a phase had to open. */
const seenSockets = new WeakSet<object>();
let socketsOpened = 0;

function post(agent: Agent, target: Target, body: Buffer): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        agent,
        host: target.host,
        port: target.port,
        ca: target.ca,
        servername: target.servername,
        method: "POST",
        // The API server adds the webhook's timeout to the URL.
        path: "/mutate?timeout=10s",
        headers: { "content-type": "application/json", "content-length": body.length },
        timeout: REQUEST_TIMEOUT_MS,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("end", () => {
          resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8") });
        });
        res.on("error", reject);
      },
    );
    req.on("socket", (socket) => {
      if (!seenSockets.has(socket)) {
        seenSockets.add(socket);
        socketsOpened++;
      }
    });
    req.on("timeout", () => req.destroy(new Error(`no answer within ${REQUEST_TIMEOUT_MS} ms`)));
    req.on("error", reject);
    req.end(body);
  });
}

/** Full checks on the first answers and then on one in `SAMPLE_EVERY`; cheap checks on all. */
const THOROUGH_FIRST = 20;
const SAMPLE_EVERY = 200;

class Recorder {
  latencies: number[] = [];
  errors = 0;
  errorSamples: string[] = [];
  #answers = 0;
  readonly #socketsBefore = socketsOpened;
  readonly #loopDelay: ReturnType<typeof monitorEventLoopDelay> = monitorEventLoopDelay({
    resolution: 5,
  });

  constructor(private readonly source: ReviewSource) {
    this.#loopDelay.enable();
  }

  async send(agent: Agent, target: Target, dueAt?: number): Promise<void> {
    const { body, uid } = this.source.next();
    const started = dueAt ?? performance.now();
    let problem: string | undefined;
    try {
      const answer = await post(agent, target, body);
      const n = this.#answers++;
      problem =
        answer.status === 200
          ? this.source.check(answer.body, uid, n < THOROUGH_FIRST || n % SAMPLE_EVERY === 0)
          : `HTTP ${answer.status}: ${answer.body.slice(0, 200)}`;
    } catch (error) {
      problem = error instanceof Error ? error.message : String(error);
    }
    if (problem === undefined) {
      this.latencies.push(performance.now() - started);
    } else {
      this.errors++;
      if (this.errorSamples.length < 5) this.errorSamples.push(problem);
    }
  }

  result(startedAt: number, cpuBefore: NodeJS.CpuUsage, saturated = false): PhaseResult {
    const durationMs = performance.now() - startedAt;
    const cpu = process.cpuUsage(cpuBefore);
    this.#loopDelay.disable();
    return {
      sent: this.latencies.length + this.errors,
      saturated,
      completed: this.latencies.length,
      errors: this.errors,
      errorSamples: this.errorSamples,
      durationMs,
      ratePerSecond: (this.latencies.length * 1000) / durationMs,
      latency: summarize(this.latencies),
      driverCpuMs: (cpu.user + cpu.system) / 1000,
      driverStallMaxMs: this.#loopDelay.max / 1e6,
      connectionsOpened: socketsOpened - this.#socketsBefore,
    };
  }
}

/**
 * One long-lived pool for a whole run, as the API server keeps one transport per webhook: idle
 * connections stay open between phases, so a phase opens new ones (TLS handshakes) only when it
 * needs more than earlier phases did.
 */
export function keepAliveAgent(maxSockets: number): Agent {
  return new Agent({ keepAlive: true, maxSockets, maxFreeSockets: maxSockets });
}

/** `connections` workers, each with one review in flight on a keep-alive connection, for `durationMs`. */
export async function closedLoop(
  target: Target,
  source: ReviewSource,
  options: { agent: Agent; connections: number; durationMs: number },
): Promise<PhaseResult> {
  const { agent } = options;
  const recorder = new Recorder(source);
  const cpuBefore = process.cpuUsage();
  const startedAt = performance.now();
  const endAt = startedAt + options.durationMs;
  const worker = async (): Promise<void> => {
    while (performance.now() < endAt) await recorder.send(agent, target);
  };
  await Promise.all(Array.from({ length: options.connections }, worker));
  return recorder.result(startedAt, cpuBefore);
}

/**
 * Reviews at `rate` per second for `durationMs`, whatever the answers do, over the agent's
 * keep-alive connections (at most its maxSockets; requests beyond that queue, and their wait
 * counts). `maxConnections` only sizes the backlog bound.
 */
export async function fixedRate(
  target: Target,
  source: ReviewSource,
  options: { agent: Agent; rate: number; durationMs: number; maxConnections: number },
): Promise<PhaseResult> {
  const { agent } = options;
  const recorder = new Recorder(source);
  const intervalMs = 1000 / options.rate;
  let total = Math.max(1, Math.round((options.rate * options.durationMs) / 1000));
  const maxBacklog = Math.max(options.maxConnections, 2 * options.rate);
  let saturated = false;
  const inFlight = new Set<Promise<void>>();
  const cpuBefore = process.cpuUsage();
  const startedAt = performance.now();
  let sent = 0;
  await new Promise<void>((resolve) => {
    const tick = (): void => {
      const now = performance.now();
      while (sent < total && startedAt + sent * intervalMs <= now) {
        if (inFlight.size >= maxBacklog) {
          saturated = true;
          total = sent;
          break;
        }
        const p = recorder.send(agent, target, startedAt + sent * intervalMs);
        inFlight.add(p);
        void p.finally(() => inFlight.delete(p));
        sent++;
      }
      if (sent >= total) {
        clearInterval(timer);
        resolve();
      }
    };
    const timer = setInterval(tick, 1);
    tick();
  });
  await Promise.all(inFlight);
  return recorder.result(startedAt, cpuBefore, saturated);
}
