--[[
  Reads the latest version of a key in one atomic step, so its seqno never comes without its data.
  The bucket's epoch marker is checked first (includes/epoch.lua): a caller whose marker is gone or
  replaced, or that saw commits the bucket no longer holds, is refused, so that it never takes an empty store for its own. A read writes nothing.

  Input:
    KEYS[1] versions  sorted set of 19-digit seqnos, all at score 0
    KEYS[2] data      hash seqno -> payload
    KEYS[3] epoch     the bucket's epoch marker
    ARGV[1] known     what the caller knows of the bucket's marker, or '' (includes/epoch.lua)

  Output:
    {}                 the key has no data
    {seqno, payload}   the latest version
    -3, -5             STORE_RESET, STORE_ROLLBACK: the epoch check refused
    {-4, marker, r}    EPOCH envelope: `r` is one of the first two replies, `marker` the bucket's
                       epoch marker for the caller to remember
]]
--- @include "includes/headOf"
--- @include "includes/epoch"

local versions, data, epoch = KEYS[1], KEYS[2], KEYS[3]
local known = ARGV[1]

local verdict, marker = checkEpoch(epoch, known, false)
local refusal = REFUSE[verdict]
if refusal then return refusal end
local reply = {}
local head = headOf(versions)
if head then reply = {head, redis.call('HGET', data, head)} end
if verdict == 'teach' and marker then return {EPOCH, marker, reply} end
return reply
