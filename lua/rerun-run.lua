--[[
rerun-run: start a new attempt of a run from one of its steps, linked to the
original, atomically: the new run's checkpoint (status running, `rerun_of`,
`rerun_from`, the steps before the chosen one copied from the original and
marked `copied`), its first log entry, its envelope on the step's stream and
its place in the recent-runs index; on the original, a `rerun:<newRunId>`
field and a `rerun` log entry. The new run id is chosen in the original's
partition, so every key shares one hash tag.

KEYS[1]    original run checkpoint
KEYS[2]    original run log
KEYS[3]    new run checkpoint
KEYS[4]    new run log
KEYS[5]    stream of the step to start at
KEYS[6]    recent-runs index of the partition

ARGV[1]    step (stage) to start at
ARGV[2]    now, epoch ms
ARGV[3]    checkpoint/log TTL, seconds
ARGV[4]    new run id
ARGV[5]    original run id
ARGV[6]    envelope JSON of the new run's first entry
ARGV[7]    'edited' when the payload was given, else 'checkpointed'
ARGV[8..]  checkpoint fields to copy from the original (`step:<stage>` of earlier steps)

Returns    1, or 0 when the original run is unknown (expired) or the new id exists
]]
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
local step, now, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local newId, origId, env = ARGV[4], ARGV[5], ARGV[6]
redis.call('HSET', KEYS[3], 'status', 'running', 'step', step, 'created_at', now, 'updated_at', now, 'rerun_of', origId, 'rerun_from', step, 'rerun_input', ARGV[7], 'input:' .. step, env)
for k = 8, #ARGV do
  local v = redis.call('HGET', KEYS[1], ARGV[k])
  if v then
    local ok, d = pcall(cjson.decode, v)
    if ok and type(d) == 'table' then
      d.copied = true
      v = cjson.encode(d)
    end
    redis.call('HSET', KEYS[3], ARGV[k], v)
  end
end
redis.call('EXPIRE', KEYS[3], ttl)
local link = cjson.encode({ runId = newId, fromStep = step, input = ARGV[7], at = tonumber(now) })
redis.call('HSET', KEYS[1], 'rerun:' .. newId, link)
redis.call('XADD', KEYS[2], 'MAXLEN', '~', 1000, '*', 'stage', step, 'event', 'rerun', 'at', now, 'data', link)
redis.call('XADD', KEYS[4], 'MAXLEN', '~', 1000, '*', 'stage', step, 'event', 'enqueued', 'at', now, 'data', cjson.encode({ rerunOf = origId, fromStep = step, input = ARGV[7] }))
redis.call('EXPIRE', KEYS[4], ttl)
redis.call('XADD', KEYS[5], '*', 'e', env)
redis.call('ZADD', KEYS[6], now, newId)
return 1
