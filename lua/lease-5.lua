--[[
  A lease on a consensus key: acquire, renew, release, or leave the wait queue, each one
  atomic step that reads the server's clock (TIME) and the key's head together, so that whether a
  lease has expired is decided by this server's clock alone, and every change of ownership is a
  compare-and-set on the head (`expected`): exactly one caller wins each seqno.

  Ownership and expiry are versions of the key. Each write appends the version `ARGV[3]` whose
  payload is a lease record, text written here:
    rcl1|<state>|<token>|<sec>|<usec>|<ttlMs>|<owner>|<name>
  state  'held' or 'free' (released)
  token  the 19-digit seqno of the version that began the tenure: the fencing token
  sec, usec  the server's TIME when written; the lease expires ttlMs later (by this clock)
  owner  the holder's random id; name its label (any text, never parsed here)
  A renewal appends a version too, and deletes the tenure's previous renewal (never the version
  that began it), so a tenure leaves at most three versions: begun, last renewed, released.

  Fairness: a caller that must wait (`acquire`) is queued in the waiters hash (field owner,
  value '<arrival sec> <arrival usec> <seen sec> <seen usec> <ttlMs>'). A free or expired lease
  goes only to the oldest live waiter (or anyone, when no one waits); a waiter not seen for its
  ttlMs is dropped, so a dead waiter holds the queue up for at most that long.

  Time arithmetic is on microseconds as floats (exact below 2^53 in Lua 5.1 and in ioredis-mock's
  Lua 5.3, whose integers are 32-bit); no time is ever formatted from a number. Seqnos are never
  computed here (the caller passes `next` = head + 1).

  The bucket's epoch marker is checked first, as in compareAndSet-4.lua (includes/epoch.lua); each
  commit (acquire, renewal, release) counts itself in the marker with its tag (ARGV[11]), so that a
  failover or restore that loses it is told as a rollback, and is announced on the bucket's heads
  channel as `<seqno><member>`, so watches hear it.
  `redis.replicate_commands()` comes first: Redis 5 refuses writes after TIME in a script
  otherwise (it is a no-op from Redis 7; ioredis-mock has none).

  Input:
    KEYS[1] versions  sorted set of 19-digit seqnos, all at score 0
    KEYS[2] data      hash seqno -> payload
    KEYS[3] registry  set of the keys of this bucket
    KEYS[4] epoch     the bucket's epoch marker
    KEYS[5] waiters   hash owner -> queue entry (see Fairness)
    ARGV[1] op        'acquire' (queue when it must wait), 'try' (never queue), 'renew',
                      'release', 'leave' (drop owner from the queue); reads are leaseRead-4.lua
    ARGV[2] expected  19-digit head seqno the caller saw, or '' for "no data" (acquire, try,
                      renew, release)
    ARGV[3] next      19-digit seqno to append: expected + 1 (acquire, try, renew, release)
    ARGV[4] owner     the caller's random id (no '|' or space)
    ARGV[5] ttlMs     the lease's time to live, decimal milliseconds
    ARGV[6] name      the caller's label, written into the record
    ARGV[7] member    the key's registry member
    ARGV[8] heads     pub/sub channel of this bucket's commits
    ARGV[9] announce  'PUBLISH', 'SPUBLISH' or '' (no announcement)
    ARGV[10] known    the epoch marker the caller knows for this bucket, or ''
    ARGV[11] tag      a fresh random tag of 8 bytes, without '|': this commit's in the marker (and
                      the id of the marker a first commit in the bucket creates)
    ARGV[12] now      '' to use TIME, or '<sec> <usec>' from the caller (ioredis-mock, whose TIME
                      rounds seconds and takes microseconds from another clock)

  Output (each may come in an epoch envelope):
    {1, token}             ACQUIRED / RENEWED / RELEASED: `next` was appended; token is the
                           tenure's fencing token (19 digits). An acquire by the current holder
                           renews its tenure.
    {0}                    MISMATCH: the key has no data although `expected` is a seqno
    {0, head, payload}     MISMATCH: the head is not `expected` (or, for renew and release, the
                           head is not this owner's live tenure); nothing changed
    {2, waitMs, ahead}     BUSY: held by another until waitMs from now, or free but `ahead`
                           waiters come first (waitMs: until the first of them may go stale);
                           with 'acquire' the caller is queued. Nothing appended.
    {3}                    NOT_A_LEASE: the head is not a lease record; nothing changed
    {4}                    LAPSED: renew found its own tenure expired by the server's clock
    {1}                    leave: done
    -3, -5                 STORE_RESET, STORE_ROLLBACK: the epoch check refused; nothing changed
]]
--- @include "includes/headOf"
--- @include "includes/epoch"
--- @include "includes/leaseRecord"

