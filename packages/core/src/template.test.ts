import { describe, expect, it } from "vitest";
import { parseTemplate, renderTemplate, templateContext, type FetchedSecret } from "./template.js";

describe("renderTemplate", () => {
  const dbCreds = {
    username: "v-app-7Hx",
    password: "p&<>\"'=;x",
    port: 5432,
    tls: true,
    hosts: ["db-0", "db-1"],
  };
  const cases: { name: string; template: string; fetched: FetchedSecret; text: string }[] = [
    {
      name: "connection string from a Vault object, no HTML escaping",
      template: "Server=db;Port={{port}};User Id={{username}};Password={{password}};",
      fetched: dbCreds,
      text: "Server=db;Port=5432;User Id=v-app-7Hx;Password=p&<>\"'=;x;",
    },
    {
      name: ".env file",
      template: "DB_USER={{username}}\nDB_PASSWORD={{{password}}}\nDB_TLS={{tls}}\n",
      fetched: dbCreds,
      text: "DB_USER=v-app-7Hx\nDB_PASSWORD=p&<>\"'=;x\nDB_TLS=true\n",
    },
    {
      name: "JSON with a section over a list",
      template: '{"hosts":[{{#hosts}}"{{.}}",{{/hosts}}""],"user":"{{&username}}"}',
      fetched: dbCreds,
      text: '{"hosts":["db-0","db-1",""],"user":"v-app-7Hx"}',
    },
    {
      name: "properties from a string secret",
      template: "spring.datasource.password={{value}}\n",
      fetched: "s3cr=t&",
      text: "spring.datasource.password=s3cr=t&\n",
    },
    {
      name: "a string secret holding JSON exposes its fields",
      template: "{{user}}:{{pass}} ({{value}})",
      fetched: '{"user":"u","pass":"p"}',
      text: 'u:p ({"user":"u","pass":"p"})',
    },
    {
      name: "value of an object is its JSON; nested objects render as JSON; dotted names",
      template: "{{value}}|{{nested}}|{{nested.a}}",
      fetched: { nested: { a: 1 } },
      text: '{"nested":{"a":1}}|{"a":1}|1',
    },
    {
      name: "a field named value wins; inverted section on false; standalone lines vanish; comments",
      template: "{{value}}\n{{^tls}}\nplain\n{{/tls}}\n{{! note }}end",
      fetched: { value: "field", tls: false },
      text: "field\nplain\nend",
    },
    {
      name: "custom delimiters",
      template: "{{=<% %>=}}<% username %>",
      fetched: dbCreds,
      text: "v-app-7Hx",
    },
    { name: "null renders empty", template: "[{{x}}]", fetched: { x: null }, text: "[]" },
  ];
  it.each(cases)("$name", ({ template, fetched, text }) => {
    expect(parseTemplate(template)).toEqual({ ok: true });
    expect(renderTemplate(template, fetched)).toEqual({ ok: true, text });
  });

  it("refuses a missing variable, naming it and the available names but no value", () => {
    const result = renderTemplate(
      "User={{usernme}};Password={{password}};{{#x}}{{y}}{{/x}}",
      dbCreds,
    );
    expect(result).toEqual({
      ok: false,
      message:
        'template uses "usernme", "x", which the secret does not have (it has: hosts, password, port, tls, username, value)',
    });
    if (!result.ok) {
      for (const secret of ["v-app-7Hx", "p&<>", "db-0"])
        expect(result.message).not.toContain(secret);
    }
  });

  it("checks names inside sections against the section's item", () => {
    const result = renderTemplate("{{#hosts}}{{name}}{{/hosts}}", dbCreds);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.message).toContain('"name"');
  });

  it("a string secret has only value", () => {
    expect(templateContext("plain")).toEqual({ value: "plain" });
    expect(renderTemplate("{{password}}", "hunter2")).toEqual({
      ok: false,
      message: 'template uses "password", which the secret does not have (it has: value)',
    });
  });
});

describe("parseTemplate", () => {
  it.each([
    ["Password={{password", /Unclosed tag at/],
    ["{{#rows}}x", /Unclosed section "rows"/],
    ["{{#a}}x{{/b}}", /Unclosed section "a"/],
    ["{{> header}}", /partial \{\{> header\}\}, which DSO does not support/],
  ])("refuses %s", (template, message) => {
    const result = parseTemplate(template);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.message).toMatch(message);
  });
});
