--[[
enqueue-runs: start a batch of runs in one partition: write each run's
checkpoint (status running, plus the pipeline's trigger step when it has one,
e.g. `ingest`: the HTTP/cron/replay trigger that created the run), its first
activity-log entry, its envelope on the entry stage's stream, and its entry in
the partition's recent-runs index, atomically. The index is trimmed here, once
per call (not per run): to the newest ARGV[5] entries and to the checkpoint
TTL, so it never outgrows the runs it points at (and the whole index expires
with them when no run starts for a TTL).

KEYS[1]    entry stage stream
KEYS[2]    stats hash of the entry stage (counts "ingested")
KEYS[3]    recent-runs index of the partition (sorted set runId -> created ms)
KEYS[4..]  run checkpoint hashes and run logs, referenced by 1-based KEYS
           index from ARGV

ARGV[1]    entry stage name
ARGV[2]    now, epoch ms
ARGV[3]    checkpoint/log TTL, seconds
ARGV[4]    trigger step name ('' = none): written as a completed step
           `step:<name>` into each checkpoint
ARGV[5]    recent-runs bound: the index keeps at most this many newest runs
ARGV[6]    N: number of runs, followed per run by
           runKeyIdx, logKeyIdx, envelopeJson, runId

Returns    the stream ids of the added entries, in order
]]
local stage, now, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local trigger = ARGV[4]
local recentMax = tonumber(ARGV[5])
local n = tonumber(ARGV[6])
local ids = {}
local i = 7
local triggerStep = cjson.encode({ status = 'completed', ms = 0, at = tonumber(now), result = { entry = stage } })
-- One variadic ZADD per 500 runs (all share the score `now`), below unpack()'s stack limit.
local recent = {}
local function flushRecent()
  if #recent > 0 then redis.call('ZADD', KEYS[3], unpack(recent)) end
  recent = {}
end
for k = 1, n do
  local runKey, logKey, env = KEYS[tonumber(ARGV[i])], KEYS[tonumber(ARGV[i + 1])], ARGV[i + 2]
  recent[#recent + 1] = now
  recent[#recent + 1] = ARGV[i + 3]
  if #recent >= 1000 then flushRecent() end
  i = i + 4
  redis.call('HSET', runKey, 'status', 'running', 'step', stage, 'created_at', now, 'updated_at', now)
  if trigger ~= '' then redis.call('HSET', runKey, 'step:' .. trigger, triggerStep) end
  redis.call('EXPIRE', runKey, ttl)
  redis.call('XADD', logKey, 'MAXLEN', '~', 1000, '*', 'stage', stage, 'event', 'enqueued', 'at', now)
  redis.call('EXPIRE', logKey, ttl)
  ids[k] = redis.call('XADD', KEYS[1], '*', 'e', env)
end
flushRecent()
redis.call('ZREMRANGEBYRANK', KEYS[3], 0, -(recentMax + 1))
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. (tonumber(now) - ttl * 1000))
redis.call('EXPIRE', KEYS[3], ttl)
redis.call('HINCRBY', KEYS[2], 'ingested', n)
return ids
