--[[
expire-waits: move on the parked runs of one partition whose wait timed out:
each leaves the parked set; a run that declared a timeout step goes there
with the payload { timedOut, event, waitedMs } (a `timed-out` log entry); any
other is dead-lettered on the stage that waited, with the input it had, and
that step is undone (so a redrive runs that stage again). Atomic per call, so any number of hosts (and
the Workers cron) may call it at once: each run moves once. Keys are derived
from the partition's prefixes (same hash tag as KEYS[1]).

KEYS[1]    parked set of the partition (sorted set runId -> timeout ms)

ARGV[1]    checkpoint key prefix of the partition
ARGV[2]    run-log key prefix
ARGV[3]    stage-stream key prefix
ARGV[4]    dead-letter stream key prefix
ARGV[5]    stats hash key prefix (prefix .. stage)
ARGV[6]    now, epoch ms
ARGV[7]    most runs to move in this call
ARGV[8]    checkpoint/log TTL, seconds

Returns    { movedToTimeoutStep, deadLettered }
]]
local now = tonumber(ARGV[6])
local ttl = tonumber(ARGV[8])
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[7]))
local moved, dead = 0, 0
for _, runId in ipairs(due) do
  redis.call('ZREM', KEYS[1], runId)
  local runKey, logKey = ARGV[1] .. runId, ARGV[2] .. runId
  local f = redis.call('HMGET', runKey, 'status', 'wait_event', 'wait_on_timeout', 'wait_stage', 'wait_trace', 'wait_branch', 'wait_since')
  if f[1] == 'waiting' then
    local event, onTimeout, stage = f[2], f[3], f[4]
    local waited = now - tonumber(f[7] or now)
    redis.call('HDEL', runKey, 'wait_event', 'wait_timeout_at', 'wait_to', 'wait_on_timeout', 'wait_since', 'wait_stage', 'wait_trace', 'wait_branch')
    if onTimeout and onTimeout ~= '' then
      local env = { runId = runId, stage = onTimeout, attempt = 1, traceId = f[5], createdAt = now, payload = { timedOut = true, event = event, waitedMs = waited } }
      if f[6] and f[6] ~= '' then env.branch = f[6] end
      local json = cjson.encode(env)
      redis.call('XADD', ARGV[3] .. onTimeout, '*', 'e', json)
      redis.call('HSET', runKey, 'status', 'running', 'updated_at', now, 'input:' .. onTimeout, json)
      redis.call('XADD', logKey, 'MAXLEN', '~', 1000, '*', 'stage', onTimeout, 'event', 'timed-out', 'at', now, 'data', cjson.encode({ event = event, waitedMs = waited, to = onTimeout }))
      moved = moved + 1
    else
      local err = 'timed out after ' .. waited .. ' ms waiting for event ' .. event
      local input = redis.call('HGET', runKey, 'input:' .. stage) or ''
      redis.call('XADD', ARGV[4] .. stage, 'MAXLEN', '~', 100000, '*', 'stage', stage, 'error', err, 'attempts', 1, 'envelope', input, 'source_id', '0-0', 'at', now)
      local info = cjson.encode({ status = 'dead-lettered', error = err, attempts = 1, at = now })
      -- The waiting step is undone, so a redrive of this dead letter runs that stage again.
      redis.call('HDEL', runKey, 'step:' .. stage .. ((f[6] and f[6] ~= '') and ('#' .. f[6]) or ''))
      redis.call('HSET', runKey, 'failed:' .. stage, info, 'status', 'dead-lettered', 'updated_at', now)
      redis.call('EXPIRE', runKey, ttl)
      redis.call('XADD', logKey, 'MAXLEN', '~', 1000, '*', 'stage', stage, 'event', 'dead-lettered', 'at', now, 'data', info)
      redis.call('EXPIRE', logKey, ttl)
      redis.call('HINCRBY', ARGV[5] .. stage, 'deadLettered', 1)
      dead = dead + 1
    end
  end
end
return { moved, dead }
