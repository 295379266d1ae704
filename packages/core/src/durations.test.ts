import { describe, expect, it } from "vitest";
import { parseDuration, parseRefresh } from "./durations.js";

describe("parseDuration", () => {
  it.each([
    ["30s", 30],
    ["5m", 300],
    ["1h", 3600],
    ["1h30m", 5400],
    ["2h0m15s", 7215],
    [" 90s ", 90],
  ])("%s = %ds", (text, seconds) => {
    expect(parseDuration(text)).toEqual({ ok: true, value: seconds });
  });
  it.each(["", "5", "5 m", "1m1h", "1.5h", "-5s", "5ms", "1d", "m"])("refuses %j", (text) => {
    const parsed = parseDuration(text);
    expect(parsed.ok).toBe(false);
    if (!parsed.ok) expect(parsed.message).toContain("is not a duration");
  });
});

describe("parseRefresh", () => {
  it("has a 5s minimum", () => {
    expect(parseRefresh("5s")).toEqual({ ok: true, value: 5 });
    expect(parseRefresh("4s")).toEqual({
      ok: false,
      message: '"4s" is too short: the refresh interval must be at least 5s',
    });
    expect(parseRefresh("0s").ok).toBe(false);
  });
});
