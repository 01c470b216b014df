--[[
  Appends a version iff the key's head is exactly the expected seqno, and announces the commit.

  The caller has checked that seqno > expected, and both are 19-digit strings, so comparing them
  here as strings is comparing seqnos. The registry is written only by the first commit to a key,
  so a mismatch never makes a key visible to listKeys.

  A commit is announced on the bucket's heads channel as the new seqno followed by the key's
  registry member. Both are derived here from the KEYS rather than sent (issue 19: every argument
  costs the client encoding and Redis a copy, on every call): the channel is the registry's name
  with `heads` for `keys` (`<p>:{b}:keys` -> `<p>:{b}:heads`, ioredis's keyPrefix included, as
  the subscriber's channel is), the member what follows `<p>:{b}:v:` in the versions' name. The
  channel carries the bucket's hash tag, so it is in this script's slot and a sharded message
  stays on this shard; it is no KEY: declared as one, it would never exist, and while the slot
  migrates Redis would then redirect the script (ASK, TRYAGAIN) until the migration ended. The
  announcement is best effort (`redis.pcall`): pub/sub delivers at most once anyway, and a server
  without SPUBLISH must not fail a commit that has already been written; watchers re-read the
  head after any gap.

  The bucket's epoch marker is checked first (includes/epoch.lua): a caller that knew a marker which
  is gone or replaced is refused with STORE_RESET, and one that had seen commits the bucket no
  longer holds with STORE_ROLLBACK, nothing written but the bucket's mark, so that it cannot
  re-commit seqnos over a history that lost its data. Every commit counts itself in the marker with
  its tag (the end of ARGV[4]); the first commit in a bucket without a marker creates one. The
  marker is a declared KEY (it exists once the bucket has had a commit, so a migrating slot moves
  it with the rest).

  Input:
    KEYS[1] versions  sorted set of 19-digit seqnos, all at score 0: `<p>:{b}:v:<member>`
    KEYS[2] data      hash seqno -> payload
    KEYS[3] registry  set of the keys of this bucket: `<p>:{b}:keys`
    KEYS[4] epoch     the bucket's epoch marker
    ARGV[1] call      `<flags><seqno><expected>`: four flag bytes, then the 19-digit seqno of the
                      new version, then the 19-digit expected seqno or nothing for "the key has no
                      data". The flags, each '-' when off:
                        1 announce  'P' PUBLISH (standalone, Sentinel), 'S' SPUBLISH (Cluster)
                        2 withHead  'h' asks for the head with a mismatch (compareAndSetWithHead);
                                    off, the plain compareAndSet's replies stay 1 and 0
                        3 carry     'c' (issue 21) publishes the carried announcement,
                                    `<seqno>+<previous><n><epoch id><member><payload>`
                                    (lib/notice.ts), built here from the arguments and the bucket's
                                    marker after this commit, instead of the plain one
                        4 legacy    'l' (issue 21) publishes the plain announcement too, after the
                                    carried one, for watchers of earlier versions
    ARGV[2] payload   bytes of the new version (never inspected: ioredis-mock passes it as userdata)
    ARGV[3] known     what the caller knows of the bucket's marker, or '' (includes/epoch.lua)
    ARGV[4] head      the marker's head after this commit, as the caller expects it
                      (countNextCommit in includes/epoch.lua): `<id>|<n + 1>|<tag>`, or `<tag>`
                      alone when ARGV[3] has no count; `<tag>` is a fresh random 8 bytes without
                      '|', this commit's in the marker (and the id of the marker a first commit
                      creates)
    ARGV[5] heads     optional, for ioredis-mock only, whose Lua sees the KEYS without the
                      client's keyPrefix: the channel, as the subscriber names it
    ARGV[6] whole     optional, for ioredis-mock only, whose Lua cannot concatenate a binary
                      argument (it arrives as userdata): the whole carried announcement, or ''

  Output:
    1                 committed (and announced on the channel, unless no announce flag)
    0                 expectation mismatch; nothing changed, nothing announced (no withHead flag)
    {}                expectation mismatch, the key has no data (withHead flag)
    {seqno, payload}  expectation mismatch, the head that caused it, read in this same atomic
                      step (withHead flag)
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
local ANNOUNCE = {P = 'PUBLISH', S = 'SPUBLISH'}
local versions, data, registry, epoch = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local call, payload, known, nextHead, given, whole = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local seqno, expected = sub(call, 5, 23), sub(call, 24)

local verdict, marker = checkEpoch(epoch, known, true)
local refusal = REFUSE[verdict]
if refusal then return refusal end

local reply
local head = headOf(versions)
if head then
  if head ~= expected then
    -- Only a mismatch looks at withHead: the committing path does the same work as without it.
    if sub(call, 2, 2) == 'h' then reply = {head, rcall('HGET', data, head)} else reply = 0 end
  end
elseif expected ~= '' then
  if sub(call, 2, 2) == 'h' then reply = {} else reply = 0 end
else
  rcall('SADD', registry, sub(versions, #registry - 1))
end
if not reply then
  rcall('ZADD', versions, 0, seqno)
  rcall('HSET', data, seqno, payload)
  marker = countNextCommit(epoch, marker, verdict, known, nextHead)
  local announce = ANNOUNCE[sub(call, 1, 1)]
  if announce then
    local heads = given or (sub(registry, 1, #registry - 4) .. 'heads')
    local member = sub(versions, #registry - 1)
    -- Issue 21: a carried notice, then the plain one when there is none or when watchers of
    -- earlier versions must hear it. On Redis the payload is a string, sent once and appended
    -- here; on ioredis-mock it is userdata, and the caller sent the whole notice.
    local carried = false
    if sub(call, 3, 3) == 'c' then
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
    if not carried or sub(call, 4, 4) == 'l' then redis.pcall(announce, heads, seqno .. member) end
  end
  reply = 1
end
if verdict == 'teach' and marker then return {EPOCH, marker, reply} end
return reply
