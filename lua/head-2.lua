--[[
  Reads the latest version of a key in one atomic step, so its seqno never comes without its data.

  Input:
    KEYS[1] versions  sorted set of 19-digit seqnos, all at score 0
    KEYS[2] data      hash seqno -> payload

  Output:
    {}                 the key has no data
    {seqno, payload}   the latest version
]]
--- @include "includes/headOf"

local versions, data = KEYS[1], KEYS[2]

local head = headOf(versions)
if not head then return {} end
return {head, redis.call('HGET', data, head)}
