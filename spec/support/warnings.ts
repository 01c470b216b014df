/**
 * Process warnings a test provokes on purpose (a throwing observer, an evicting server): recorded
 * for the test to assert on instead of printed, so that `npm test` shows only warnings nobody
 * expected. A warning that does not match is still printed by Node's own handler.
 */

/** The warnings recorded since `captureWarnings`; `stop()` restores Node's printing. */
export interface CapturedWarnings {
  /** Every warning seen (expected or not), in order. */
  readonly warnings: Error[];
  /** Waits for warnings still queued (Node emits them on a later tick), then stops capturing; idempotent. */
  stop(): Promise<void>;
}

/** Records warnings whose message matches `expected` without printing them; prints the others. */
export function captureWarnings(expected: RegExp): CapturedWarnings {
  const printers = process.listeners('warning');
  for (const printer of printers) process.off('warning', printer);
  const warnings: Error[] = [];
  const record = (warning: Error): void => {
    warnings.push(warning);
    if (!expected.test(warning.message)) for (const printer of printers) printer.call(process, warning);
  };
  process.on('warning', record);
  let stopped = false;
  return {
    warnings,
    async stop() {
      if (stopped) return;
      stopped = true;
      await new Promise((resolve) => setImmediate(resolve));
      process.off('warning', record);
      for (const printer of printers) process.on('warning', printer);
    },
  };
}

/**
 * Mutes `console.warn` lines matching `expected` (e.g. ioredis's "Skipping the ready check" for a
 * user denied INFO on purpose) until `restore()`, which prints one line saying how many were muted.
 */
export function muteConsoleWarnings(expected: RegExp, label: string): { restore(): void } {
  const original = console.warn;
  let muted = 0;
  console.warn = (...args: unknown[]): void => {
    if (typeof args[0] === 'string' && expected.test(args[0])) muted++;
    else original.apply(console, args);
  };
  return {
    restore() {
      if (console.warn === original) return;
      console.warn = original;
      if (muted > 0) console.log(`    (expected, muted: ${muted} × ${label})`);
    },
  };
}
