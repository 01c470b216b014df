--[[
  Deletes versions with a seqno below `upper`, the oldest first, at most `step` of them, iff
  `upper` is at most the head. The head itself is never deleted, so a key that once had data never
  becomes empty. The client calls it again until a call deletes fewer than `step` (lib/history.ts):
  each call holds the Redis main thread (and every other client) for a bounded time, and since
  what remains is always "every version below `upper`", a call after an interrupted truncate
  simply finishes the job.

  When most of a long history goes and the survivors are at most `step` / 5 (copying a version
  costs several times deleting one), they are copied into fresh keys and the old ones are
  UNLINKed, which frees them on a background thread: one call.

  The bucket's epoch marker is checked first (includes/epoch.lua), as in compareAndSet-4.lua: a
  caller that knew a marker which is gone or replaced, or saw commits the bucket no longer holds, is
  refused and the bucket marked. A truncate is not counted as a commit. A
  truncate in a bucket without a marker (data from before markers existed) creates one.

  Input:
    KEYS[1] versions  sorted set of 19-digit seqnos, all at score 0
    KEYS[2] data      hash seqno -> payload
    KEYS[3] epoch     the bucket's epoch marker
    ARGV[1] upper     19-digit seqno: versions below it go
    ARGV[2] known     what the caller knows of the bucket's marker, or '' (includes/epoch.lua)
    ARGV[3] newEpoch  when ARGV[2] is '': a fresh random id, for the marker this call may create
    ARGV[4] step      most versions to delete (or to copy) in this call, decimal digits in [1, 2^31)

  Output:
    n >= 0           how many versions were deleted; n < step: none below `upper` is left
    -1               the key has no data; nothing changed
    -2               upper is above the head; nothing changed
    -3, -5           STORE_RESET, STORE_ROLLBACK: the epoch check refused; no version deleted
    {-4, marker, r}  EPOCH envelope: `r` is one of the replies above, `marker` the bucket's epoch
                     marker for the caller to remember
]]
--- @include "includes/headOf"
--- @include "includes/batches"
--- @include "includes/epoch"

local rcall = redis.call
local versions, data, epoch = KEYS[1], KEYS[2], KEYS[3]
local upper, known, newEpoch, step = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])

-- The truncate itself, as a function: its reply may have to go into an epoch envelope.
local function truncate()
  local head = headOf(versions)
  if not head then return -1 end
  if upper > head then return -2 end
  -- Every member has score 0, so ranks are in seqno order: the doomed are ranks [0, count).
  -- `upper` <= head, so it or a later seqno is a member (ZLEXCOUNT would do, but ioredis-mock lacks it).
  local first = upper
  local count = rcall('ZRANK', versions, first)
  if type(count) ~= 'number' then
    first = rcall('ZRANGEBYLEX', versions, '[' .. first, '+', 'LIMIT', 0, 1)[1]
    count = rcall('ZRANK', versions, first)
  end
  if count == 0 then return 0 end
  local kept = rcall('ZCARD', versions) - count

  if count >= 1000 and kept * 4 <= count and kept * 5 <= step then
    local seqnos = rcall('ZRANGE', versions, count, -1)
    local payloads = {}
    for from, to in batches(kept, 1000) do
      local chunk = rcall('HMGET', data, unpack(seqnos, from, to))
      for i = 1, to - from + 1 do payloads[from + i - 1] = chunk[i] end
    end
    rcall('UNLINK', versions, data)
    for from, to in batches(kept, 1000) do
      local members = {}
      local fields = {}
      for i = from, to do
        members[#members + 1] = 0
        members[#members + 1] = seqnos[i]
        fields[#fields + 1] = seqnos[i]
        fields[#fields + 1] = payloads[i]
      end
      rcall('ZADD', versions, unpack(members))
      rcall('HSET', data, unpack(fields))
    end
    return count
  end

  count = math.min(count, step)
  local doomed = rcall('ZRANGE', versions, 0, count - 1)
  rcall('ZREMRANGEBYRANK', versions, 0, count - 1)
  for from, to in batches(count, 1000) do
    rcall('HDEL', data, unpack(doomed, from, to))
  end
  return count
end

local verdict, marker = checkEpoch(epoch, known, true)
local refusal = REFUSE[verdict]
if refusal then return refusal end
local reply = truncate()
if verdict == 'teach' and not marker and reply >= 0 then marker = createEpoch(epoch, newEpoch) end
if verdict == 'teach' and marker then return {EPOCH, marker, reply} end
return reply
