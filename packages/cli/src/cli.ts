/**
 * Command dispatch and argument parsing for `dso`, with the process's streams passed in.
 *
 * Exit codes: 0 success, 1 refused or unreadable input, 2 usage error.
 */
import { readFile } from "node:fs/promises";
import { parseArgs } from "node:util";
import { DEFAULT_POLICY, formatProblems, parsePolicy, type Policy } from "@dso/core";
import { injectDocuments } from "./inject.js";

export interface Io {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  readStdin: () => Promise<string>;
}

export const USAGE = `Usage:
  dso inject -f <file|-> [--policy <file>] [--namespace <ns>]
      Print the workloads in <file> (multi-document YAML; "-" reads stdin) as the DSO webhook
      would admit them: every Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, Job and
      CronJob pod template annotated dso.io/inject: "true" gets the agent (items of a kubectl
      List too); other documents pass through unchanged. A refused workload prints
      "error: <kind>/<name>: <message>" on stderr and the command exits 1, printing nothing.
        -f, --filename <file|->   input YAML
        --policy <file>           InjectionPolicy YAML (default: the built-in policy)
        -n, --namespace <ns>      namespace of documents that name none (default: default)
  dso version       print the version
  dso help          print this help
`;

async function readVersion(): Promise<string> {
  const text = await readFile(new URL("../package.json", import.meta.url), "utf8");
  return (JSON.parse(text) as { version: string }).version;
}

async function loadPolicy(file: string | undefined, io: Io): Promise<Policy | undefined> {
  if (file === undefined) return DEFAULT_POLICY;
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    io.stderr(
      `error: cannot read policy file ${file}: ${(error as NodeJS.ErrnoException).code ?? String(error)}\n`,
    );
    return undefined;
  }
  const parsed = parsePolicy(text);
  if (!parsed.ok) {
    io.stderr(`error: policy file ${file} is invalid: ${formatProblems(parsed.problems)}\n`);
    return undefined;
  }
  return parsed.policy;
}

async function inject(args: string[], io: Io): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        filename: { type: "string", short: "f" },
        policy: { type: "string" },
        namespace: { type: "string", short: "n" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (error) {
    io.stderr(`error: ${error instanceof Error ? error.message : String(error)}\n\n${USAGE}`);
    return 2;
  }
  if (values.help === true) {
    io.stdout(USAGE);
    return 0;
  }
  const file = values.filename;
  if (file === undefined || file === "") {
    io.stderr(`error: dso inject needs -f <file|->\n\n${USAGE}`);
    return 2;
  }
  const policy = await loadPolicy(values.policy, io);
  if (policy === undefined) return 1;

  let text: string;
  try {
    text = file === "-" ? await io.readStdin() : await readFile(file, "utf8");
  } catch (error) {
    io.stderr(
      `error: cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? String(error)}\n`,
    );
    return 1;
  }
  const result = injectDocuments(text, {
    policy,
    source: file === "-" ? "stdin" : file,
    ...(values.namespace === undefined ? {} : { namespace: values.namespace }),
  });
  if (!result.ok) {
    io.stderr(result.errors.join("\n") + "\n");
    return 1;
  }
  io.stdout(result.output);
  return 0;
}

export async function run(argv: readonly string[], io: Io): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case "inject":
      return inject(rest, io);
    case "version":
    case "--version":
      io.stdout(`dso ${await readVersion()}\n`);
      return 0;
    case "help":
    case "--help":
    case "-h":
      io.stdout(USAGE);
      return 0;
    case undefined:
      io.stderr(USAGE);
      return 2;
    default:
      io.stderr(`error: unknown command "${command}"\n\n${USAGE}`);
      return 2;
  }
}
