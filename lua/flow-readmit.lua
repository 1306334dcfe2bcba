--[[
flow-readmit: put parked entries back on their stage stream, for keys whose
limiter just granted them room (flow-acquire reserved it): LPOP up to `count`
records of each waiting list and XADD each as a new entry carrying its
earlier deliveries ("d", so waiting never costs an attempt) and its
reservation ("r", so it takes the room reserved for it). The key's ready
time is set to `nextDue`, or the key is removed once its list is empty.
Every key carries the partition's tag.

KEYS[1]    input stream of the stage
KEYS[2]    stats hash of the stage (fields flow_waiting, flow_readmitted)
KEYS[3]    ready set of the stage in this partition
KEYS[4..]  waiting lists, referenced by 1-based KEYS index from ARGV

ARGV[1]    N groups, followed per group by
           waitingKeyIdx, readyMember, nextDue (ms), count, then count
           reservation tokens

Returns    records readmitted per group, in order (fewer than `count` when
           another host readmitted some first; the caller frees the rest)
]]
local n = tonumber(ARGV[1])
local i = 2
local out, total = {}, 0
for g = 1, n do
  local waitKey, member, due, count = KEYS[tonumber(ARGV[i])], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
  i = i + 4
  local moved = 0
  for c = 1, count do
    local record = redis.call('LPOP', waitKey)
    if not record then break end
    local sep = string.find(record, '|', 1, true)
    redis.call('XADD', KEYS[1], '*', 'e', string.sub(record, sep + 1), 'd', string.sub(record, 1, sep - 1), 'r', ARGV[i + c - 1])
    moved = moved + 1
  end
  i = i + count
  if redis.call('LLEN', waitKey) == 0 then
    redis.call('ZREM', KEYS[3], member)
  else
    redis.call('ZADD', KEYS[3], due, member)
  end
  out[g] = moved
  total = total + moved
end
if total > 0 then
  redis.call('HINCRBY', KEYS[2], 'flow_waiting', -total)
  redis.call('HINCRBY', KEYS[2], 'flow_readmitted', total)
end
return out
