--[[
  The lease record (lease-5.lua writes it, leaseRead-4.lua reads it) and the clock both read it by.

  leaseClock(given) -> sec, usec, now: the server's TIME (seconds and microseconds, as text), and
  `now` in microseconds as a float (exact far beyond these values, in Lua 5.1 and in ioredis-mock's
  Lua 5.3, whose integers are 32-bit); `given` is '' for TIME, or '<sec> <usec>' from the caller
  (ioredis-mock, whose TIME rounds seconds and takes microseconds from another clock).

  leaseRecordOf(payload) -> { state, token, expires (microseconds), owner }, or false when the
  payload is not a lease record: `rcl1|<state>|<token>|<sec>|<usec>|<ttlMs>|<owner>|<name>`.
]]
local function leaseClock(given)
  local sec, usec
  if given ~= '' then
    sec, usec = string.match(given, '^(%d+) (%d+)$')
  else
    local t = redis.call('TIME')
    sec, usec = t[1], t[2]
  end
  -- 1e6 is a float literal: the product is a float in Lua 5.3 too.
  return sec, usec, tonumber(sec) * 1e6 + tonumber(usec)
end

local function leaseRecordOf(payload)
  if type(payload) ~= 'string' then return false end
  local state, token, sec, usec, ttl, holder =
    string.match(payload, '^rcl1|(%a+)|(%d+)|(%d+)|(%d+)|(%d+)|([^|]*)|')
  if not state then return false end
  return { state = state, token = token, expires = tonumber(sec) * 1e6 + tonumber(usec) + tonumber(ttl) * 1e3,
    owner = holder }
end
