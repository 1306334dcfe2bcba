--[[
retry-later: schedule a batch of failed entries of one stage (one partition)
for redelivery after a backoff. The entry stays in the PEL (its delivery
count is the attempt counter); XCLAIM ... IDLE sets its idle time so that the
reclaim loop (XAUTOCLAIM with min-idle = visibility timeout) picks it up once
the backoff has passed. JUSTID keeps the delivery count unchanged here.

KEYS[1]    input stream of the stage
KEYS[2]    stats hash of the stage
KEYS[3]    last-errors hash of the stage
KEYS[4..]  run checkpoint hashes and run logs, referenced by 1-based KEYS
           index from ARGV

ARGV[1]    consumer group
ARGV[2]    consumer name (keeps ownership)
ARGV[3]    stage name
ARGV[4]    now, epoch ms
ARGV[5]    visibility timeout, ms
ARGV[6]    checkpoint/log TTL, seconds
ARGV[7]    N: number of entries, followed per entry by
           entryId, backoffMs, error, runKeyIdx, logKeyIdx, attempt

Returns    number of entries scheduled (still pending in the group)
]]
local group, consumer, stage, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local vis, ttl = tonumber(ARGV[5]), tonumber(ARGV[6])
local n = tonumber(ARGV[7])
local i = 8
local retried = 0
for _ = 1, n do
  local id, backoff, err = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2]
  local runIdx, logIdx, attempt = tonumber(ARGV[i + 3]), tonumber(ARGV[i + 4]), ARGV[i + 5]
  i = i + 6
  local idle = vis - backoff
  if idle < 0 then idle = 0 end
  -- An entry no longer pending (another consumer committed it after this
  -- one's lease ran out, or the server lost it in a crash) is left alone: no
  -- error, no retry event, no checkpoint brought back without its run.
  local claimed = redis.call('XCLAIM', KEYS[1], group, consumer, 0, id, 'IDLE', idle, 'JUSTID')
  if #claimed > 0 then
    retried = retried + 1
    redis.call('HSET', KEYS[3], id, err)
  end
  if runIdx > 0 and #claimed > 0 then
    local info = cjson.encode({ error = err, attempt = tonumber(attempt), retryInMs = backoff })
    redis.call('HSET', KEYS[runIdx], 'updated_at', now)
    redis.call('XADD', KEYS[logIdx], 'MAXLEN', '~', 1000, '*', 'stage', stage, 'event', 'retry', 'at', now, 'data', info)
    redis.call('EXPIRE', KEYS[logIdx], ttl)
  end
end
if retried > 0 then
  redis.call('HINCRBY', KEYS[2], 'retried', retried)
  redis.call('HINCRBY', KEYS[2], 'failed', retried)
end
return retried
