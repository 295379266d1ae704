/**
 * Applies a JSON patch (RFC 6902, the `add`/`replace`/`remove` operations fast-json-patch's
 * `compare` emits) to a node of a parsed YAML document, so the user's comments and layout
 * outside the changed parts survive `dso inject`.
 */
import { isSeq, type Document } from "yaml";
import type { Operation } from "fast-json-patch";

/** Splits a JSON pointer into its unescaped segments (`~1` is `/`, `~0` is `~`). */
export function pointerSegments(pointer: string): string[] {
  if (pointer === "") return [];
  return pointer
    .slice(1)
    .split("/")
    .map((s) => s.replace(/~1/g, "/").replace(/~0/g, "~"));
}

export class YamlPatchError extends Error {
  override readonly name = "YamlPatchError";
  readonly code = "YAML_PATCH_UNSUPPORTED";
}

/** Applies `ops` to the node at `base` in `doc`, in place. */
export function applyPatchToYaml(
  doc: Document,
  base: readonly string[],
  ops: readonly Operation[],
): void {
  for (const op of ops) {
    const path = [...base, ...pointerSegments(op.path)];
    const last = path.at(-1);
    const parentPath = path.slice(0, -1);
    switch (op.op) {
      case "add": {
        const parent: unknown = path.length === 0 ? undefined : doc.getIn(parentPath, true);
        const node = doc.createNode(op.value, { aliasDuplicateObjects: false });
        if (isSeq(parent)) {
          // Insertion into a sequence shifts what follows; "-" appends.
          const index = last === "-" ? parent.items.length : Number(last);
          parent.items.splice(index, 0, node);
        } else {
          doc.setIn(path, node);
        }
        break;
      }
      case "replace":
        doc.setIn(path, doc.createNode(op.value, { aliasDuplicateObjects: false }));
        break;
      case "remove":
        doc.deleteIn(path);
        break;
      default:
        throw new YamlPatchError(`unsupported patch operation ${op.op}`);
    }
  }
}
