--[[
  headOf(versions): the highest seqno in a versions sorted set, or false when it is empty.
  Every member has score 0, so rank order is byte order, which for fixed-width seqnos is numeric.
]]
local function headOf(versions)
  return redis.call('ZRANGE', versions, -1, -1)[1] or false
end
