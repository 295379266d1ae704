/**
 * The result of parsing one user-supplied value (an annotation, a policy field): the typed value,
 * or a message for the user. The caller knows which field it parsed and turns the message into a
 * `Problem` naming that field, so parsers stay reusable across annotations and the policy file.
 */
export type Parsed<T> = { ok: true; value: T } | { ok: false; message: string };

export function parsedValue<T>(value: T): Parsed<T> {
  return { ok: true, value };
}

export function parseFailure<T = never>(message: string): Parsed<T> {
  return { ok: false, message };
}
