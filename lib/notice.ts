/**
 * Commit announcements (notices): what `compareAndSet-4.lua` publishes on a bucket's heads channel
 * for each commit, and how watches and followers read it back.
 *
 * Two forms, told apart by the byte after the seqno (a member is a JSON string, so it starts
 * with `"`):
 *
 *     plain    <seqno:19><member>                                        every version of the library
 *     carried  <seqno:19>+<previous:19><n:2><marker:n><member><payload>   payloads of at most
 *                                                                         watch.carryMaxBytes
 *
 * `previous` is the seqno the commit expected, i.e. the key's head just before it (19 spaces when
 * the key had no data): since a commit happens only on top of that head, and versions are only
 * ever appended above the head, no version lies between `previous` and `seqno`, then or later. A
 * follower that has yielded `previous` can yield a carried version without reading (follow.ts).
 *
 * `marker` is the bucket's epoch marker the writer sent with the commit (the script refuses a
 * commit whose marker is not the bucket's, so it is the bucket's marker at the commit); a writer
 * that knows none yet announces in the plain form. A watch or follower takes a carried version
 * only when that marker is the one its own store knows for the bucket: a store reset (or any
 * epoch change) then still reaches it through a read, which reports it, instead of a version of
 * the new history being taken for the next one of the old.
 *
 * Upgrades: a watch of an earlier version compares everything after the seqno with its member,
 * so it ignores a carried notice (no wrong read, but no wake-up either). That is why a carried
 * commit is also announced in the plain form while `watch.legacyAnnouncements` is on (the
 * default); newer watches then hear the same seqno twice and ignore the second, as not newer. A
 * newer watch reads the head on a plain notice, as before. JSON strings are prefix-free (a string
 * ends at its first unescaped quote), so a watch never takes another key's member for its own.
 */
import { SEQNO_WIDTH } from './seqno.js';

/** The byte after the seqno that marks a carried notice ('+'). */
const CARRIED = 0x2b;
/** `previous` of a first commit, which had nothing before it. */
const NO_PREVIOUS = ' '.repeat(SEQNO_WIDTH);
/** Where the member starts in a carried notice. */
const MARKER_LENGTH_AT = 2 * SEQNO_WIDTH + 1;
/** The longest marker a notice names (its length is two digits). */
const MAX_MARKER = 99;

/** A notice about one key, read back. Seqnos in their wire form (19 digits). */
export interface Notice {
  readonly seqno: string;
  /** For a carried notice: the head the commit was made on (`null`: the key had no data). */
  readonly previous?: string | null;
  /** For a carried notice: the bucket's epoch marker at the commit. */
  readonly marker?: string;
  /** For a carried notice: the committed payload. */
  readonly data?: Buffer;
}

/**
 * The head of the carried notice of a commit at `seqno` on top of `expected` ('' for a key with
 * no data), seqnos in wire form, in epoch `marker`: everything but the payload. On Redis the
 * script builds the same itself (compareAndSet-4.lua); this is for ioredis-mock, whose Lua cannot
 * append a binary payload, so the client sends it whole (`carriedNotice`). Undefined when the
 * marker cannot be named (none known, or too long): the commit is then announced plainly.
 */
export function carriedHeader(seqno: string, expected: string, marker: string, member: string): string | undefined {
  if (marker === '' || marker.length > MAX_MARKER || Buffer.byteLength(marker) !== marker.length) return undefined;
  return `${seqno}+${expected === '' ? NO_PREVIOUS : expected}${String(marker.length).padStart(2, '0')}${marker}${member}`;
}

/**
 * The whole carried notice, as the script publishes it. Sent by the client only to ioredis-mock,
 * whose Lua cannot concatenate a binary argument (the payload is never inspected in Lua there).
 */
export function carriedNotice(header: string, payload: Buffer): Buffer {
  return Buffer.concat([Buffer.from(header, 'utf8'), payload]);
}

/** What one watch or follower recognizes in messages: its key's member. */
export class NoticeReader {
  private readonly memberBytes: Buffer;

  constructor(private readonly member: string) {
    this.memberBytes = Buffer.from(member, 'utf8');
  }

  /** The notice, if `message` announces a commit to this key; undefined otherwise. */
  read(message: Buffer): Notice | undefined {
    if (message.length <= SEQNO_WIDTH) return undefined;
    const seqno = message.toString('latin1', 0, SEQNO_WIDTH);
    if (message[SEQNO_WIDTH] !== CARRIED) {
      return message.toString('utf8', SEQNO_WIDTH) === this.member ? { seqno } : undefined;
    }
    if (message.length < MARKER_LENGTH_AT + 2) return undefined;
    const markerAt = MARKER_LENGTH_AT + 2;
    const memberAt = markerAt + Number(message.toString('latin1', MARKER_LENGTH_AT, markerAt));
    const end = memberAt + this.memberBytes.length;
    if (!(end <= message.length) || !this.memberBytes.equals(message.subarray(memberAt, end))) return undefined;
    const previous = message.toString('latin1', SEQNO_WIDTH + 1, MARKER_LENGTH_AT);
    return {
      seqno, previous: previous === NO_PREVIOUS ? null : previous, marker: message.toString('latin1', markerAt, memberAt),
      // A copy: the version outlives the message, and must not pin the subscriber's buffers.
      data: Buffer.from(message.subarray(end)),
    };
  }
}
