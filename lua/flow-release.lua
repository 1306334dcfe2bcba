--[[
flow-release: give back or adjust room in flow limiters of one stage (see
flow-acquire.lua for the kinds and the limiters' layout), one group per
limiter; a stage's limiters share one slot.

KEYS[1..]  limiter keys (or, for "queue", the lanes' parked count)

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
ARGV[4]    G groups, followed per group by keyIdx, N, then N values:
           release/extend: members; adjust: deltas; queue: one delta

Returns    per group: release: slots held after the call; extend: members
           extended; adjust: tokens in the bucket after the call (floored);
           queue: the count
]]
local op, now, param = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local out = {}
local i = 5
for g = 1, tonumber(ARGV[4]) do
  local key, n = KEYS[tonumber(ARGV[i])], tonumber(ARGV[i + 1])
  local first, last = i + 2, i + 1 + n
  i = last + 1
  if op == 'release' then
    for s = first, last, 500 do redis.call('ZREM', key, unpack(ARGV, s, math.min(last, s + 499))) end
    out[g] = redis.call('ZCARD', key)
  elseif op == 'queue' then
    local c = redis.call('INCRBY', key, ARGV[first])
    if c < 0 then
      redis.call('SET', key, 0)
      c = 0
    end
    redis.call('PEXPIRE', key, 86400000)
    out[g] = c
  elseif op == 'extend' then
    local c = 0
    for k = first, last do c = c + redis.call('ZADD', key, 'XX', 'CH', now + param, ARGV[k]) end
    if c > 0 then redis.call('PEXPIRE', key, param + 60000) end
    out[g] = c
  elseif redis.call('EXISTS', key) == 0 then
    out[g] = 0
  else
    local tokens = tonumber(redis.call('HGET', key, 'tokens')) or param
    local refunds = 0
    for k = first, last do
      local d = tonumber(ARGV[k])
      tokens = tokens + d
      if d > 0 then refunds = refunds + d end
    end
    -- At most the capacity plus this call's refunds: tokens refunded are not lost to a full bucket.
    if tokens > param + refunds then tokens = param + refunds end
    redis.call('HSET', key, 'tokens', tostring(tokens))
    out[g] = math.floor(tokens)
  end
end
return out
