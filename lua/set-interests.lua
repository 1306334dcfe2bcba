--[[
set-interests: replace a user's interests and the topic subscriber sets of
the user's bucket in one atomic step, so a fan-out never sees a half-updated
user. Every key carries the user's bucket tag {b<N>}.

KEYS[1]    the user's profile hash ({b<N>}:user:<uid>)
KEYS[2..]  subscriber set of every topic in the user's bucket
           ({b<N>}:subs:<topic>), one per known topic, in ARGV order

ARGV[1]    uid
ARGV[2]    now, epoch ms
ARGV[3]    T: number of known topics (= #KEYS - 1)
ARGV[4..3+T]  for each KEYS[1+i]: 1 if the user follows that topic, else 0
ARGV[4+T]  the interests as stored in the profile (comma-separated)

Returns    { added, removed }: subscriber sets the uid joined / left
]]
local uid, now = ARGV[1], ARGV[2]
local t = tonumber(ARGV[3])
local added, removed = 0, 0
for i = 1, t do
  if ARGV[3 + i] == '1' then
    added = added + redis.call('SADD', KEYS[1 + i], uid)
  else
    removed = removed + redis.call('SREM', KEYS[1 + i], uid)
  end
end
if redis.call('HEXISTS', KEYS[1], 'created_at') == 0 then
  redis.call('HSET', KEYS[1], 'created_at', now)
end
redis.call('HSET', KEYS[1], 'interests', ARGV[4 + t], 'updated_at', now)
return { added, removed }
