--[[
enqueue-runs: start a batch of runs in one partition: write each run's
checkpoint (status running, plus the pipeline's trigger step when it has one,
e.g. `ingest`: the HTTP/cron/replay trigger that created the run), its first
activity-log entry, its envelope on the entry stage's stream, and its entry in
the partition's recent-runs index, atomically. The index is trimmed here, once
per call (not per run): to the newest ARGV[5] entries and to the checkpoint
TTL, so it never outgrows the runs it points at (and the whole index expires
with them when no run starts for a TTL).

Once-only starts (ARGV[9] > 0): a run whose checkpoint exists and was created
within the last ARGV[9] ms is not started again (its id answers as it is:
idempotency-key claims, article ids, schedule ticks); an older one is replaced.

Each checkpoint keeps the run's first envelope as its entry step's input
(field `input:<stage>`, for reruns). Delayed starts (ARGV[10] > now): the
checkpoint says `delayed`; the run id goes into the partition's delayed set
scored by its due time, and promote-due.lua moves it to the stream when due
(a delayed batch adds nothing to the backlog now, so it is not checked).

Backpressure: with ARGV[7] > 0 the batch is refused as a whole, before
anything is written, when the entry stage's backlog (entries of the stream its
group has not acknowledged: pending plus not yet delivered) is at or above
ARGV[7]. The lag comes from XINFO GROUPS when the server reports it; Redis 7.0
reports nil after an AOF reload, and then it is counted as in
stream-backlog.lua, stopping as soon as the backlog is known to reach the
limit (so the scan is bounded by the limit). A stream without the group
(no worker ever read it) counts every entry as waiting. A refusal counts
"throttled" (calls) and "throttled_runs" in the stats hash.

KEYS[1]    entry stage stream
KEYS[2]    stats hash of the entry stage (counts "ingested")
KEYS[3]    recent-runs index of the partition (sorted set runId -> created ms)
KEYS[4]    delayed set of the partition (sorted set runId -> due ms)
KEYS[5..]  run checkpoint hashes and run logs, referenced by 1-based KEYS
           index from ARGV

ARGV[1]    entry stage name
ARGV[2]    now, epoch ms
ARGV[3]    checkpoint/log TTL, seconds
ARGV[4]    trigger step name ('' = none): written as a completed step
           `step:<name>` into each checkpoint
ARGV[5]    recent-runs bound: the index keeps at most this many newest runs
ARGV[6]    consumer group of the entry stage
ARGV[7]    backlog limit (0 = no check)
ARGV[8]    N: number of runs, followed (after ARGV[10]) per run by
           runKeyIdx, logKeyIdx, envelopeJson, runId
ARGV[9]    once-only window, ms (0: always start)
ARGV[10]   due time, epoch ms (0 or <= now: start now)

Returns    per run, in order: the stream id of its entry, 'delayed', or ''
           when the run already existed within the once-only window; when
           refused, { -1, backlog } (backlog: at least the limit, as far as counted)
]]
local stage, now, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local trigger = ARGV[4]
local recentMax = tonumber(ARGV[5])
local group, limit = ARGV[6], tonumber(ARGV[7])
local n = tonumber(ARGV[8])
local once = tonumber(ARGV[9])
local due = tonumber(ARGV[10])
local delayed = due > tonumber(now)

