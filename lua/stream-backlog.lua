--[[
stream-backlog: the backlog figures of one stage stream for its group, for
/v1/stats, /metrics and the host's /health, in one round trip.

The lag (entries not yet delivered to the group) comes from XINFO GROUPS when
the server reports it. Redis 7.0 reports it as nil after an AOF reload until
the group has read up to the end of the stream; then it is counted here: the
entries after the group's last-delivered-id, scanning from both sides of that
id in chunks and stopping at whichever side ends first (entries after it are
never trimmed, see trim-stream.lua), so the work is bounded by the smaller
side and by ARGV[2] scanned entries, past which the count is a lower bound.

KEYS[1]    stage stream

ARGV[1]    consumer group
ARGV[2]    most entries to scan when the lag must be counted (default 100000)

Returns    { length, pending, lag }  (lag -1 when the group does not exist)
]]
if redis.call('EXISTS', KEYS[1]) == 0 then return { 0, 0, 0 } end
local stream = KEYS[1]
local cap = tonumber(ARGV[2] or '100000')
local len = redis.call('XLEN', stream)
local pending, lag, last = 0, -1, nil
for _, g in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
  local info = {}
  for k = 1, #g, 2 do info[g[k]] = g[k + 1] end
  if info['name'] == ARGV[1] then
    pending = info['pending']
    lag = info['lag']
    last = info['last-delivered-id']
  end
end
if type(lag) == 'number' or last == nil then return { len, pending, lag } end

local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local function after(a, b)
  local am, as = parse(a)
  local bm, bs = parse(b)
  if am ~= bm then return am > bm end
  return as > bs
end

local newest = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)[1]
if newest == nil or not after(newest[1], last) then return { len, pending, 0 } end
local oldest = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)[1]
if after(oldest[1], last) then return { len, pending, len } end

local chunk = 1000
local undelivered, delivered = 0, 0
local aheadFrom, behindFrom = '(' .. last, '-'
while true do
  local ahead = redis.call('XRANGE', stream, aheadFrom, '+', 'COUNT', chunk)
  undelivered = undelivered + #ahead
  if #ahead < chunk then return { len, pending, undelivered } end
  aheadFrom = '(' .. ahead[#ahead][1]
  local behind = redis.call('XRANGE', stream, behindFrom, last, 'COUNT', chunk)
  delivered = delivered + #behind
  if #behind < chunk then return { len, pending, len - delivered } end
  behindFrom = '(' .. behind[#behind][1]
  if undelivered + delivered >= cap then return { len, pending, undelivered } end
end
