--[[
claim-idempotency: the first step of a request that carries an
Idempotency-Key. The first request with a key claims it (its body hash, the
run ids it will start, a lease); a repeat with the same body answers the
stored answer once there is one, or waits while the claim's lease runs; a
claim whose lease ran out without an answer (its request died between claim
and answer) is taken over with the SAME run ids, so starting them again
(enqueue-runs.lua's once-only window) cannot start a second set of runs. A
repeat with another body is refused.

KEYS[1]    idempotency record (hash: hash, state, lease, runs, status, body, claims)

ARGV[1]    request hash (hex of the canonical body)
ARGV[2]    now, epoch ms
ARGV[3]    lease, ms
ARGV[4]    record TTL, seconds (the key's window)
ARGV[5]    the run ids this request would start (JSON array)

Returns    { 'claimed', runIdsJson, claims } (start these runs, then store the answer),
           { 'replay', status, bodyJson },
           { 'busy', msLeftOnLease },
           { 'mismatch' }
]]
local now, lease = tonumber(ARGV[2]), tonumber(ARGV[3])
local h = redis.call('HMGET', KEYS[1], 'hash', 'state', 'lease', 'runs', 'status', 'body')
if not h[1] then
  redis.call('HSET', KEYS[1], 'hash', ARGV[1], 'state', 'pending', 'lease', now + lease, 'runs', ARGV[5], 'claims', 1)
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
  return { 'claimed', ARGV[5], 1 }
end
if h[1] ~= ARGV[1] then return { 'mismatch' } end
if h[2] == 'done' then return { 'replay', h[5], h[6] } end
local left = tonumber(h[3]) - now
if left > 0 then return { 'busy', left } end
redis.call('HSET', KEYS[1], 'lease', now + lease)
local claims = redis.call('HINCRBY', KEYS[1], 'claims', 1)
return { 'claimed', h[4], claims }
