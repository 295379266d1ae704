/**
 * Templates for `dso.io/template-<file>`: Mustache syntax (parsed by the `mustache` library),
 * rendered with no HTML escaping and with strict names.
 *
 * The context a template sees (docs/annotations.md, "Templates"):
 * - a secret fetched as a JSON object (Vault data without `#key`) exposes its fields at the top
 *   level: `{{username}}`, `{{password}}`, nested fields as `{{a.b}}`;
 * - a string secret (a Vault `#key`, a Key Vault secret) is `{{value}}`; if the string is itself a
 *   JSON object its fields are exposed too;
 * - `{{value}}` is always available: the raw string, or the object's JSON text (a field named
 *   `value` wins over it).
 *
 * Every name a template uses must exist. Mustache renders a missing name as an empty string, which
 * turns a typo into a broken connection string that fails far from its cause; here it is a render
 * error naming the missing variable. The rendering walks mustache's parsed tokens itself for that
 * reason; the parse (and its error messages) is the library's.
 */
import Mustache from "mustache";
import type { TemplateSpans } from "mustache";

export type TemplateCheck = { ok: true } | { ok: false; message: string };
export type RenderedTemplate = { ok: true; text: string } | { ok: false; message: string };

/** What a secret provider returned: a string, or Vault's data object. */
export type FetchedSecret = string | Record<string, unknown>;

type Token = TemplateSpans[number];

function parseTokens(
  text: string,
): { ok: true; tokens: TemplateSpans } | { ok: false; message: string } {
  let tokens: TemplateSpans;
  try {
    tokens = Mustache.parse(text);
  } catch (error) {
    return { ok: false, message: `template does not parse: ${(error as Error).message}` };
  }
  const partial = findToken(tokens, (t) => t[0] === ">");
  if (partial !== undefined) {
    return {
      ok: false,
      message: `template uses the partial {{> ${partial[1]}}}, which DSO does not support`,
    };
  }
  return { ok: true, tokens };
}

function findToken(tokens: TemplateSpans, test: (t: Token) => boolean): Token | undefined {
  for (const token of tokens) {
    if (test(token)) return token;
    const children = token[4];
    if (Array.isArray(children)) {
      const found = findToken(children, test);
      if (found !== undefined) return found;
    }
  }
  return undefined;
}

/** Checks a template's syntax (unclosed tags and sections, partials) without rendering it. */
export function parseTemplate(text: string): TemplateCheck {
  const parsed = parseTokens(text);
  return parsed.ok ? { ok: true } : parsed;
}

/** The view a template is rendered against; see the module comment. */
export function templateContext(fetched: FetchedSecret): Record<string, unknown> {
  if (typeof fetched !== "string") return { value: JSON.stringify(fetched), ...fetched };
  let fields: unknown;
  try {
    fields = JSON.parse(fetched);
  } catch {
    fields = undefined;
  }
  return isObject(fields) ? { value: fetched, ...fields } : { value: fetched };
}

/**
 * Renders `template` against the fetched secret. A failure message names the missing variable and
 * the available names, never a value.
 */
export function renderTemplate(template: string, fetched: FetchedSecret): RenderedTemplate {
  const parsed = parseTokens(template);
  if (!parsed.ok) return parsed;
  const missing: string[] = [];
  const text = renderTokens(parsed.tokens, [templateContext(fetched)], missing);
  if (missing.length > 0) {
    const names = Object.keys(templateContext(fetched)).sort().join(", ");
    const unique = [...new Set(missing)].map((n) => `"${n}"`).join(", ");
    return {
      ok: false,
      message: `template uses ${unique}, which the secret does not have (it has: ${names})`,
    };
  }
  return { ok: true, text };
}

function renderTokens(tokens: TemplateSpans, stack: unknown[], missing: string[]): string {
  let out = "";
  for (const token of tokens) {
    const [type, name] = token;
    switch (type) {
      case "text":
        out += name;
        break;
      case "name":
      case "&": {
        const found = lookup(name, stack);
        if (found.hit) out += stringify(found.value);
        else missing.push(name);
        break;
      }
      case "#":
      case "^": {
        const found = lookup(name, stack);
        if (!found.hit) {
          missing.push(name);
          break;
        }
        const children = token[4];
        if (!Array.isArray(children)) break;
        const value = found.value;
        const empty = !value || (Array.isArray(value) && value.length === 0);
        if (type === "^") {
          if (empty) out += renderTokens(children, stack, missing);
        } else if (Array.isArray(value)) {
          for (const item of value) out += renderTokens(children, [...stack, item], missing);
        } else if (!empty) {
          out += renderTokens(children, [...stack, value], missing);
        }
        break;
      }
      default:
        // Comments and delimiter changes render nothing; partials are refused at parse.
        break;
    }
  }
  return out;
}

/** Mustache's name resolution: `.` is the current item; dotted names walk fields; inner scopes first. */
function lookup(name: string, stack: unknown[]): { hit: true; value: unknown } | { hit: false } {
  if (name === ".") return { hit: true, value: stack[stack.length - 1] };
  const path = name.split(".");
  for (let i = stack.length - 1; i >= 0; i--) {
    let value: unknown = stack[i];
    let hit = true;
    for (const segment of path) {
      if ((isObject(value) || Array.isArray(value)) && Object.hasOwn(value, segment)) {
        value = (value as Record<string, unknown>)[segment];
      } else {
        hit = false;
        break;
      }
    }
    if (hit) return { hit: true, value };
  }
  return { hit: false };
}

function stringify(value: unknown): string {
  if (value === null || value === undefined) return "";
  if (typeof value === "string") return value;
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  return JSON.stringify(value);
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
