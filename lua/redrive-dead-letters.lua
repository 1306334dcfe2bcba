--[[
redrive-dead-letters: move dead letters of one stage (one partition) back to
the stage's input stream, with their attempt reset, and delete them from the
dead-letter stream, atomically.

KEYS[1]    dead-letter stream of the stage
KEYS[2]    input stream of the stage

ARGV[1]    max number to redrive when no ids are given
ARGV[2..]  dead-letter entry ids to redrive (none: the oldest ARGV[1])

Returns    number of entries redriven
]]
local entries
if #ARGV > 1 then
  entries = {}
  for k = 2, #ARGV do
    local r = redis.call('XRANGE', KEYS[1], ARGV[k], ARGV[k])
    if r[1] then entries[#entries + 1] = r[1] end
  end
else
  entries = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', ARGV[1])
end
local n = 0
for _, e in ipairs(entries) do
  local f = {}
  for k = 1, #e[2], 2 do f[e[2][k]] = e[2][k + 1] end
  redis.call('XADD', KEYS[2], '*', 'e', f['envelope'])
  redis.call('XDEL', KEYS[1], e[1])
  n = n + 1
end
return n
