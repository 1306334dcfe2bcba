--[[
commit-stage: commit one batch of handler results of one stage, in one
partition, atomically. For every entry: skip it if its step is already
checkpointed (redelivery); else append its outputs to the next stream(s),
write the run checkpoint, append the run's activity log (and refresh both
TTLs when the run ends). Then XACK it.

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

Returns    { committed, duplicates, outputsAdded }
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
local acked = {}
for k = 1, n do
  local id, runKey, logKey = ARGV[i], KEYS[tonumber(ARGV[i + 1])], KEYS[tonumber(ARGV[i + 2])]
  local stepField, stepStatus, runStatus, stepJson = ARGV[i + 3], ARGV[i + 4], ARGV[i + 5], ARGV[i + 6]
  local nOut = tonumber(ARGV[i + 7])
  i = i + 8
  if redis.call('HEXISTS', runKey, stepField) == 1 then
    duplicates = duplicates + 1
    i = i + 2 * nOut
  else
    for _ = 1, nOut do
      redis.call('XADD', KEYS[tonumber(ARGV[i])], '*', 'e', ARGV[i + 1])
      i = i + 2
    end
    added = added + nOut
    redis.call('HSET', runKey, stepField, stepJson, 'step', stage, 'status', runStatus, 'updated_at', now)
    redis.call('XADD', logKey, 'MAXLEN', '~', logMax, '*', 'stage', stage, 'event', stepStatus, 'at', now, 'data', stepJson)
    -- enqueue-runs set the TTL; refreshing it on every step cost two calls per
    -- entry, so it is refreshed when the run ends (kept TTL after completion).
    if runStatus ~= 'running' then
      redis.call('EXPIRE', runKey, ttl)
      redis.call('EXPIRE', logKey, ttl)
    end
    committed = committed + 1
  end
  acked[k] = id
end
-- One variadic XACK (and HDEL) per batch instead of one call per entry; the
-- script is atomic, so acking at the end is the same as acking each in turn.
-- Chunks of 500 stay far below Lua's unpack() stack limit.
local function forChunks(list, fn)
  for s = 1, #list, 500 do fn(unpack(list, s, math.min(#list, s + 499))) end
end
forChunks(acked, function(...) redis.call('XACK', KEYS[1], group, ...) end)
local nClear = tonumber(ARGV[i] or '0'); i = i + 1
local cleared = {}
for k = 1, nClear do
  cleared[k] = ARGV[i]
  i = i + 1
end
forChunks(cleared, function(...) redis.call('HDEL', KEYS[3], ...) end)
if committed > 0 then redis.call('HINCRBY', KEYS[2], 'processed', committed) end
if duplicates > 0 then redis.call('HINCRBY', KEYS[2], 'duplicates', duplicates) end
return { committed, duplicates, added }
