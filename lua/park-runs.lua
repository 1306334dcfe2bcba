--[[
park-runs: commit entries of one stage (one partition) whose handler asked to
wait for an event: the step's checkpoint, the run's status `waiting` with its
wait (event, timeout, where it goes next), its place in the partition's parked
set (scored by its timeout, +inf for none), a `waiting` log entry, and the
XACK, atomically. The run then holds no consumer and no pending entry: an
event (resume-run.lua) or its timeout (expire-waits.lua) moves it on. A
redelivered entry whose step is already checkpointed is only acked.

KEYS[1]    input stream of the stage
KEYS[2]    stats hash of the stage
KEYS[3]    last-errors hash of the stage
KEYS[4]    parked set of the partition (sorted set runId -> timeout ms)
KEYS[5..]  run checkpoint hashes and run logs, referenced by 1-based KEYS index

ARGV[1]    consumer group
ARGV[2]    stage name
ARGV[3]    now, epoch ms
ARGV[4]    N: entries, followed per entry by
           entryId, runKeyIdx, logKeyIdx, runId, stepField, stepJson, event,
           timeoutAt ('+inf' for none), to, onTimeout ('' for none), traceId, branch ('' for none)

Returns    { parked, duplicates }
]]
local group, stage, now = ARGV[1], ARGV[2], ARGV[3]
local n = tonumber(ARGV[4])
local i = 5
local parked, duplicates = 0, 0
for _ = 1, n do
  local id, runKey, logKey, runId = ARGV[i], KEYS[tonumber(ARGV[i + 1])], KEYS[tonumber(ARGV[i + 2])], ARGV[i + 3]
  local stepField, stepJson, event, timeoutAt = ARGV[i + 4], ARGV[i + 5], ARGV[i + 6], ARGV[i + 7]
  local to, onTimeout, trace, branch = ARGV[i + 8], ARGV[i + 9], ARGV[i + 10], ARGV[i + 11]
  i = i + 12
  if redis.call('HEXISTS', runKey, stepField) == 1 then
    duplicates = duplicates + 1
  else
    redis.call('HSET', runKey, stepField, stepJson, 'step', stage, 'status', 'waiting', 'updated_at', now,
      'wait_event', event, 'wait_timeout_at', timeoutAt == '+inf' and '' or timeoutAt, 'wait_to', to, 'wait_on_timeout', onTimeout,
      'wait_since', now, 'wait_stage', stage, 'wait_trace', trace, 'wait_branch', branch)
    redis.call('ZADD', KEYS[4], timeoutAt, runId)
    redis.call('XADD', logKey, 'MAXLEN', '~', 1000, '*', 'stage', stage, 'event', 'waiting', 'at', now,
      'data', cjson.encode({ waitFor = event, timeoutAt = timeoutAt == '+inf' and cjson.null or tonumber(timeoutAt) }))
    parked = parked + 1
  end
  redis.call('XACK', KEYS[1], group, id)
  redis.call('HDEL', KEYS[3], id)
end
if parked > 0 then redis.call('HINCRBY', KEYS[2], 'processed', parked) end
if duplicates > 0 then redis.call('HINCRBY', KEYS[2], 'duplicates', duplicates) end
return { parked, duplicates }
