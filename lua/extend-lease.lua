--[[
extend-lease: a consumer still working on entries it read resets their idle
time, so no other consumer reclaims them (reclaim-idle.lua claims entries
idle past the visibility timeout) while a slow handler is running. Only
entries this consumer still owns are touched: one that another consumer has
already reclaimed stays with that consumer. The delivery count is not
incremented (XCLAIM ... JUSTID).

KEYS[1]    stage stream

ARGV[1]    consumer group
ARGV[2]    consumer name (the owner)
ARGV[3..]  entry ids

Returns    the number of entries whose lease was extended
]]
local extended = 0
for i = 3, #ARGV do
  local id = ARGV[i]
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1, ARGV[2])
  if p[1] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, id, 'JUSTID')
    extended = extended + 1
  end
end
return extended
