--[[
mint-feed-id: the compact feed id of a run, minted once. A redelivered
fetcher gets the id its first delivery minted, so no sequence number is
wasted and no article gets two ids.

KEYS[1]    global article sequence (INCR)           (<prefix>:{seq}:article)
KEYS[2]    run -> feed id mapping, same tag as KEYS[1] (<prefix>:{seq}:fid:<runId>)

ARGV[1]    mapping TTL, seconds

Returns    the feed id: base-36 of the sequence number
]]
local existing = redis.call('GET', KEYS[2])
if existing then return existing end
local n = redis.call('INCR', KEYS[1])
local digits, id = '0123456789abcdefghijklmnopqrstuvwxyz', ''
repeat
  local d = n % 36
  id = string.sub(digits, d + 1, d + 1) .. id
  n = math.floor(n / 36)
until n == 0
redis.call('SET', KEYS[2], id, 'EX', tonumber(ARGV[1]))
return id
