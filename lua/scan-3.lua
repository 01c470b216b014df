--[[
  Reads one bounded step of a scan: up to `limit` versions with from <= seqno <= to, ascending,
  whose payloads add up to at most `maxBytes` (the first version always comes, whatever its size),
  so that no call holds Redis for long or builds a large reply. The client calls it again from the
  seqno after the last one it got, until it has what it asked for (lib/history.ts).

  A scan of several steps is one snapshot: the first step reports the head, later steps read up to
  that head only (commits made since are not in the result), and each later step names the last
  seqno the caller got (`after`): versions are immutable and only truncate removes them, always a
  prefix, so while `after` is still stored no version above it was removed. When it is gone a
  truncate ran in between and may have removed versions not read yet: the step reports TRUNCATED.
  The bucket's epoch marker is checked first (includes/epoch.lua), as in head-3.lua. A read writes
  nothing.

  Input:
    KEYS[1] versions  sorted set of 19-digit seqnos, all at score 0
    KEYS[2] data      hash seqno -> payload
    KEYS[3] epoch     the bucket's epoch marker
    ARGV[1] from      19-digit seqno: the lowest wanted
    ARGV[2] to        19-digit seqno: the highest wanted (a later step: the head the first saw), or '' for no bound
    ARGV[3] after     19-digit seqno the caller got last, which must still be stored; '' on a first step
    ARGV[4] limit     most versions to return, decimal digits in [1, 2^31)
    ARGV[5] maxBytes  most payload bytes to return (at least one version is returned), decimal digits
    ARGV[6] known     what the caller knows of the bucket's marker, or '' (includes/epoch.lua)

  Output:
    {}                                         nothing in [from, to]
    {seqnos, head, payloads_1, payloads_2 ...}  seqnos in order; the key's head seqno; their payloads
                                                in chunks of 1,000 (concatenated in order they line
                                                up with seqnos)
    -1                                         TRUNCATED: `after` is no longer stored
    -3, -5                                     STORE_RESET, STORE_ROLLBACK: the epoch check refused
    {-4, marker, r}                            EPOCH envelope: `r` is one of the replies above,
                                                `marker` the bucket's epoch marker for the caller
                                                to remember
]]
--- @include "includes/headOf"
--- @include "includes/batches"
--- @include "includes/epoch"

local rcall = redis.call
local versions, data, epoch = KEYS[1], KEYS[2], KEYS[3]
local from, to, after, limit, maxBytes, known = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6]
local TRUNCATED = -1

-- The step itself, as a function: its reply may have to go into an epoch envelope.
local function scan()
  if after ~= '' and not rcall('ZSCORE', versions, after) then return TRUNCATED end
  local max = '+'
  if to ~= '' then max = '[' .. to end
  local seqnos = rcall('ZRANGEBYLEX', versions, '[' .. from, max, 'LIMIT', 0, limit)
  local n = #seqnos
  if n == 0 then return {} end
  -- HSTRLEN, not the payloads' length: ioredis-mock's Lua cannot measure a binary value.
  local count, bytes = 0, 0
  for i = 1, n do
    bytes = bytes + rcall('HSTRLEN', data, seqnos[i])
    if bytes > maxBytes and i > 1 then break end
    count = i
  end
  if count < n then seqnos = rcall('ZRANGEBYLEX', versions, '[' .. from, max, 'LIMIT', 0, count) end
  local chunks = {}
  for first, last in batches(count, 1000) do
    chunks[#chunks + 1] = rcall('HMGET', data, unpack(seqnos, first, last))
  end
  -- A table built with a constructor, not a self-filled one: ioredis-mock cannot return the latter.
  return {seqnos, headOf(versions), unpack(chunks)}
end

local verdict, marker = checkEpoch(epoch, known, false)
local refusal = REFUSE[verdict]
if refusal then return refusal end
local reply = scan()
if verdict == 'teach' and marker then return {EPOCH, marker, reply} end
return reply
