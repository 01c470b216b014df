--[[
  Appends a version iff the key's head is exactly the expected seqno, and announces the commit.

  The caller has checked that seqno > expected, and both are 19-digit strings, so comparing them
  here as strings is comparing seqnos. The registry is written only by the first commit to a key,
  so a mismatch never makes a key visible to listKeys.

  A commit is announced on the bucket's heads channel as the new seqno followed by the key's
  registry member. The channel carries the bucket's hash tag, so it is in this script's slot and a
  sharded message stays on this shard; it is an ARGV, not a KEY, because it is no key: declared
  as one, it would never exist, and while the slot migrates Redis would then redirect the script
  (ASK, TRYAGAIN) until the migration ended. The announcement is best effort (`redis.pcall`):
  pub/sub delivers at most once anyway, and a server without SPUBLISH must not fail a commit that
  has already been written; watchers re-read the head after any gap.

  Input:
    KEYS[1] versions  sorted set of 19-digit seqnos, all at score 0
    KEYS[2] data      hash seqno -> payload
    KEYS[3] registry  set of the keys of this bucket
    ARGV[1] expected  19-digit seqno, or '' for "the key has no data"
    ARGV[2] seqno     19-digit seqno of the new version
    ARGV[3] payload   bytes of the new version (never inspected: ioredis-mock passes it as userdata)
    ARGV[4] member    the key's registry member
    ARGV[5] heads     pub/sub channel of this bucket's commits
    ARGV[6] announce  'PUBLISH' (standalone, Sentinel), 'SPUBLISH' (Cluster) or '' (no announcement)
    ARGV[7] withHead  optional: '1' asks for the head with a mismatch (compareAndSetWithHead);
                      absent for the plain compareAndSet, whose replies stay 1 and 0

  Output:
    1                 committed (and announced as `<seqno><member>` on ARGV[5], unless ARGV[6] is '')
    0                 expectation mismatch; nothing changed, nothing announced (ARGV[7] absent)
    {}                expectation mismatch, the key has no data (ARGV[7] = '1')
    {seqno, payload}  expectation mismatch, the head that caused it, read in this same atomic
                      step (ARGV[7] = '1')
]]
--- @include "includes/headOf"

local rcall = redis.call
local versions, data, registry = KEYS[1], KEYS[2], KEYS[3]
local expected, seqno, payload, member = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local heads, announce, withHead = ARGV[5], ARGV[6], ARGV[7]

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
