/**
 * What the CLI prints: payloads in the chosen encoding, `--json` lines, the stats table, and
 * progress on stderr. Commands decide what to say; this module decides how it looks.
 */
import type { LeaseState } from '../lease-record.js';
import type { StoreResetAcknowledgement, VersionedData } from '../types.js';

export const ENCODINGS = ['utf8', 'hex', 'base64'] as const;
export type Encoding = (typeof ENCODINGS)[number];

/** How lines look: set by `--json` and `--encoding`. */
export interface Format {
  readonly json: boolean;
  readonly encoding: Encoding;
}

/** How often, in keys, `keys` and `stats` report progress. */
export const PROGRESS_EVERY = 1000;

/** One key's share of the store. */
export interface KeyStats {
  key: string;
  versions: number;
  bytes: number;
}

/** What `stats` reports; with `--json` it is printed as is, in this field order. */
export interface StoreStats {
  keys: number;
  versions: number;
  payloadBytes: number;
  /** The largest histories, largest first. */
  largest: KeyStats[];
}

export function keyLine(key: string, format: Format): string {
  return format.json ? JSON.stringify({ key }) : key;
}

export function versionLine(version: VersionedData, format: Format): string {
  const data = Buffer.from(version.data.buffer, version.data.byteOffset, version.data.byteLength)
    .toString(format.encoding);
  if (format.json) {
    return JSON.stringify({ seqno: version.seqno.toString(), bytes: version.data.byteLength, data });
  }
  return `${version.seqno}\t${data}`;
}

export function deletedLine(key: string, seqno: bigint, deleted: number, format: Format): string {
  return format.json
    ? JSON.stringify({ key, seqno: seqno.toString(), deleted })
    : `deleted ${deleted} version${deleted === 1 ? '' : 's'} of key ${JSON.stringify(key)} below seqno ${seqno}`;
}

/** What `ack-reset` did, as `acknowledgeStoreReset` reports it. */
export function acknowledgedLine(acknowledged: StoreResetAcknowledgement, format: Format): string {
  if (format.json) return JSON.stringify(acknowledged);
  return `acknowledged: wrote a fresh epoch marker into all ${acknowledged.buckets} buckets; ` +
    `${acknowledged.reset} had been marked reset, ${acknowledged.rolledBack} rolled back, ${acknowledged.unmarked} had no marker`;
}

/** A lease as `readLease` reports it; `lease.record` is not null. */
export function leaseLine(key: string, lease: LeaseState, format: Format): string {
  const record = lease.record!;
  if (format.json) {
    return JSON.stringify({
      key, held: lease.held, state: record.state, token: record.token.toString(), owner: record.owner, name: record.name,
      remainingMs: lease.remainingMs, waiting: lease.waiting, seqno: lease.head.seqno.toString(),
    });
  }
  const holder = `${JSON.stringify(record.name)} (owner ${record.owner}), token ${record.token}`;
  if (lease.held) return `held by ${holder}, ${lease.remainingMs} ms left, ${lease.waiting} waiting`;
  const last = record.state === 'free' ? 'released' : 'expired';
  return `free: last held by ${holder}, ${last}; ${lease.waiting} waiting`;
}

export function pongLine(ms: number, format: Format): string {
  return format.json ? JSON.stringify({ ok: true, ms }) : `PONG ${ms.toFixed(3)} ms`;
}

export function statsLines(stats: StoreStats, format: Format): string[] {
  if (format.json) return [JSON.stringify(stats)];
  const lines = [
    `keys           ${stats.keys}`,
    `versions       ${stats.versions}`,
    `payload bytes  ${stats.payloadBytes}`,
  ];
  if (stats.largest.length === 0) return lines;
  const versionsWidth = Math.max(8, ...stats.largest.map((key) => String(key.versions).length));
  const bytesWidth = Math.max(5, ...stats.largest.map((key) => String(key.bytes).length));
  lines.push('largest histories:', `  ${'versions'.padStart(versionsWidth)}  ${'bytes'.padStart(bytesWidth)}  key`);
  for (const key of stats.largest) {
    lines.push(`  ${String(key.versions).padStart(versionsWidth)}  ${String(key.bytes).padStart(bytesWidth)}  ` +
      JSON.stringify(key.key));
  }
  return lines;
}

/** Writes lines to stdout, waiting when the pipe is full so a slow reader bounds memory. */
export class Output {
  async line(text: string): Promise<void> {
    if (!process.stdout.write(`${text}\n`)) {
      await new Promise<void>((resolve) => process.stdout.once('drain', resolve));
    }
  }
}

/** How often a terminal's running count is rewritten. */
const TERMINAL_EVERY_MS = 200;

/**
 * A running count on stderr. On a terminal it is rewritten in place every ${TERMINAL_EVERY_MS} ms
 * and on by default, except while the command's own lines go to that terminal too (`keys`
 * printing keys): they would tear it. Asked for with --progress off a terminal, it is one line
 * every PROGRESS_EVERY items, for logs.
 */
export class Progress {
  private readonly enabled: boolean;
  private readonly tty: boolean;
  private shownAt = 0;

  constructor(requested: boolean, private readonly unit: string, options: { printsToStdout: boolean }) {
    this.tty = process.stderr.isTTY === true;
    this.enabled = requested || (this.tty && !(options.printsToStdout && process.stdout.isTTY === true));
  }

  update(count: number): void {
    if (!this.enabled) return;
    if (!this.tty) {
      if (count % PROGRESS_EVERY === 0) process.stderr.write(`progress: ${count} ${this.unit}\n`);
      return;
    }
    const now = Date.now();
    if (now - this.shownAt < TERMINAL_EVERY_MS) return;
    this.shownAt = now;
    process.stderr.write(`\r${count} ${this.unit}...`);
  }

  done(count: number): void {
    if (!this.enabled) return;
    // On a terminal: the line cleared, then the total.
    process.stderr.write(this.tty ? `\r\u001b[K${count} ${this.unit}\n` : `progress: ${count} ${this.unit}, done\n`);
  }
}
