--[[
promote-due: move the delayed runs of one partition whose time has come to
their stage's stream: take each due run id out of the delayed set, append the
envelope its checkpoint kept (its entry step's input), mark it running and log `started`, atomically,
so any number of hosts (and the Workers cron) may call it at once and each
run starts exactly once. A run whose checkpoint expired is dropped from the
set. Stream and checkpoint keys are derived from the partition's prefixes
(same hash tag, hence the same slot as KEYS[1]).

KEYS[1]    delayed set of the partition (sorted set runId -> due ms)

ARGV[1]    checkpoint key prefix of the partition (prefix .. runId)
ARGV[2]    run-log key prefix of the partition
ARGV[3]    stage-stream key prefix of the partition (prefix .. stage)
ARGV[4]    now, epoch ms
ARGV[5]    most runs to move in this call

Returns    { moved, lateMsMax }: runs moved and the largest lateness (now - due)
]]
local now = tonumber(ARGV[4])
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[5]))
local moved, late = 0, 0
for k = 1, #due, 2 do
  local runId, at = due[k], tonumber(due[k + 1])
  redis.call('ZREM', KEYS[1], runId)
  local runKey = ARGV[1] .. runId
  local f = redis.call('HMGET', runKey, 'step', 'status')
  local env = f[1] and redis.call('HGET', runKey, 'input:' .. f[1])
  if env and f[2] == 'delayed' then
    redis.call('XADD', ARGV[3] .. f[1], '*', 'e', env)
    redis.call('HSET', runKey, 'status', 'running', 'updated_at', now)
    redis.call('XADD', ARGV[2] .. runId, 'MAXLEN', '~', 1000, '*', 'stage', f[1], 'event', 'enqueued', 'at', now, 'data', cjson.encode({ dueAt = at, lateMs = now - at }))
    moved = moved + 1
    if now - at > late then late = now - at end
  end
end
return { moved, late }
