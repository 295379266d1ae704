import jsonpatch from "fast-json-patch";
import { parseDocument } from "yaml";
import { describe, expect, it } from "vitest";
import { applyPatchToYaml, pointerSegments } from "./yaml-json-patch.js";

type Json = Record<string, unknown>;

const cases: [string, string, Json][] = [
  [
    "adds a key with / and ~ in its name",
    "metadata:\n  annotations:\n    a: b # note\n",
    { metadata: { annotations: { a: "b", "dso.io/injected": "true", "x~y": "z" } } },
  ],
  [
    "inserts at the front of a list and keeps what follows",
    "spec:\n  initContainers:\n    - name: migrate\n      image: m:1\n",
    {
      spec: {
        initContainers: [
          { name: "dso-agent-init" },
          { name: "dso-agent" },
          { name: "migrate", image: "m:1" },
        ],
      },
    },
  ],
  [
    "appends to nested lists and creates new ones",
    "spec:\n  containers:\n    - name: api\n      volumeMounts:\n        - name: tmp\n          mountPath: /tmp\n",
    {
      spec: {
        containers: [
          {
            name: "api",
            volumeMounts: [
              { name: "tmp", mountPath: "/tmp" },
              { name: "dso-secrets", mountPath: "/s", readOnly: true },
            ],
          },
        ],
        volumes: [{ name: "dso-secrets", emptyDir: { medium: "Memory" } }],
      },
    },
  ],
  ["replaces and removes", "a: 1\nb: [1, 2, 3]\nc: gone\n", { a: 2, b: [1, 3] }],
];

describe("applyPatchToYaml", () => {
  it.each(cases)("%s", (_name, yaml, target) => {
    const doc = parseDocument(yaml);
    const source = doc.toJS() as Json;
    const ops = jsonpatch.compare(source, target);
    applyPatchToYaml(doc, [], ops);
    expect(doc.toJS()).toEqual(target);
  });

  it("applies under a base path and keeps comments elsewhere", () => {
    const doc = parseDocument("# head\nkind: Deployment\nspec:\n  template:\n    metadata: {}\n");
    applyPatchToYaml(
      doc,
      ["spec", "template"],
      [{ op: "add", path: "/metadata/labels", value: { a: "b" } }],
    );
    expect(doc.toJS()).toEqual({
      kind: "Deployment",
      spec: { template: { metadata: { labels: { a: "b" } } } },
    });
    expect(doc.toString()).toContain("# head");
  });

  it("unescapes JSON pointers", () => {
    expect(pointerSegments("/metadata/annotations/dso.io~1inject")).toEqual([
      "metadata",
      "annotations",
      "dso.io/inject",
    ]);
    expect(pointerSegments("/a~0b/~01")).toEqual(["a~b", "~1"]);
    expect(pointerSegments("")).toEqual([]);
  });
});
