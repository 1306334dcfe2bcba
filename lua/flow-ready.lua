--[[
flow-ready: the keys of one stage and partition whose parked entries are due
for readmission: members of the ready set whose time has come, plus forced
members (keys this host just freed room in), each with its waiting list's
length and its first few records (a budget estimates their cost). Members
whose list is empty are removed. Read-only otherwise.

KEYS[1]    ready set of the stage in this partition

ARGV[1]    prefix of the waiting lists: list key = prefix .. member (same tag)
ARGV[2]    now, epoch ms
ARGV[3]    at most this many due members
ARGV[4]    records to return per member (heads of the list)
ARGV[5..]  forced members (returned when present, due or not)

Returns    { { member, length, { records } }, ... , nextDue }: nextDue is the
           earliest time of a member not returned (-1 when none)
]]
local prefix, now = ARGV[1], tonumber(ARGV[2])
local limit, heads = tonumber(ARGV[3]), tonumber(ARGV[4])
local out, seen = {}, {}
local function add(member)
  if seen[member] then return end
  seen[member] = true
  local key = prefix .. member
  local len = redis.call('LLEN', key)
  if len == 0 then
    redis.call('ZREM', KEYS[1], member)
  else
    out[#out + 1] = { member, len, redis.call('LRANGE', key, 0, heads - 1) }
  end
end
for k = 5, #ARGV do
  if redis.call('ZSCORE', KEYS[1], ARGV[k]) then add(ARGV[k]) end
end
for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, limit)) do add(member) end
local nextDue = -1
local first = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
if first[2] then nextDue = tonumber(first[2]) end
out[#out + 1] = nextDue
return out
