import { describe, expect, it } from "vitest";
import type { SecretSpec } from "@dso/core";
import { AgentError } from "./errors.js";
import { fileContent } from "./render.js";

const data = { username: "app", password: "p@ss w0rd", port: 5432 };

describe("fileContent", () => {
  it.each<{
    name: string;
    spec: SecretSpec;
    fetched: string | Record<string, unknown>;
    want: string;
  }>([
    {
      name: "whole data object as JSON",
      spec: { file: "db.json", ref: { provider: "vault", path: "secret/data/db" } },
      fetched: data,
      want: `${JSON.stringify(data, null, 2)}\n`,
    },
    {
      name: "one key as its string",
      spec: { file: "pw", ref: { provider: "vault", path: "secret/data/db", key: "password" } },
      fetched: data,
      want: "p@ss w0rd",
    },
    {
      name: "a non-string key as JSON",
      spec: { file: "port", ref: { provider: "vault", path: "secret/data/db", key: "port" } },
      fetched: data,
      want: "5432",
    },
    {
      name: "a template over the data object, unescaped",
      spec: {
        file: "url",
        ref: { provider: "vault", path: "secret/data/db" },
        template: "postgres://{{username}}:{{password}}@db:{{port}}/app",
      },
      fetched: data,
      want: "postgres://app:p@ss w0rd@db:5432/app",
    },
    {
      name: "an Azure secret as is",
      spec: { file: "k", ref: { provider: "azure", kind: "secret", name: "k" } },
      fetched: "line1\nline2",
      want: "line1\nline2",
    },
    {
      name: "a template over a string secret",
      spec: {
        file: "env",
        ref: { provider: "azure", kind: "secret", name: "k" },
        template: "KEY={{value}}\n",
      },
      fetched: "abc",
      want: "KEY=abc\n",
    },
  ])("renders $name", ({ spec, fetched, want }) => {
    expect(fileContent(spec, fetched)).toBe(want);
  });

  it("names the missing key and the keys present, never values", () => {
    const spec: SecretSpec = {
      file: "pw",
      ref: { provider: "vault", path: "secret/data/db", key: "pass" },
    };
    const err = (() => {
      try {
        fileContent(spec, data);
      } catch (e) {
        return e as AgentError;
      }
      return undefined;
    })();
    expect(err?.code).toBe("KEY_NOT_FOUND");
    expect(err?.message).toContain('"pass"');
    expect(err?.message).toContain("password, port, username");
    expect(err?.message).not.toContain("p@ss w0rd");
  });

  it("reports a template's missing variable as a typed error without values", () => {
    const spec: SecretSpec = {
      file: "url",
      ref: { provider: "vault", path: "secret/data/db" },
      template: "{{user}}:{{password}}",
    };
    expect(() => fileContent(spec, data)).toThrow(AgentError);
    try {
      fileContent(spec, data);
    } catch (e) {
      expect((e as AgentError).code).toBe("TEMPLATE_FAILED");
      expect((e as AgentError).message).toContain('"user"');
      expect((e as AgentError).message).not.toContain("p@ss w0rd");
    }
  });
});
