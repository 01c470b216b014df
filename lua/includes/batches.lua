--[[
  batches(n, size): iterates over [1, n] in ranges of at most `size`, yielding (from, to).
  Long argument lists go to redis.call in such chunks: Redis's Lua cannot unpack much more than
  about 8,000 values at once.
]]
local function batches(n, size)
  local from = 1
  return function()
    if from > n then return nil end
    local to = math.min(from + size - 1, n)
    local this = from
    from = to + 1
    return this, to
  end
end
