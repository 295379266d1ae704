import { parseFailure, parsedValue, type Parsed } from "./parsed.js";

/** The shortest refresh interval: below this the agent would hammer the backend. */
export const MIN_REFRESH_SECONDS = 5;

const DURATION = /^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$/;

/**
 * Parses a Go-style duration limited to whole hours, minutes and seconds (`30s`, `5m`, `1h`,
 * `1h30m`) into seconds. Units must appear in that order, each at most once; a bare number is
 * refused because `5` could mean seconds or minutes.
 */
export function parseDuration(text: string): Parsed<number> {
  const trimmed = text.trim();
  const match = DURATION.exec(trimmed);
  if (trimmed === "" || match === null) {
    return parseFailure(
      `"${text}" is not a duration: write whole hours, minutes and seconds like "30s", "5m", "1h" or "1h30m"`,
    );
  }
  const [, hours, minutes, seconds] = match;
  return parsedValue(Number(hours ?? 0) * 3600 + Number(minutes ?? 0) * 60 + Number(seconds ?? 0));
}

/** A refresh interval: a duration of at least `MIN_REFRESH_SECONDS`. */
export function parseRefresh(text: string): Parsed<number> {
  const parsed = parseDuration(text);
  if (!parsed.ok) return parsed;
  if (parsed.value < MIN_REFRESH_SECONDS) {
    return parseFailure(
      `"${text}" is too short: the refresh interval must be at least ${MIN_REFRESH_SECONDS}s`,
    );
  }
  return parsed;
}
