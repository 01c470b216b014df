--[[
  Reads up to `limit` versions with seqno >= from, ascending, in one atomic step: a consistent
  snapshot in which every seqno comes with its payload.

  Input:
    KEYS[1] versions  sorted set of 19-digit seqnos, all at score 0
    KEYS[2] data      hash seqno -> payload
    ARGV[1] from      19-digit seqno
    ARGV[2] limit     count as decimal digits (below 2^31), or '-1' for all

  Output:
    {}                                   nothing at or above `from`
    {seqnos, payloads_1, payloads_2 ...}  seqnos in order, then their payloads in chunks of 1,000
                                          (concatenated in order they line up with seqnos)
]]
--- @include "includes/batches"

local rcall = redis.call
local versions, data = KEYS[1], KEYS[2]
local from, limit = ARGV[1], ARGV[2]

local seqnos = rcall('ZRANGEBYLEX', versions, '[' .. from, '+', 'LIMIT', 0, limit)
if #seqnos == 0 then return {} end
local chunks = {}
for first, last in batches(#seqnos, 1000) do
  chunks[#chunks + 1] = rcall('HMGET', data, unpack(seqnos, first, last))
end
-- A table built with a constructor, not a self-filled one: ioredis-mock cannot return the latter.
return {seqnos, unpack(chunks)}
