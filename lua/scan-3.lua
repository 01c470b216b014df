--[[
  Reads up to `limit` versions with seqno >= from, ascending, in one atomic step: a consistent
  snapshot in which every seqno comes with its payload. The bucket's epoch marker is checked first
  (includes/epoch.lua), as in head-3.lua. A read writes nothing.

  Input:
    KEYS[1] versions  sorted set of 19-digit seqnos, all at score 0
    KEYS[2] data      hash seqno -> payload
    KEYS[3] epoch     the bucket's epoch marker
    ARGV[1] from      19-digit seqno
    ARGV[2] limit     count as decimal digits (below 2^31), or '-1' for all
    ARGV[3] known     what the caller knows of the bucket's marker, or '' (includes/epoch.lua)

  Output:
    {}                                   nothing at or above `from`
    {seqnos, payloads_1, payloads_2 ...}  seqnos in order, then their payloads in chunks of 1,000
                                          (concatenated in order they line up with seqnos)
    -3, -5                               STORE_RESET, STORE_ROLLBACK: the epoch check refused
    {-4, marker, r}                      EPOCH envelope: `r` is one of the first two replies,
                                          `marker` the bucket's epoch marker for the caller to
                                          remember
]]
--- @include "includes/batches"
--- @include "includes/epoch"

local rcall = redis.call
local versions, data, epoch = KEYS[1], KEYS[2], KEYS[3]
local from, limit, known = ARGV[1], ARGV[2], ARGV[3]

local verdict, marker = checkEpoch(epoch, known, false)
local refusal = REFUSE[verdict]
if refusal then return refusal end
local reply = {}
local seqnos = rcall('ZRANGEBYLEX', versions, '[' .. from, '+', 'LIMIT', 0, limit)
if #seqnos > 0 then
  local chunks = {}
  for first, last in batches(#seqnos, 1000) do
    chunks[#chunks + 1] = rcall('HMGET', data, unpack(seqnos, first, last))
  end
  -- A table built with a constructor, not a self-filled one: ioredis-mock cannot return the latter.
  reply = {seqnos, unpack(chunks)}
end
if verdict == 'teach' and marker then return {EPOCH, marker, reply} end
return reply
