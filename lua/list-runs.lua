--[[
list-runs: the newest runs of one partition, read from its recent-runs index,
each with the status and step of its checkpoint (read now, so the commit
scripts need not touch the index), optionally only runs of one status.
Read-only. Runs whose checkpoint has expired are skipped.

Derived keys (not in KEYS because they depend on the index's members): each
checkpoint is ARGV[1] .. runId. ARGV[1] is the partition's checkpoint-key
prefix `<prefix>:{p<N>}:run:`, carrying the same hash tag as KEYS[1], so
every derived key lives in the same cluster slot (as in fan-out.lua). Run
ids in the index were validated when their runs started.

KEYS[1]    recent-runs index of the partition (sorted set runId -> created ms)

ARGV[1]    checkpoint-key prefix of the partition
ARGV[2]    limit: stop after this many matching runs
ARGV[3]    status filter ('' = any status)
ARGV[4]    scan bound: examine at most this many index entries

Returns    { examined, exhausted (1 when the whole index was examined),
             then per matching run, newest first:
             runId, status, step, created_at, updated_at }
]]
local prefix, limit, want, bound = ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local out = { 0, 0 }
local matched, examined = 0, 0
local chunk = math.max(limit, 50)
local more = true
while more and matched < limit and examined < bound do
  local count = math.min(chunk, bound - examined)
  local ids = redis.call('ZREVRANGE', KEYS[1], examined, examined + count - 1)
  more = #ids == count
  for _, id in ipairs(ids) do
    examined = examined + 1
    local h = redis.call('HMGET', prefix .. id, 'status', 'step', 'created_at', 'updated_at')
    if h[1] and (want == '' or h[1] == want) then
      out[#out + 1] = id
      out[#out + 1] = h[1]
      out[#out + 1] = h[2] or ''
      out[#out + 1] = h[3] or ''
      out[#out + 1] = h[4] or ''
      matched = matched + 1
      if matched == limit then break end
    end
  end
end
out[1] = examined
if examined >= redis.call('ZCARD', KEYS[1]) then out[2] = 1 end
return out
