--[[
  Reads a key's lease as the server sees it now: the head, its record's time left by this server's
  clock (TIME), and how many live waiters are queued. Writes nothing, so it runs as EVALSHA_RO for a
  user with read access only (lib/read-only.ts); stale waiters are counted out, not removed.

  The bucket's epoch marker is checked first (includes/epoch.lua), as in head-3.lua.

  Input:
    KEYS[1] versions  sorted set of 19-digit seqnos, all at score 0
    KEYS[2] data      hash seqno -> payload
    KEYS[3] epoch     the bucket's epoch marker
    KEYS[4] waiters   hash owner -> queue entry (lease-5.lua)
    ARGV[1] known     what the caller knows of the bucket's marker, or '' (includes/epoch.lua)
    ARGV[2] now       '' to use TIME, or '<sec> <usec>' from the caller (ioredis-mock)

  Output:
    {}                                     the key has no data
    {head, payload, remainingMs, waiting}  the head, the ms left before its lease expires (-1 when
                                           it is not held or not a lease record), and how many
                                           live waiters are queued
    -3, -5            STORE_RESET, STORE_ROLLBACK: the epoch check refused
    {-4, marker, r}   EPOCH envelope: `r` is one of the first two replies, `marker` the bucket's
                      epoch marker for the caller to remember
]]
--- @include "includes/headOf"
--- @include "includes/epoch"
--- @include "includes/leaseRecord"

local rcall = redis.call
local versions, data, epoch, waiters = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local known, given = ARGV[1], ARGV[2]

local verdict, marker = checkEpoch(epoch, known, false)
local refusal = REFUSE[verdict]
if refusal then return refusal end

local reply = {}
local head = headOf(versions)
if head then
  local _, _, now = leaseClock(given)
  local payload = rcall('HGET', data, head)
  local record = leaseRecordOf(payload)
  local remaining = -1
  if record and record.state == 'held' and now < record.expires then
    remaining = math.ceil((record.expires - now) / 1000)
  end
  local entries = rcall('HGETALL', waiters)
  local waiting = 0
  for i = 2, #entries, 2 do
    local ss, su, ttl = string.match(entries[i], '^%d+ %d+ (%d+) (%d+) (%d+)$')
    if ss and tonumber(ss) * 1e6 + tonumber(su) + tonumber(ttl) * 1e3 > now then waiting = waiting + 1 end
  end
  reply = {head, payload, remaining, waiting}
end
if verdict == 'teach' and marker then return {EPOCH, marker, reply} end
return reply
