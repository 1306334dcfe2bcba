--[[
prune-consumers: delete consumers of a group that own no pending entries and
have been idle for long (worker-hosts that exited or were killed), so the
group's consumer list does not grow with every restart. The pending check and
the delete happen in one script: XGROUP DELCONSUMER drops a consumer's
pending entries, so it must never race with a read.

KEYS[1]    stage stream

ARGV[1]    consumer group
ARGV[2]    min idle time, ms, before a consumer counts as gone
ARGV[3]    consumer name to keep (the caller)

Returns    number of consumers deleted
]]
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local ok, consumers = pcall(redis.call, 'XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
if not ok then return 0 end
local minIdle = tonumber(ARGV[2])
local deleted = 0
for _, c in ipairs(consumers) do
  local info = {}
  for k = 1, #c, 2 do info[c[k]] = c[k + 1] end
  if info['pending'] == 0 and info['idle'] > minIdle and info['name'] ~= ARGV[3] then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], info['name'])
    deleted = deleted + 1
  end
end
return deleted
