--[[
enqueue-runs: start a batch of runs in one partition: write each run's
checkpoint (status running, plus the pipeline's trigger step when it has one,
e.g. `ingest`: the HTTP/cron/replay trigger that created the run), its first
activity-log entry, and its envelope on the entry stage's stream, atomically.

KEYS[1]    entry stage stream
KEYS[2]    stats hash of the entry stage (counts "ingested")
KEYS[3..]  run checkpoint hashes and run logs, referenced by 1-based KEYS
           index from ARGV

ARGV[1]    entry stage name
ARGV[2]    now, epoch ms
ARGV[3]    checkpoint/log TTL, seconds
ARGV[4]    trigger step name ('' = none): written as a completed step
           `step:<name>` into each checkpoint
ARGV[5]    N: number of runs, followed per run by
           runKeyIdx, logKeyIdx, envelopeJson

Returns    the stream ids of the added entries, in order
]]
local stage, now, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local trigger = ARGV[4]
local n = tonumber(ARGV[5])
local ids = {}
local i = 6
local triggerStep = cjson.encode({ status = 'completed', ms = 0, at = tonumber(now), result = { entry = stage } })
for k = 1, n do
  local runKey, logKey, env = KEYS[tonumber(ARGV[i])], KEYS[tonumber(ARGV[i + 1])], ARGV[i + 2]
  i = i + 3
  redis.call('HSET', runKey, 'status', 'running', 'step', stage, 'created_at', now, 'updated_at', now)
  if trigger ~= '' then redis.call('HSET', runKey, 'step:' .. trigger, triggerStep) end
  redis.call('EXPIRE', runKey, ttl)
  redis.call('XADD', logKey, 'MAXLEN', '~', 1000, '*', 'stage', stage, 'event', 'enqueued', 'at', now)
  redis.call('EXPIRE', logKey, ttl)
  ids[k] = redis.call('XADD', KEYS[1], '*', 'e', env)
end
redis.call('HINCRBY', KEYS[2], 'ingested', n)
return ids
