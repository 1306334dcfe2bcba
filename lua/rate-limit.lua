--[[
rate-limit: token bucket of one tool (e.g. an LLM endpoint or a feed host),
so many handlers together do not hammer it. Tokens refill continuously.

KEYS[1]    the tool's bucket hash (fields: tokens, at)

ARGV[1]    capacity (burst size), tokens
ARGV[2]    refill rate, tokens per second
ARGV[3]    now, epoch ms (callers pass their clock; skew only shifts refill)
ARGV[4]    tokens wanted (usually 1)

Returns    { granted (1/0), waitMs }: waitMs is how long until enough
           tokens will be there when not granted (0 when granted)
]]
local capacity, rate = tonumber(ARGV[1]), tonumber(ARGV[2])
local now, want = tonumber(ARGV[3]), tonumber(ARGV[4])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or capacity
local at = tonumber(state[2]) or now
if now > at then
  tokens = math.min(capacity, tokens + (now - at) * rate / 1000)
  at = now
end
local granted, waitMs = 0, 0
if tokens >= want then
  tokens = tokens - want
  granted = 1
else
  waitMs = math.ceil((want - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', at)
-- an idle bucket is full again after capacity/rate seconds; keep it a bit longer
redis.call('PEXPIRE', KEYS[1], math.ceil(capacity * 1000 / rate) + 60000)
return { granted, waitMs }
