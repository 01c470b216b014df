--[[
  The store epoch: how a script notices that the data set under it was reset (a Redis restarted
  without persistence, FLUSHALL, the store's keys deleted) or rolled back (a failover to a replica
  that had not received the last commits, a restart from an older snapshot), instead of letting a
  process commit over, or read as its own, a history without commits it had seen.

  Each bucket has a marker key (`p:{b}:epoch`, in the bucket's slot). Its value is
    <id>                 a marker without a commit count (written before counts existed, or by a
                         truncate in a bucket without a marker): count 0, no tags
    <id>|<n>|<tags>      `n` commits counted in the bucket since <id> was written (decimal), and the
                         random tags of the last min(n, RING) of them, newest first, each TAG bytes
  where <id> is one of
    'first:<r>'     written by the first commit (or truncate) in the bucket, `<r>` random, from the
                    client that made it
    'ack:<r>'       written by an acknowledgement (acknowledgeReset-1.lua): adopted by every client,
                    whatever it knew
  or the whole value is
    'reset:<k>'     written by a writer that knew `<k>` and found its <id> gone or replaced: the
                    bucket refuses every call, from any client, until an acknowledgement
    'rollback:<k>'  written by a writer that knew `<k>` (an <id>, a count and a tag) and found the
                    count lower, or another tag at that count: commits it had seen are gone
  A reset deletes the marker with everything else. Every commit counts itself: compareAndSet-4.lua
  rewrites the value with n + 1 and the commit's tag (a fresh random string from the client) first.

  What the client passes (`known`): '' when it knows nothing of the bucket, else `<id>` or
  `<id>|<n>|<tag>`: the highest count it has seen in the bucket and the tag of that commit. It
  learns it from the envelope a script replies in (the client cuts the value after the first tag),
  or, after a commit that went through with the value it knew, as `<id>|<n + 1>|<its fresh tag>`.
  Keeping all this costs one GET per call, one SET per commit.

  Limits: the tag of a count is kept for RING commits. A client that comes back after more than
  RING commits were made in the bucket on a history without its commits cannot be told (its count
  is lower than the bucket's and its tag no longer kept): it goes on. A client that never saw the
  lost commits cannot tell either, by design.

  STORE_RESET     reply of any script that refused the call because the bucket was reset: nothing
                  was done (a write may have marked the bucket reset)
  STORE_ROLLBACK  the same, because the bucket was rolled back
  EPOCH           first element of an envelope {EPOCH, marker, reply}: `reply` is the script's usual
                  reply, and `marker` the bucket's marker value for the client to learn from. No
                  usual reply is a table that starts with a number, so an envelope is never mistaken
                  for one.
]]
local STORE_RESET = -3
local EPOCH = -4
local STORE_ROLLBACK = -5
-- A script refuses with REFUSE[verdict] when that is not nil.
local REFUSE = {reset = STORE_RESET, rollback = STORE_ROLLBACK}
local TAG = 8
local RING = 32
-- Locals: each `string.x` is two table lookups per call, on the path of every commit.
local sub, find = string.sub, string.find

-- splitMarker(value) -> id, n, bar: `bar` is the position of the '|' before the tags (false
-- without a count).
local function splitMarker(value)
  local bar = find(value, '|', 1, true)
  if not bar then return value, 0, false end
  local bar2 = find(value, '|', bar + 1, true)
  return sub(value, 1, bar - 1), tonumber(sub(value, bar + 1, bar2 - 1)), bar2
end

--[[
  checkEpoch(key, known, write) -> verdict, marker
    key     the bucket's marker key
    known   what the client knows of the bucket, or '' (see above)
    write   true in a script that writes: a refusal then marks the bucket reset or rolled back
  `marker` is the marker's value, or false when the bucket has none.
  verdicts:
    'go'        the marker is as the client knows it: go on, reply as usual
    'teach'     go on, and reply in an envelope with `marker`: the client knows nothing, or less
                than the bucket holds, or an acknowledgement replaced what it knew. `marker` is
                false when the bucket has none yet (a fresh store, or data from before markers
                existed): a write that commits then creates it, a read has nothing to teach
    'reset'     refuse with STORE_RESET: the <id> the client knows is gone or was replaced by
                one no acknowledgement wrote, or the bucket is marked reset
    'rollback'  refuse with STORE_ROLLBACK: the bucket holds fewer commits than the client has
                seen, or another commit at the count it knows, or is marked rolled back
]]
local function checkEpoch(key, known, write)
  local marker = redis.call('GET', key)
  if type(marker) ~= 'string' then
    if known == '' then return 'teach', false end
    if write then redis.call('SET', key, 'reset:' .. known) end
    return 'reset', false
  end
  -- The common case first: the value starts with `known`, its count and newest tag included (a
  -- tag never holds '|'; `known` without a count must be the whole value).
  if known ~= '' and sub(marker, 1, #known) == known then
    local after = sub(marker, #known + 1, #known + 1)
    if after == '' or (after ~= '|' and find(known, '|', 1, true)) then return 'go', marker end
  end
  if sub(marker, 1, 6) == 'reset:' then return 'reset', marker end
  if sub(marker, 1, 9) == 'rollback:' then return 'rollback', marker end
  if known == '' then return 'teach', marker end
  local id, n, bar = splitMarker(marker)
  local knownId, knownN, knownBar = splitMarker(known)
  if id ~= knownId then
    if sub(id, 1, 4) == 'ack:' then return 'teach', marker end
    if write then redis.call('SET', key, 'reset:' .. known) end
    return 'reset', marker
  end
  -- The same <id>: the bucket must hold every commit the client has seen, the one it knows last
  -- with the same tag. `ahead` commits were made since; that tag is the ahead-th kept.
  local ahead = n - knownN
  local lost = ahead < 0
  if not lost and knownBar and ahead < RING then
    local at = bar + 1 + ahead * TAG
    lost = sub(marker, at, at + TAG - 1) ~= sub(known, knownBar + 1, knownBar + TAG)
  end
  if lost then
    if write then redis.call('SET', key, 'rollback:' .. known) end
    return 'rollback', marker
  end
  return 'teach', marker
end

--[[
  countCommit(key, marker, tag) -> marker: counts a commit in the bucket, whose marker value is
  `marker` (false when it has none: this commit creates it, its <id> 'first:<tag>'), and keeps its
  `tag`.
]]
local function countCommit(key, marker, tag)
  if not marker then marker = 'first:' .. tag end
  local id, n, bar = splitMarker(marker)
  local kept = bar and sub(marker, bar + 1, bar + (RING - 1) * TAG) or ''
  marker = id .. '|' .. (n + 1) .. '|' .. tag .. kept
  redis.call('SET', key, marker)
  return marker
end

--[[
  countNextCommit(key, marker, verdict, known, head) -> marker: counts a commit as countCommit does,
  after checkEpoch(key, known, true) said `verdict` and `marker`. `head` is what the caller expects
  the marker to start with after this commit (lib/epoch.ts, Epochs.nextHead): `<id>|<n + 1>|<tag>`
  when `known` is `<id>|<n>|<t>`, else the commit's `<tag>` alone. On 'go' with a count the marker
  starts with `known`, so the new value is `head` and the first RING - 1 tags kept, without
  parsing the marker (the common case, on every commit); anything else goes through countCommit.
]]
local function countNextCommit(key, marker, verdict, known, head)
  if verdict ~= 'go' or #head <= TAG then return countCommit(key, marker, sub(head, -TAG)) end
  local tags = #known - TAG + 1
  marker = head .. sub(marker, tags, tags + (RING - 1) * TAG - 1)
  redis.call('SET', key, marker)
  return marker
end

--[[
  createEpoch(key, id) -> marker: writes the bucket's first marker, without a count (a truncate in
  a bucket that had none: checkEpoch said 'teach' with no marker, so the client passed a fresh `id`).
]]
local function createEpoch(key, id)
  local marker = 'first:' .. id
  redis.call('SET', key, marker)
  return marker
end
