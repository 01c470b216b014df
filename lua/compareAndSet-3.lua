--[[
  Appends a version iff the key's head is exactly the expected seqno.

  The caller has checked that next > expected, and both are 19-digit strings, so comparing them
  here as strings is comparing seqnos. The registry is written only by the first commit to a key,
  so a mismatch never makes a key visible to listKeys.

  Input:
    KEYS[1] versions  sorted set of 19-digit seqnos, all at score 0
    KEYS[2] data      hash seqno -> payload
    KEYS[3] registry  set of the keys of this bucket
    ARGV[1] expected  19-digit seqno, or '' for "the key has no data"
    ARGV[2] next      19-digit seqno of the new version
    ARGV[3] payload   bytes of the new version (never inspected: ioredis-mock passes it as userdata)
    ARGV[4] member    the key's registry member

  Output:
    1  committed
    0  expectation mismatch; nothing changed
]]
--- @include "includes/headOf"

local rcall = redis.call
local head = headOf(KEYS[1])
if head then
  if head ~= ARGV[1] then return 0 end
else
  if ARGV[1] ~= '' then return 0 end
  rcall('SADD', KEYS[3], ARGV[4])
end
rcall('ZADD', KEYS[1], 0, ARGV[2])
rcall('HSET', KEYS[2], ARGV[2], ARGV[3])
return 1
