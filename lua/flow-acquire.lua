--[[
flow-acquire: take room in flow limiters of one stage and limit kind (one
limiter per flow key) for lists of members, in order, one group per limiter.
A stage's limiters share the stage's tag ({fl:<stage>}), so one call per
batch touches one slot; limits hold across hosts.

Kinds:
  concurrency  a sorted set member -> lease deadline (ms). Expired leases are
               removed first, so a host killed -9 leaks its slots only until
               their deadline. A member already holding a slot keeps it (a
               redelivered entry re-takes its own slot); a reservation member
               (taken by flow-readmit for a parked entry) is swapped for the
               entry's member without a second check.
  lanes        as concurrency, for the whole stage (the key "all"), with a
               count of entries parked in its priority lanes (KEYS[2]): while
               it is above 0, an entry without a reservation is denied even if
               a slot is free, so entries read later queue behind the parked
               ones and the readmission's lane weights decide who goes next.
  rate, budget a token bucket hash (tokens, at) refilled continuously; an item
               takes `amount` tokens (1 for rate, the cost estimate for a
               budget). An item larger than the whole bucket passes when the
               bucket is full (it then goes into debt), so it is never stuck.
               A reserved item was charged when it was readmitted: it passes.

KEYS[1]..KEYS[n]  limiter keys (zset for concurrency/lanes, hash for rate/budget) and,
           for lanes, the count of parked entries (a string), referenced by
           1-based index from ARGV

ARGV[1]    kind: "concurrency" | "lanes" | "rate" | "budget"
ARGV[2]    now, epoch ms
ARGV[3]    concurrency: slot limit; rate/budget: bucket capacity (tokens)
ARGV[4]    concurrency: lease length, ms; rate/budget: refill, tokens per ms
ARGV[5]    stop at the first denial (1: reservations take a prefix), else 0
ARGV[6]    lanes: KEYS index of the parked count (0 otherwise)
ARGV[7]    G groups, followed per group by limiterKeyIdx, N, then per item
           member, amount, reservation ("" none)

Returns    per group { granted flags (1/0 per item, in order), waitMs }: waitMs
           is when a denied item may pass at the earliest (rate/budget), else 0
]]
local kind, now = ARGV[1], tonumber(ARGV[2])
local limit, param = tonumber(ARGV[3]), tonumber(ARGV[4])
local prefixOnly = ARGV[5] == '1'
local queuedIdx = tonumber(ARGV[6])
local queued = 0
if queuedIdx > 0 and not prefixOnly then queued = tonumber(redis.call('GET', KEYS[queuedIdx]) or '0') end
local out = {}
local i = 8
for g = 1, tonumber(ARGV[7]) do
  local key, n = KEYS[tonumber(ARGV[i])], tonumber(ARGV[i + 1])
  i = i + 2
  local flags, waitMs, denied = {}, 0, false
  if kind == 'concurrency' or kind == 'lanes' then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
    local used = redis.call('ZCARD', key)
    local deadline = now + param
    for k = 1, n do
      local member, reservation = ARGV[i], ARGV[i + 2]
      i = i + 3
      local ok = 0
      if not (denied and prefixOnly) then
        if reservation ~= '' and redis.call('ZSCORE', key, reservation) then
          redis.call('ZREM', key, reservation)
          redis.call('ZADD', key, deadline, member)
          ok = 1
        elseif used < limit and queued <= 0 then
          -- One call when there is room: ZADD answers 0 for a member that already held a slot.
          used = used + redis.call('ZADD', key, deadline, member)
          ok = 1
        elseif redis.call('ZSCORE', key, member) then
          redis.call('ZADD', key, deadline, member)
          ok = 1
        end
      end
      if ok == 0 then denied = true end
      flags[k] = ok
    end
    redis.call('PEXPIRE', key, param + 60000)
  else
    local state = redis.call('HMGET', key, 'tokens', 'at')
    local tokens = tonumber(state[1]) or limit
    local at = tonumber(state[2]) or now
    if now > at then
      -- Refill stops at the capacity; a refund (flow-release adjust) may have lifted it above.
      if tokens < limit then tokens = math.min(limit, tokens + (now - at) * param) end
      at = now
    end
    for k = 1, n do
      local amount, reservation = tonumber(ARGV[i + 1]), ARGV[i + 2]
      i = i + 3
      local ok = 0
      if not (denied and prefixOnly) then
        if reservation ~= '' then
          ok = 1
        elseif tokens >= math.min(amount, limit) then
          tokens = tokens - amount
          ok = 1
        end
      end
      if ok == 0 then
        if not denied then waitMs = math.ceil((math.min(amount, limit) - tokens) / param) end
        denied = true
      end
      flags[k] = ok
    end
    redis.call('HSET', key, 'tokens', tostring(tokens), 'at', at)
    redis.call('PEXPIRE', key, math.ceil(limit / param) + 60000)
  end
  out[g] = { flags, waitMs }
end
return out
