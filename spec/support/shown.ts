/** What a user may see of an error: for the specs that assert a password never shows (issue 18). */
import { inspect } from 'node:util';

/** Every way an error can be shown: its text, inspection, JSON, and the same for each cause. */
export function shown(err: unknown): string {
  const parts: string[] = [];
  let current: unknown = err;
  for (let depth = 0; current !== undefined && current !== null && depth < 10; depth++) {
    parts.push(String(current), inspect(current, { depth: 10, showHidden: true }), JSON.stringify(current) ?? '');
    if (current instanceof Error) parts.push(current.message, current.stack ?? '');
    current = (current as { cause?: unknown }).cause;
  }
  return parts.join('\n');
}
