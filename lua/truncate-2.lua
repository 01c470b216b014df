--[[
  Deletes every version with a seqno below `seqno`, iff `seqno` is at most the head. The head
  itself is never deleted, so a key that once had data never becomes empty.

  Input:
    KEYS[1] versions  sorted set of 19-digit seqnos, all at score 0
    KEYS[2] data      hash seqno -> payload
    ARGV[1] seqno     19-digit seqno

  Output:
    n >= 0  how many versions were deleted
    -1      the key has no data; nothing changed
    -2      seqno is above the head; nothing changed
]]
--- @include "includes/headOf"
--- @include "includes/batches"

local rcall = redis.call
local head = headOf(KEYS[1])
if not head then return -1 end
if ARGV[1] > head then return -2 end
local doomed = rcall('ZRANGE', KEYS[1], '-', '(' .. ARGV[1], 'BYLEX')
local count = #doomed
if count == 0 then return 0 end
-- The doomed seqnos are the lowest ranks (ZREMRANGEBYLEX would do, but ioredis-mock lacks it).
rcall('ZREMRANGEBYRANK', KEYS[1], 0, count - 1)
for from, to in batches(count, 1000) do
  rcall('HDEL', KEYS[2], unpack(doomed, from, to))
end
return count
