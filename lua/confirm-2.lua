--[[
  Confirms, for `append`, that a version it found committed (a resend of a version whose first
  send was indeterminate met its own bytes at its seqno) is still stored, and makes a write after
  it on this connection, so that a `WAIT` sent next on the same connection covers that version.

  Why a write: `WAIT` counts the replicas that have every write *of the connection it is sent on*
  up to its last write. The version found may have been written by an earlier send on a
  connection since closed, and the resend that found it wrote nothing (a mismatch); on Redis >= 7
  a connection that wrote nothing waits for nothing. Rewriting the bucket's epoch marker with its
  own value is a write that replicates after the version (the replication stream is in order),
  changes nothing, and touches only a key of the version's slot.

  The bucket's epoch marker is checked first (includes/epoch.lua), as in every script.

  Input:
    KEYS[1] versions  sorted set of 19-digit seqnos, all at score 0
    KEYS[2] epoch     the bucket's epoch marker
    ARGV[1] seqno     19-digit seqno of the version found
    ARGV[2] known     the epoch marker the caller knows for this bucket, or '' when it knows none
    ARGV[3] fresh     a fresh random id (see includes/epoch.lua)

  Output:
    1                 the seqno is stored, and the marker was rewritten
    0                 the seqno is no longer stored (truncated, or lost): nothing written
    -3, -5            STORE_RESET, STORE_ROLLBACK: the epoch check refused; nothing written
    {-4, marker, r}   EPOCH envelope: `r` is 1 or 0, `marker` the bucket's marker to remember
]]
--- @include "includes/epoch"

local versions, epoch = KEYS[1], KEYS[2]
local seqno, known, fresh = ARGV[1], ARGV[2], ARGV[3]

local verdict, marker = checkEpoch(epoch, known, true)
local refusal = REFUSE[verdict]
if refusal then return refusal end
if type(redis.call('ZRANK', versions, seqno)) ~= 'number' then return 0 end
if marker then redis.call('SET', epoch, marker) else marker = createEpoch(epoch, fresh) end
if verdict == 'teach' then return {EPOCH, marker, 1} end
return 1
