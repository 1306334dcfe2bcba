--[[
flow-release: give back or adjust room in one flow limiter (see
flow-acquire.lua for the kinds and the limiter's layout).

KEYS[1]    the limiter key

ARGV[1]    op: "release" (concurrency: remove the members' slots),
           "extend" (concurrency: push the deadline of members still held),
           "adjust" (rate/budget: add ARGV[4..] token deltas to the bucket; a
           negative delta charges a cost reported after the call, a positive
           one refunds an estimate that was too high; refill never fills the
           bucket past its capacity, a refund may (by what was over-charged:
           those tokens were never spent), and a charge may put it in debt),
           "queue" (lanes: add ARGV[4] to the count of parked entries in
           KEYS[1], never below 0)
ARGV[2]    now, epoch ms
ARGV[3]    extend: lease length, ms; adjust: bucket capacity
ARGV[4..]  release/extend: members; adjust: deltas

Returns    release: slots held after the call; extend: members extended;
           adjust: tokens in the bucket after the call (floored); queue: the count
]]
local op, now, param = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
if op == 'release' then
  for k = 4, #ARGV do redis.call('ZREM', KEYS[1], ARGV[k]) end
  return redis.call('ZCARD', KEYS[1])
elseif op == 'queue' then
  local n = redis.call('INCRBY', KEYS[1], ARGV[4])
  if n < 0 then
    redis.call('SET', KEYS[1], 0)
    n = 0
  end
  redis.call('PEXPIRE', KEYS[1], 86400000)
  return n
elseif op == 'extend' then
  local n = 0
  for k = 4, #ARGV do n = n + redis.call('ZADD', KEYS[1], 'XX', 'CH', now + param, ARGV[k]) end
  if n > 0 then redis.call('PEXPIRE', KEYS[1], param + 60000) end
  return n
end
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local tokens = tonumber(redis.call('HGET', KEYS[1], 'tokens')) or param
local refunds = 0
for k = 4, #ARGV do
  local d = tonumber(ARGV[k])
  tokens = tokens + d
  if d > 0 then refunds = refunds + d end
end
-- At most the capacity plus this call's refunds: tokens refunded are not lost to a full bucket.
if tokens > param + refunds then tokens = param + refunds end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens))
return math.floor(tokens)
