--[[
  Appends a version iff the key's head is exactly the expected seqno, and announces the commit.

  The caller has checked that seqno > expected, and both are 19-digit strings, so comparing them
  here as strings is comparing seqnos. The registry is written only by the first commit to a key,
  so a mismatch never makes a key visible to listKeys.

  A commit is announced on the bucket's heads channel (a KEY, so that a Cluster checks it is in
  this slot and a sharded message stays on this shard) as the new seqno followed by the key's
  registry member. The announcement is best effort (`redis.pcall`): pub/sub delivers at most once
  anyway, and a server without SPUBLISH must not fail a commit that has already been written;
  watchers re-read the head after any gap.

  Input:
    KEYS[1] versions  sorted set of 19-digit seqnos, all at score 0
    KEYS[2] data      hash seqno -> payload
    KEYS[3] registry  set of the keys of this bucket
    KEYS[4] heads     pub/sub channel of this bucket's commits
    ARGV[1] expected  19-digit seqno, or '' for "the key has no data"
    ARGV[2] seqno     19-digit seqno of the new version
    ARGV[3] payload   bytes of the new version (never inspected: ioredis-mock passes it as userdata)
    ARGV[4] member    the key's registry member
    ARGV[5] announce  'PUBLISH' (standalone, Sentinel), 'SPUBLISH' (Cluster) or '' (no announcement)
    ARGV[6] withHead  optional: '1' asks for the head with a mismatch (compareAndSetWithHead);
                      absent for the plain compareAndSet, whose replies stay 1 and 0

  Output:
    1                 committed (and announced as `<seqno><member>` on KEYS[4], unless ARGV[5] is '')
    0                 expectation mismatch; nothing changed, nothing announced (ARGV[6] absent)
    {}                expectation mismatch, the key has no data (ARGV[6] = '1')
    {seqno, payload}  expectation mismatch, the head that caused it, read in this same atomic
                      step (ARGV[6] = '1')
]]
--- @include "includes/headOf"

local rcall = redis.call
local versions, data, registry, heads = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local expected, seqno, payload, member, announce, withHead = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]

local head = headOf(versions)
if head then
  if head ~= expected then
    -- Only a mismatch looks at withHead: the committing path does the same work as without it.
    if withHead == '1' then return {head, rcall('HGET', data, head)} end
    return 0
  end
else
  if expected ~= '' then
    if withHead == '1' then return {} end
    return 0
  end
  rcall('SADD', registry, member)
end
rcall('ZADD', versions, 0, seqno)
rcall('HSET', data, seqno, payload)
if announce ~= '' then redis.pcall(announce, heads, seqno .. member) end
return 1
