--[[
reclaim-idle: claim entries of one stream idle past the visibility timeout
(crashed consumers, or failed entries whose backoff has passed) and report
each one's delivery count, in one round trip.

KEYS[1]    stage stream

ARGV[1]    consumer group
ARGV[2]    consumer name (the claimer)
ARGV[3]    min idle time, ms (the visibility timeout)
ARGV[4]    XAUTOCLAIM start cursor
ARGV[5]    COUNT

Returns    { nextCursor, { { id, fieldsArray, deliveries }, ... } }
           (entries deleted from the stream while pending are dropped from
           the PEL by XAUTOCLAIM itself and not returned)
]]
local res = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], 'COUNT', ARGV[5])
local out = {}
for _, entry in ipairs(res[2]) do
  local id = entry[1]
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)
  local deliveries = 1
  if p[1] then deliveries = p[1][4] end
  out[#out + 1] = { id, entry[2], deliveries }
end
return { res[1], out }