if redis.replicate_commands then redis.replicate_commands() end
local rcall = redis.call
local versions, data, registry, epoch, waiters = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local op, expected, nextSeqno, owner, ttlMs, name = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local member, heads, announce, known, tag, given = ARGV[7], ARGV[8], ARGV[9], ARGV[10], ARGV[11], ARGV[12]

local verdict, marker = checkEpoch(epoch, known, true)
local refusal = REFUSE[verdict]
if refusal then return refusal end

local nowSec, nowUsec, now = leaseClock(given)

local function isLive(record)
  return record.state == 'held' and now < record.expires
end

-- The live waiters, stale ones dropped: how many come before `me`, and when the first of those
-- goes stale (microseconds), or false when none does.
local function queueAhead(me)
  local entries = rcall('HGETALL', waiters)
  local mine = false
  local parsed = {}
  for i = 1, #entries, 2 do
    local as, au, ss, su, ttl = string.match(entries[i + 1], '^(%d+) (%d+) (%d+) (%d+) (%d+)$')
    local staleAt = as and tonumber(ss) * 1e6 + tonumber(su) + tonumber(ttl) * 1e3
    if not as or staleAt <= now then
      rcall('HDEL', waiters, entries[i])
    else
      local entry = { id = entries[i], arrival = tonumber(as) * 1e6 + tonumber(au), staleAt = staleAt }
      parsed[#parsed + 1] = entry
      if entries[i] == me then mine = entry end
    end
  end
  local ahead, firstStale = 0, false
  for _, entry in ipairs(parsed) do
    local before = not mine or entry.arrival < mine.arrival or (entry.arrival == mine.arrival and entry.id < mine.id)
    if entry.id ~= me and before then
      ahead = ahead + 1
      if not firstStale or entry.staleAt < firstStale then firstStale = entry.staleAt end
    end
  end
  return ahead, firstStale, mine
end

-- Queues `me` (keeping its arrival when it is queued already) and marks it seen now.
local function enqueue(me, entry)
  local arrival = nowSec .. ' ' .. nowUsec
  if entry then
    arrival = string.match(rcall('HGET', waiters, me), '^(%d+ %d+)')
  end
  rcall('HSET', waiters, me, arrival .. ' ' .. nowSec .. ' ' .. nowUsec .. ' ' .. ttlMs)
end

local function waitMsUntil(at)
  local ms = math.ceil((at - now) / 1000)
  if ms < 0 then return 0 end
  return ms
end

local head = headOf(versions)
local headPayload = false
if head then headPayload = rcall('HGET', data, head) end

local function mismatch()
  if head then return {0, head, headPayload} end
  return {0}
end

-- Appends `next` with a record in `state` for tenure `token`, and announces it.
local function commit(state, token)
  if not head then rcall('SADD', registry, member) end
  rcall('ZADD', versions, 0, nextSeqno)
  rcall('HSET', data, nextSeqno,
    'rcl1|' .. state .. '|' .. token .. '|' .. nowSec .. '|' .. nowUsec .. '|' .. ttlMs .. '|' .. owner .. '|' .. name)
  marker = countCommit(epoch, marker, tag)
  if announce ~= '' then redis.pcall(announce, heads, nextSeqno .. member) end
  return {1, token}
end

-- A renewal of tenure `token`: the previous renewal goes (the version that began it stays).
local function renew(token)
  local reply = commit('held', token)
  if head ~= token then
    rcall('ZREM', versions, head)
    rcall('HDEL', data, head)
  end
  return reply
end

local function run()
  if op == 'leave' then
    rcall('HDEL', waiters, owner)
    return {1}
  end
  if (head or '') ~= expected then return mismatch() end
  local record = false
  if head then
    record = leaseRecordOf(headPayload)
    if not record then return {3} end
  end
  local mine = record and record.owner == owner and record.state == 'held'

  if op == 'renew' or op == 'release' then
    if not mine then return mismatch() end
    if op == 'release' then return commit('free', record.token) end
    if not isLive(record) then return {4} end
    return renew(record.token)
  end

  -- acquire, try
  if mine and isLive(record) then return renew(record.token) end
  if record and isLive(record) then
    if op == 'acquire' then enqueue(owner, select(3, queueAhead(owner))) end
    return {2, waitMsUntil(record.expires), 0}
  end
  local ahead, firstStale, entry = queueAhead(owner)
  if ahead > 0 then
    if op == 'acquire' then enqueue(owner, entry) end
    return {2, waitMsUntil(firstStale), ahead}
  end
  if entry then rcall('HDEL', waiters, owner) end
  return commit('held', nextSeqno)
end

local reply = run()
if verdict == 'teach' and marker then return {EPOCH, marker, reply} end
return reply
