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

  The bucket's epoch marker is checked first (includes/epoch.lua): a caller that knew a marker which
  is gone or replaced is refused with STORE_RESET, and one that had seen commits the bucket no
  longer holds with STORE_ROLLBACK, nothing written but the bucket's mark, so that it cannot
  re-commit seqnos over a history that lost its data. Every commit counts itself in the marker with
  its tag (ARGV[8]); the first commit in a bucket without a marker creates one. The marker is a
  declared KEY (it exists once the bucket has had a commit, so a migrating slot moves it with the
  rest).

  Input:
    KEYS[1] versions  sorted set of 19-digit seqnos, all at score 0
    KEYS[2] data      hash seqno -> payload
    KEYS[3] registry  set of the keys of this bucket
    KEYS[4] epoch     the bucket's epoch marker
    ARGV[1] expected  19-digit seqno, or '' for "the key has no data"
    ARGV[2] seqno     19-digit seqno of the new version
    ARGV[3] payload   bytes of the new version (never inspected: ioredis-mock passes it as userdata)
    ARGV[4] member    the key's registry member
    ARGV[5] heads     pub/sub channel of this bucket's commits
    ARGV[6] announce  'PUBLISH' (standalone, Sentinel), 'SPUBLISH' (Cluster) or '' (no announcement)
    ARGV[7] known     what the caller knows of the bucket's marker, or '' (includes/epoch.lua)
    ARGV[8] tag       a fresh random tag of 8 bytes, without '|': this commit's in the marker (and
                      the id of the marker a first commit creates)
    ARGV[9] withHead  '1' asks for the head with a mismatch (compareAndSetWithHead); '' or
                      absent for the plain compareAndSet, whose replies stay 1 and 0
    ARGV[10] carry    optional (issue 21): '1' publishes the carried announcement,
                      `<seqno>+<previous><n><epoch id><member><payload>` (lib/notice.ts), built here
                      from the arguments above and the bucket's marker after this commit, instead of
                      the plain one; '' or absent: the plain one
    ARGV[11] legacy   optional (issue 21): '1' publishes the plain announcement too, after the
                      carried one, for watchers of earlier versions
    ARGV[12] whole    optional (issue 21): the whole carried announcement, for ioredis-mock only,
                      whose Lua cannot concatenate a binary argument (it arrives as userdata)

  Output:
    1                 committed (and announced as `<seqno><member>` and/or ARGV[10] on ARGV[5], unless
                      ARGV[6] is '')
    0                 expectation mismatch; nothing changed, nothing announced (ARGV[9] absent)
    {}                expectation mismatch, the key has no data (ARGV[9] = '1')
    {seqno, payload}  expectation mismatch, the head that caused it, read in this same atomic
                      step (ARGV[9] = '1')
    -3                STORE_RESET: the epoch check refused; the key unchanged, nothing announced
    -5                STORE_ROLLBACK: the epoch check refused; the key unchanged, nothing announced
    {-4, marker, r}   EPOCH envelope: `r` is one of the replies above, `marker` the bucket's epoch
                      marker value for the caller to learn from (it knew none, or less than the
                      bucket holds, or an acknowledgement replaced it). Without an envelope, a
                      commit counted itself on the marker the caller knew.
]]
--- @include "includes/headOf"
--- @include "includes/epoch"

local rcall = redis.call
-- `previous` of a key's first commit in a carried notice: 19 spaces (lib/notice.ts).
local NO_PREVIOUS = '                   '
local versions, data, registry, epoch = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local expected, seqno, payload, member = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local heads, announce, known, tag, withHead = ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local carry, legacy, whole = ARGV[10], ARGV[11], ARGV[12]

local verdict, marker = checkEpoch(epoch, known, true)
local refusal = REFUSE[verdict]
if refusal then return refusal end

local reply
local head = headOf(versions)
if head then
  if head ~= expected then
    -- Only a mismatch looks at withHead: the committing path does the same work as without it.
    if withHead == '1' then reply = {head, rcall('HGET', data, head)} else reply = 0 end
  end
elseif expected ~= '' then
  if withHead == '1' then reply = {} else reply = 0 end
else
  rcall('SADD', registry, member)
end
if not reply then
  rcall('ZADD', versions, 0, seqno)
  rcall('HSET', data, seqno, payload)
  marker = countCommit(epoch, marker, tag)
  if announce ~= '' then
    -- Issue 21: a carried notice, then the plain one when there is none or when watchers of
    -- earlier versions must hear it. On Redis the payload is a string, sent once and appended
    -- here; on ioredis-mock it is userdata, and the caller sent the whole notice.
    local carried = false
    if carry == '1' then
      if type(payload) == 'string' then
        -- The epoch id: the marker up to its commit count (includes/epoch.lua), the same for
        -- every process that knows the bucket's epoch.
        local id = string.match(marker, '^[^|]*')
        local previous = expected
        if previous == '' then previous = NO_PREVIOUS end
        redis.pcall(announce, heads, seqno .. '+' .. previous .. string.format('%02d', #id) .. id .. member .. payload)
        carried = true
      elseif whole ~= nil and whole ~= '' then
        redis.pcall(announce, heads, whole)
        carried = true
      end
    end
    if not carried or legacy == '1' then redis.pcall(announce, heads, seqno .. member) end
  end
  reply = 1
end
if verdict == 'teach' and marker then return {EPOCH, marker, reply} end
return reply