-- The entry stage's backlog, counted only as far as the limit needs.
local function backlog()
  local stream = KEYS[1]
  if redis.call('EXISTS', stream) == 0 then return 0 end
  local len = redis.call('XLEN', stream)
  local found = false
  local pending, lag, last = 0, nil, nil
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
    local info = {}
    for k = 1, #g, 2 do info[g[k]] = g[k + 1] end
    if info['name'] == group then
      found = true
      pending = info['pending']
      lag = info['lag']
      last = info['last-delivered-id']
    end
  end
  if not found then return len end
  if type(lag) == 'number' then return pending + lag end

  local function parse(id)
    local ms, seq = string.match(id, '^(%d+)-(%d+)$')
    return tonumber(ms), tonumber(seq)
  end
  local function after(a, b)
    local am, as = parse(a)
    local bm, bs = parse(b)
    if am ~= bm then return am > bm end
    return as > bs
  end
  local newest = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)[1]
  if newest == nil or not after(newest[1], last) then return pending end
  local oldest = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)[1]
  if after(oldest[1], last) then return pending + len end
  local chunk = 1000
  local undelivered, delivered = 0, 0
  local aheadFrom, behindFrom = '(' .. last, '-'
  while true do
    local ahead = redis.call('XRANGE', stream, aheadFrom, '+', 'COUNT', chunk)
    undelivered = undelivered + #ahead
    if #ahead < chunk then return pending + undelivered end
    if pending + undelivered >= limit then return pending + undelivered end
    aheadFrom = '(' .. ahead[#ahead][1]
    local behind = redis.call('XRANGE', stream, behindFrom, last, 'COUNT', chunk)
    delivered = delivered + #behind
    if #behind < chunk then return pending + len - delivered end
    behindFrom = '(' .. behind[#behind][1]
  end
end

if limit > 0 and not delayed then
  local waiting = backlog()
  if waiting >= limit then
    redis.call('HINCRBY', KEYS[2], 'throttled', 1)
    redis.call('HINCRBY', KEYS[2], 'throttled_runs', n)
    return { -1, waiting }
  end
end

local ids = {}
local i = 11
local started = 0
local triggerStep = cjson.encode({ status = 'completed', ms = 0, at = tonumber(now), result = { entry = stage } })
-- One variadic ZADD per 500 runs (all share the score `now`), below unpack()'s stack limit.
local recent = {}
local function flushRecent()
  if #recent > 0 then redis.call('ZADD', KEYS[3], unpack(recent)) end
  recent = {}
end
for k = 1, n do
  local runKey, logKey, env, runId = KEYS[tonumber(ARGV[i])], KEYS[tonumber(ARGV[i + 1])], ARGV[i + 2], ARGV[i + 3]
  i = i + 4
  local existing = false
  if once > 0 then
    local created = redis.call('HGET', runKey, 'created_at')
    if created and tonumber(created) >= tonumber(now) - once then
      existing = true
    elseif created then
      redis.call('DEL', runKey, logKey)
    end
  end
  if existing then
    ids[k] = ''
  else
    started = started + 1
    recent[#recent + 1] = now
    recent[#recent + 1] = runId
    if #recent >= 1000 then flushRecent() end
    if delayed then
      redis.call('HSET', runKey, 'status', 'delayed', 'step', stage, 'created_at', now, 'updated_at', now, 'due_at', due, 'input:' .. stage, env)
    else
      redis.call('HSET', runKey, 'status', 'running', 'step', stage, 'created_at', now, 'updated_at', now, 'input:' .. stage, env)
    end
    if trigger ~= '' then redis.call('HSET', runKey, 'step:' .. trigger, triggerStep) end
    redis.call('EXPIRE', runKey, ttl)
    if delayed then
      redis.call('XADD', logKey, 'MAXLEN', '~', 1000, '*', 'stage', stage, 'event', 'delayed', 'at', now, 'data', cjson.encode({ dueAt = due }))
      redis.call('ZADD', KEYS[4], due, runId)
      ids[k] = 'delayed'
    else
      redis.call('XADD', logKey, 'MAXLEN', '~', 1000, '*', 'stage', stage, 'event', 'enqueued', 'at', now)
      ids[k] = redis.call('XADD', KEYS[1], '*', 'e', env)
    end
    redis.call('EXPIRE', logKey, ttl)
  end
end
flushRecent()
redis.call('ZREMRANGEBYRANK', KEYS[3], 0, -(recentMax + 1))
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. (tonumber(now) - ttl * 1000))
redis.call('EXPIRE', KEYS[3], ttl)
if delayed then redis.call('EXPIRE', KEYS[4], ttl) end
if started > 0 then redis.call('HINCRBY', KEYS[2], 'ingested', started) end
return ids
