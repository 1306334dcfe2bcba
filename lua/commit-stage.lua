--[[
commit-stage: commit one batch of handler results of one stage, in one
partition, atomically. For every entry: skip it if its step is already
checkpointed (redelivery); else append its outputs to the next stream(s),
write the run checkpoint (with each output's envelope as the next step's
input, field `input:<stage>`, so a rerun can start there), append the run's activity log (and refresh both
TTLs when the run ends). Each entry is acked first, and only an entry that
was still pending in the group is committed: a batch read before a server
crash that cost the server its last writes (everysec and a power loss) may
hold entries the server no longer has, and committing them would write a
stale step over the run's newer checkpoint; the run goes on from what the
server kept.

Every key carries the partition's hash tag, so the call touches one slot.

KEYS[1]    input stream of the stage
KEYS[2]    stats hash of the stage (this partition)
KEYS[3]    last-errors hash of the stage (cleared for committed entries)
KEYS[4..]  run checkpoint hashes, run logs and output streams, referenced by
           1-based KEYS index from ARGV

ARGV[1]    consumer group
ARGV[2]    stage name
ARGV[3]    now, epoch ms
ARGV[4]    checkpoint/log TTL, seconds
ARGV[5]    activity-log max length (approximate trim)
ARGV[6]    B: number of (stats field, increment) pairs that follow
ARGV[7..6+2B]  the pairs (latency buckets, latency sum), applied once per call
then       N: number of entries, followed per entry by
           entryId, runKeyIdx, logKeyIdx, stepField, stepStatus, runStatus,
           stepJson, nOutputs, then nOutputs x (streamKeyIdx, envelopeJson)
then       M: number of entry ids whose last error to clear (redelivered
           entries), followed by those M ids
then       F: number of flow limiters (flow-acquire.lua zsets) whose slots the
           batch frees, followed per limiter by keyIdx, N, then N members,
           then waitIdx: 0, or the KEYS index of the key's waiting list
           (flow-park.lua) followed by readyIdx (the partition's ready set),
           readyMember, slot limit, reservation lease (ms): entries waiting
           for the key are readmitted at once into the room just freed, as
           flow-readmit.lua does (only when the limiters share the
           partition's tag: one partition)

Returns    { committed, duplicates, outputsAdded, flowReadmitted }
]]
local group, stage, now = ARGV[1], ARGV[2], ARGV[3]
local ttl, logMax = tonumber(ARGV[4]), ARGV[5]
local nPairs = tonumber(ARGV[6])
local i = 7
for _ = 1, nPairs do
  redis.call('HINCRBY', KEYS[2], ARGV[i], ARGV[i + 1])
  i = i + 2
end
local n = tonumber(ARGV[i]); i = i + 1
local committed, duplicates, added = 0, 0, 0
for k = 1, n do
  local id, runKey, logKey = ARGV[i], KEYS[tonumber(ARGV[i + 1])], KEYS[tonumber(ARGV[i + 2])]
  local stepField, stepStatus, runStatus, stepJson = ARGV[i + 3], ARGV[i + 4], ARGV[i + 5], ARGV[i + 6]
  local nOut = tonumber(ARGV[i + 7])
  i = i + 8
  if redis.call('XACK', KEYS[1], group, id) == 0 or redis.call('HEXISTS', runKey, stepField) == 1 then
    duplicates = duplicates + 1
    i = i + 2 * nOut
  else
    local fields = { stepField, stepJson, 'step', stage, 'status', runStatus, 'updated_at', now }
    for _ = 1, nOut do
      local stream = KEYS[tonumber(ARGV[i])]
      redis.call('XADD', stream, '*', 'e', ARGV[i + 1])
      -- The next step's input, kept for reruns (POST /v1/runs/:runId/rerun).
      local to = string.match(stream, ':s:([%w%-]+)$')
      if to then
        fields[#fields + 1] = 'input:' .. to
        fields[#fields + 1] = ARGV[i + 1]
      end
      i = i + 2
    end
    added = added + nOut
    redis.call('HSET', runKey, unpack(fields))
    redis.call('XADD', logKey, 'MAXLEN', '~', logMax, '*', 'stage', stage, 'event', stepStatus, 'at', now, 'data', stepJson)
    -- enqueue-runs set the TTL; refreshing it on every step cost two calls per
    -- entry, so it is refreshed when the run ends (kept TTL after completion).
    if runStatus ~= 'running' then
      redis.call('EXPIRE', runKey, ttl)
      redis.call('EXPIRE', logKey, ttl)
    end
    committed = committed + 1
  end
end
-- Chunks of 500 stay far below Lua's unpack() stack limit.
local function forChunks(list, fn)
  for s = 1, #list, 500 do fn(unpack(list, s, math.min(#list, s + 499))) end
end
local nClear = tonumber(ARGV[i] or '0'); i = i + 1
local cleared = {}
for k = 1, nClear do
  cleared[k] = ARGV[i]
  i = i + 1
end
forChunks(cleared, function(...) redis.call('HDEL', KEYS[3], ...) end)
-- Flow-control slots of the batch, freed with its commit (instead of a flow-release call),
-- and parked entries of the same keys put back into that room (instead of a readmit pass).
local nFlow = tonumber(ARGV[i] or '0'); i = i + 1
local readmitted = 0
for _ = 1, nFlow do
  local key, nm = KEYS[tonumber(ARGV[i])], tonumber(ARGV[i + 1])
  local members = {}
  for m = 1, nm do members[m] = ARGV[i + 1 + m] end
  i = i + 2 + nm
  forChunks(members, function(...) redis.call('ZREM', key, ...) end)
  local waitIdx = tonumber(ARGV[i]); i = i + 1
  if waitIdx > 0 then
    local waitKey, readyKey, readyMember = KEYS[waitIdx], KEYS[tonumber(ARGV[i])], ARGV[i + 1]
    local limit, reserveMs = tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3])
    i = i + 4
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
    local room = limit - redis.call('ZCARD', key)
    local moved = 0
    while room > 0 do
      local record = redis.call('LPOP', waitKey)
      if not record then break end
      -- Unique: a member is released once per step, and this call's time.
      local token = 'r:' .. now .. ':' .. members[1] .. ':' .. moved
      redis.call('ZADD', key, tonumber(now) + reserveMs, token)
      local sep = string.find(record, '|', 1, true)
      redis.call('XADD', KEYS[1], '*', 'e', string.sub(record, sep + 1), 'd', string.sub(record, 1, sep - 1), 'r', 'concurrency:' .. token)
      room = room - 1
      moved = moved + 1
    end
    if moved > 0 then
      if redis.call('LLEN', waitKey) == 0 then redis.call('ZREM', readyKey, readyMember) end
      redis.call('PEXPIRE', key, reserveMs + 60000)
      redis.call('HINCRBY', KEYS[2], 'flow_waiting', -moved)
      redis.call('HINCRBY', KEYS[2], 'flow_readmitted', moved)
      readmitted = readmitted + moved
    end
  end
end
if committed > 0 then redis.call('HINCRBY', KEYS[2], 'processed', committed) end
if duplicates > 0 then redis.call('HINCRBY', KEYS[2], 'duplicates', duplicates) end
return { committed, duplicates, added, readmitted }
