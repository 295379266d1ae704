/**
 * Notices changes to a few small files (certificate, key, policy) mounted from Secrets and
 * ConfigMaps.
 *
 * Kubernetes updates such volumes by writing a new timestamped directory and atomically swapping
 * the `..data` symlink, so watching the file itself misses the change: we watch the containing
 * directory. Events are unreliable on some filesystems (overlay, NFS) and watches die when the
 * directory is replaced, so a periodic stat poll backs them up.
 */
import { statSync, watch, type FSWatcher } from "node:fs";
import { dirname, resolve } from "node:path";

export interface FileWatchOptions {
  /** Milliseconds between stat polls. */
  pollIntervalMs: number;
  /** Quiet period after the last event before `onChange` runs (a pair of files changes in two writes). */
  debounceMs?: number;
  /** Receives an exception thrown by `onChange` (which should report its own failures). */
  onError?: (error: unknown) => void;
}

export interface FileWatch {
  close(): void;
}

function signature(path: string): string {
  try {
    // stat follows symlinks, so a swapped `..data` target shows up as a new inode.
    const st = statSync(path);
    return `${st.ino}:${st.size}:${st.mtimeMs}`;
  } catch {
    return "missing";
  }
}

/**
 * Calls `onChange` (never concurrently with itself) after any of `paths` may have changed. It can
 * fire when nothing changed; the callback compares contents itself.
 */
export function watchFiles(
  paths: readonly string[],
  onChange: () => Promise<void> | void,
  options: FileWatchOptions,
): FileWatch {
  const files = [...new Set(paths.map((p) => resolve(p)))];
  const debounceMs = options.debounceMs ?? 100;
  let signatures = files.map(signature);
  let timer: NodeJS.Timeout | undefined;
  let running = false;
  let pending = false;
  let closed = false;

  // A function, not an inline read: `pending` changes while onChange is awaited.
  const hasPending = (): boolean => pending && !closed;

  const run = async (): Promise<void> => {
    if (running) {
      pending = true;
      return;
    }
    running = true;
    try {
      do {
        pending = false;
        signatures = files.map(signature);
        try {
          await onChange();
        } catch (error) {
          options.onError?.(error);
        }
      } while (hasPending());
    } finally {
      running = false;
    }
  };

  const schedule = (): void => {
    if (closed) return;
    if (timer !== undefined) clearTimeout(timer);
    timer = setTimeout(() => {
      timer = undefined;
      void run();
    }, debounceMs);
    timer.unref();
  };

  const watchers: FSWatcher[] = [];
  for (const dir of new Set(files.map((f) => dirname(f)))) {
    try {
      const watcher = watch(dir, { persistent: false }, schedule);
      // A vanished directory ends the watch; the poll keeps covering it.
      watcher.on("error", () => {
        watcher.close();
      });
      watchers.push(watcher);
    } catch {
      // Directory missing or not watchable: rely on polling.
    }
  }

  const poll = setInterval(() => {
    const now = files.map(signature);
    if (now.some((s, i) => s !== signatures[i])) {
      signatures = now;
      schedule();
    }
  }, options.pollIntervalMs);
  poll.unref();

  return {
    close() {
      closed = true;
      clearInterval(poll);
      if (timer !== undefined) clearTimeout(timer);
      for (const w of watchers) w.close();
    },
  };
}
