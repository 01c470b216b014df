--[[
  The store epoch: how a script notices that the data set under it was reset (a Redis restarted
  without persistence, FLUSHALL, the store's keys deleted), instead of letting a writer commit
  seqnos from 0 again over a history it believed settled.

  Each bucket has a marker key (`p:{b}:epoch`, in the bucket's slot) whose value is one of:
    'first:<id>'   written by the first commit (or truncate) in the bucket, `<id>` random, from the
                   client that made it
    'ack:<id>'     written by an acknowledgement of a reset (acknowledgeReset-1.lua): adopted by
                   every client, whatever marker it knew
    'reset:<m>'    written by a writer that knew marker `<m>` and found it gone or replaced: the
                   bucket refuses every call, from any client, until an acknowledgement
  A reset deletes the marker with everything else. The client passes the marker it learned for the
  bucket (or '' when it knows none), and learns it from the envelope a script replies in when the
  client should (see checkEpoch). Keeping the marker costs one GET per call.

  STORE_RESET  reply of any script that refused the call: nothing was done (a write may have
               marked the bucket reset)
  EPOCH        first element of an envelope {EPOCH, marker, reply}: `reply` is the script's usual
               reply, and `marker` is the bucket's marker for the client to remember. No usual
               reply is a table that starts with a number, so an envelope is never mistaken for one.
]]
local STORE_RESET = -3
local EPOCH = -4

--[[
  checkEpoch(key, known, write) -> verdict, marker
    key     the bucket's marker key
    known   the marker the client knows, or '' when it knows none
    write   true in a script that writes: a refusal then marks the bucket reset
  verdicts:
    'go'      the marker is the one the client knows: go on, reply as usual
    'teach'   go on, and reply in an envelope with `marker`: the client knows none, or an
              acknowledgement replaced the one it knows. `marker` is false when the bucket has
              none yet (a fresh store, or data from before markers existed): a write that
              commits then creates it (createEpoch), a read has nothing to teach
    'reset'   refuse with STORE_RESET: the marker the client knows is gone or was replaced by
              one no acknowledgement wrote, or the bucket is marked reset
]]
local function checkEpoch(key, known, write)
  local marker = redis.call('GET', key)
  -- The common case first: `known` is never '' when it equals a marker read back.
  if marker == known then return 'go', marker end
  if type(marker) ~= 'string' then marker = false end
  if marker and string.sub(marker, 1, 6) == 'reset:' then return 'reset', marker end
  if known == '' or (marker and string.sub(marker, 1, 4) == 'ack:') then return 'teach', marker end
  if write then redis.call('SET', key, 'reset:' .. known) end
  return 'reset', marker
end

--[[
  createEpoch(key, id) -> marker: writes the bucket's first marker, after a commit in a bucket that
  had none (checkEpoch said 'teach' with no marker, so the client passed a fresh `id`).
]]
local function createEpoch(key, id)
  local marker = 'first:' .. id
  redis.call('SET', key, marker)
  return marker
end
