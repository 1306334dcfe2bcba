--[[
dead-letter: move a batch of entries of one stage (one partition) to the
stage's dead-letter stream with their error, and XACK them, atomically.
When an entry's error is empty, its last recorded error is used (the
last-errors hash), so an entry that exhausted maxDeliveries is dead-lettered
with the text of its last failure.

KEYS[1]    input stream of the stage
KEYS[2]    dead-letter stream of the stage
KEYS[3]    stats hash of the stage
KEYS[4]    last-errors hash of the stage
KEYS[5..]  run checkpoint hashes and run logs, referenced by 1-based KEYS
           index from ARGV (index 0: the entry has no valid run)

ARGV[1]    consumer group
ARGV[2]    stage name
ARGV[3]    now, epoch ms
ARGV[4]    checkpoint/log TTL, seconds
ARGV[5]    dead-letter stream max length (approximate trim)
ARGV[6]    how many of these are handler failures (added to "failed"; the
           rest are malformed entries or exhausted deliveries)
ARGV[7]    N: number of entries, followed per entry by
           entryId, runKeyIdx, logKeyIdx, error, attempts, rawEntry

Only an entry still pending in the group is dead-lettered: one that another
consumer committed meanwhile (it reclaimed the entry after this consumer's
lease ran out), or one the server no longer has (it came back from a crash
without its last writes), must not mark its run dead-lettered nor bring back
a checkpoint the server lost.

Returns    number of entries dead-lettered
]]
local group, stage, now = ARGV[1], ARGV[2], ARGV[3]
local ttl, dlqMax = tonumber(ARGV[4]), ARGV[5]
local handlerFailures = tonumber(ARGV[6])
local n = tonumber(ARGV[7])
local i = 8
local dead = 0
for _ = 1, n do
  local id, runIdx, logIdx = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  local err, attempts, raw = ARGV[i + 3], ARGV[i + 4], ARGV[i + 5]
  i = i + 6
  if redis.call('XACK', KEYS[1], group, id) == 1 then
    if err == '' then
      err = redis.call('HGET', KEYS[4], id) or 'delivery limit exceeded (consumer lost before committing)'
    end
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', dlqMax, '*',
      'stage', stage, 'error', err, 'attempts', attempts, 'envelope', raw, 'source_id', id, 'at', now)
    if runIdx > 0 then
      local info = cjson.encode({ status = 'dead-lettered', error = err, attempts = tonumber(attempts), at = tonumber(now) })
      redis.call('HSET', KEYS[runIdx], 'failed:' .. stage, info, 'step', stage, 'status', 'dead-lettered', 'updated_at', now)
      redis.call('EXPIRE', KEYS[runIdx], ttl)
      redis.call('XADD', KEYS[logIdx], 'MAXLEN', '~', 1000, '*', 'stage', stage, 'event', 'dead-lettered', 'at', now, 'data', info)
      redis.call('EXPIRE', KEYS[logIdx], ttl)
    end
    dead = dead + 1
  end
  redis.call('HDEL', KEYS[4], id)
end
if dead > 0 then redis.call('HINCRBY', KEYS[3], 'deadLettered', dead) end
if handlerFailures > 0 then redis.call('HINCRBY', KEYS[3], 'failed', handlerFailures) end
return dead
