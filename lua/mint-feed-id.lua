--[[
mint-feed-id: the compact feed id of a run, minted once. A redelivered
fetcher gets the id its first delivery minted, so no sequence number is
wasted and no article gets two ids.

The sequence never falls below the server clock in microseconds. A server
that comes back with fewer writes than it acknowledged (appendfsync
everysec and a power loss: the counter and the run -> id mappings roll
back by up to a second or so) restarts later in time, so it mints above
every id handed out before the crash, the way stream ids do; without the
floor it would mint those ids again and a second article would overwrite
the first in every feed that holds it.

KEYS[1]    global article sequence (INCR)           (<prefix>:{seq}:article)
KEYS[2]    run -> feed id mapping, same tag as KEYS[1] (<prefix>:{seq}:fid:<runId>)

ARGV[1]    mapping TTL, seconds

Returns    the feed id: base-36 of the sequence number
]]
local existing = redis.call('GET', KEYS[2])
if existing then return existing end
local n = redis.call('INCR', KEYS[1])
local now = redis.call('TIME')
local floor = tonumber(now[1]) * 1000000 + tonumber(now[2])
if n < floor then
  n = floor
  redis.call('SET', KEYS[1], string.format('%d', n))
end
local digits, id = '0123456789abcdefghijklmnopqrstuvwxyz', ''
repeat
  local d = n % 36
  id = string.sub(digits, d + 1, d + 1) .. id
  n = math.floor(n / 36)
until n == 0
redis.call('SET', KEYS[2], id, 'EX', tonumber(ARGV[1]))
return id
