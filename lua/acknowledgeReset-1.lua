--[[
  Acknowledges a reset or a rollback of the store in one bucket: writes a fresh 'ack:' epoch marker
  (includes/epoch.lua), whatever the bucket held. Every client adopts an 'ack:' marker on its next
  call in the bucket, whichever marker it knew, so writers refused since the reset go on.

  Input:
    KEYS[1] epoch  the bucket's epoch marker
    ARGV[1] id     a fresh random id, without '|'

  Output:
    0  the bucket had no marker
    1  the bucket had a marker in use ('first:' or 'ack:')
    2  the bucket was marked reset: a writer had found its marker gone or replaced
    3  the bucket was marked rolled back: a writer had found commits it had seen gone
]]
local epoch, id = KEYS[1], ARGV[1]

local before = redis.call('GET', epoch)
redis.call('SET', epoch, 'ack:' .. id)
if type(before) ~= 'string' then return 0 end
if string.sub(before, 1, 6) == 'reset:' then return 2 end
if string.sub(before, 1, 9) == 'rollback:' then return 3 end
return 1
