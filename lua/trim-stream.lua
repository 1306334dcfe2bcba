--[[
trim-stream: bound a stream without ever dropping what a consumer group has
not acknowledged. The safe point is, across all groups, the oldest pending id
or (when nothing is pending) the id after the group's last delivered id;
everything below it is acknowledged by every group. Trims only when the
stream is longer than the soft cap.

KEYS[1]    stream

ARGV[1]    soft cap: trim only when XLEN exceeds it

Returns    number of entries removed
]]
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local len = redis.call('XLEN', KEYS[1])
if len <= tonumber(ARGV[1]) then return 0 end
local groups = redis.call('XINFO', 'GROUPS', KEYS[1])
if #groups == 0 then return 0 end

local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local function less(a, b)
  local am, as = parse(a)
  local bm, bs = parse(b)
  if am ~= bm then return am < bm end
  return as < bs
end

local safe = nil
for _, g in ipairs(groups) do
  local info = {}
  for k = 1, #g, 2 do info[g[k]] = g[k + 1] end
  local candidate
  local pending = redis.call('XPENDING', KEYS[1], info['name'])
  if pending[1] > 0 then
    candidate = pending[2]
  else
    local ms, seq = parse(info['last-delivered-id'])
    candidate = ms .. '-' .. (seq + 1)
  end
  if safe == nil or less(candidate, safe) then safe = candidate end
end
return redis.call('XTRIM', KEYS[1], 'MINID', safe)
