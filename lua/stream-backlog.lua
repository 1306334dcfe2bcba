--[[
stream-backlog: the backlog figures of one stage stream for its group, for
/v1/stats and /metrics, in one round trip.

KEYS[1]    stage stream

ARGV[1]    consumer group

Returns    { length, pending, lag }  (lag -1 when the server cannot tell)
]]
if redis.call('EXISTS', KEYS[1]) == 0 then return { 0, 0, 0 } end
local len = redis.call('XLEN', KEYS[1])
local pending, lag = 0, 0
for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local info = {}
  for k = 1, #g, 2 do info[g[k]] = g[k + 1] end
  if info['name'] == ARGV[1] then
    pending = info['pending']
    lag = info['lag']
    if lag == nil or lag == false then lag = -1 end
  end
end
return { len, pending, lag }
