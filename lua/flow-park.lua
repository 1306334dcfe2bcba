--[[
flow-park: move entries that a flow limit holds back out of the stage stream
into per-key waiting lists of the same partition, atomically: XACK the entry
(so it is neither redelivered nor counted as a delivery attempt), RPUSH its
record onto the waiting list of its (limit kind, flow key), and mark the key
in the partition's ready set with the time it may be readmitted (the earlier
of the stored time and this one). Every key carries the partition's tag.

KEYS[1]    input stream of the stage
KEYS[2]    stats hash of the stage (fields flow_throttled, flow_waiting)
KEYS[3]    ready set of the stage (zset "<kind>:<flow key>" -> due time, ms)
KEYS[4..]  waiting lists, referenced by 1-based KEYS index from ARGV

ARGV[1]    consumer group
ARGV[2]    N entries, followed per entry by
           entryId, waitingKeyIdx, readyMember, record, dueAt (ms)

Returns    number of entries parked (an entry no longer pending, e.g. acked by
           another consumer meanwhile, is not parked twice)
]]
local group, n = ARGV[1], tonumber(ARGV[2])
local parked = 0
for k = 1, n do
  local b = 3 + 5 * (k - 1)
  local id, waitKey, member, record, due = ARGV[b], KEYS[tonumber(ARGV[b + 1])], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4]
  if redis.call('XACK', KEYS[1], group, id) == 1 then
    redis.call('RPUSH', waitKey, record)
    redis.call('ZADD', KEYS[3], 'LT', due, member)
    parked = parked + 1
  end
end
if parked > 0 then
  redis.call('HINCRBY', KEYS[2], 'flow_throttled', parked)
  redis.call('HINCRBY', KEYS[2], 'flow_waiting', parked)
end
return parked
