--[[
resume-run: deliver an event to a parked run, atomically: only a run that is
`waiting` for exactly this event (and for this next stage) resumes; its
envelope, whose payload is the event's data, goes to the next stage's stream
and becomes that step's input, the wait is cleared, the run leaves the
parked set, and the log records `resumed`. A second delivery of the same
event finds the run no longer waiting and changes nothing.

KEYS[1]    run checkpoint
KEYS[2]    run log
KEYS[3]    parked set of the run's partition
KEYS[4]    stream of the stage the run resumes at

ARGV[1]    event name
ARGV[2]    now, epoch ms
ARGV[3]    the stage the run resumes at (must be its wait_to)
ARGV[4]    envelope JSON
ARGV[5]    run id
ARGV[6]    data size in bytes (for the log)

Returns    { 1 } resumed, or { 0, status, waitingFor }
]]
local f = redis.call('HMGET', KEYS[1], 'status', 'wait_event', 'wait_to', 'wait_since')
if f[1] ~= 'waiting' or f[2] ~= ARGV[1] or f[3] ~= ARGV[3] then
  return { 0, f[1] or '', f[2] or '' }
end
local now = ARGV[2]
redis.call('XADD', KEYS[4], '*', 'e', ARGV[4])
redis.call('HSET', KEYS[1], 'status', 'running', 'updated_at', now, 'input:' .. ARGV[3], ARGV[4],
  'event:' .. ARGV[1], cjson.encode({ at = tonumber(now), waitedMs = tonumber(now) - tonumber(f[4] or now) }))
redis.call('HDEL', KEYS[1], 'wait_event', 'wait_timeout_at', 'wait_to', 'wait_on_timeout', 'wait_since', 'wait_stage', 'wait_trace', 'wait_branch')
redis.call('ZREM', KEYS[3], ARGV[5])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', 1000, '*', 'stage', ARGV[3], 'event', 'resumed', 'at', now,
  'data', cjson.encode({ event = ARGV[1], bytes = tonumber(ARGV[6]), waitedMs = tonumber(now) - tonumber(f[4] or now) }))
return { 1 }
