--[[
redrive-dead-letters: move dead letters of one stage (one partition) back to
the stage's input stream, with their attempt reset, and delete them from the
dead-letter stream, atomically. With a replacement envelope (one id only), that
envelope goes back instead of the stored one (a redrive with an edited
payload); the run's log records the redrive.

KEYS[1]    dead-letter stream of the stage
KEYS[2]    input stream of the stage

ARGV[1]    max number to redrive when no ids are given
ARGV[2]    replacement envelope JSON ('' = redrive the stored envelopes)
ARGV[3]    run-log key prefix of the partition (for the `redriven` log entry of an edited redrive)
ARGV[4]    now, epoch ms
ARGV[5..]  dead-letter entry ids to redrive (none: the oldest ARGV[1])

Returns    number of entries redriven
]]
local replacement = ARGV[2]
local entries
if #ARGV > 4 then
  entries = {}
  for k = 5, #ARGV do
    local r = redis.call('XRANGE', KEYS[1], ARGV[k], ARGV[k])
    if r[1] then entries[#entries + 1] = r[1] end
  end
else
  entries = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', ARGV[1])
end
if replacement ~= '' and #entries ~= 1 then return 0 end
local n = 0
for _, e in ipairs(entries) do
  local f = {}
  for k = 1, #e[2], 2 do f[e[2][k]] = e[2][k + 1] end
  if replacement ~= '' then
    redis.call('XADD', KEYS[2], '*', 'e', replacement)
    local ok, env = pcall(cjson.decode, replacement)
    if ok and type(env) == 'table' and type(env.runId) == 'string' then
      redis.call('XADD', ARGV[3] .. env.runId, 'MAXLEN', '~', 1000, '*', 'stage', tostring(env.stage), 'event', 'redriven', 'at', ARGV[4], 'data', cjson.encode({ edited = true, deadLetterId = e[1] }))
    end
  else
    redis.call('XADD', KEYS[2], '*', 'e', f['envelope'])
  end
  redis.call('XDEL', KEYS[1], e[1])
  n = n + 1
end
return n
