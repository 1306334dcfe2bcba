--[[
fan-out: deliver one article to every subscriber of its topic in ONE bucket,
atomically and at most once per (article, bucket).

Push only the compact feed id (the article body is stored once elsewhere),
trim each feed to its cap, and publish one notification for the bucket.

KEYS[1]    subscriber set of the topic in this bucket ({b<N>}:subs:<topic>)
KEYS[2]    idempotency marker of (article, bucket)    ({b<N>}:fo:<feedId>)

Derived keys (not in KEYS because they depend on the set's members): each
subscriber's feed list is ARGV[3] .. uid. ARGV[3] is the bucket's feed-key
prefix `<prefix>:{b<N>}:feed:`, carrying the same hash tag as KEYS[1] and
KEYS[2], so every derived key lives in the same cluster slot as the declared
ones (the approach BullMQ scripts use for per-job keys). Uids in the set
were validated when they subscribed.

ARGV[1]    feed id (compact base-36 article id)
ARGV[2]    topic
ARGV[3]    feed-key prefix of this bucket
ARGV[4]    feed cap (each feed is trimmed to this many newest ids)
ARGV[5]    marker TTL, seconds (must outlive any redelivery of the article)
ARGV[6]    notification channel of this bucket ({b<N>}:notify); empty: none

Notification (PUBLISH on ARGV[6], only when something was delivered):
           "<feedId> <topic> <uid1>,<uid2>,..."
           i.e. three space-separated fields; uids never contain spaces or
           commas (validated), so a live client splits on ' ' then ','
           and keeps the message when its uid is in the list.

Returns    number of feeds the article was pushed into (0 when the marker
           already existed: a redelivery, so nothing is delivered twice);
           -1 when the bucket has no subscriber of the topic (nothing is
           written, no marker), so callers can call every bucket without
           asking first which ones are non-empty
]]
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', tonumber(ARGV[5])) then return 0 end
local feedId, prefix = ARGV[1], ARGV[3]
local last = tonumber(ARGV[4]) - 1
local uids = redis.call('SMEMBERS', KEYS[1])
for _, uid in ipairs(uids) do
  local feed = prefix .. uid
  -- LPUSH answers the new length: trim only a feed that went over its cap.
  if redis.call('LPUSH', feed, feedId) > last + 1 then
    redis.call('LTRIM', feed, 0, last)
  end
end
if #uids > 0 and ARGV[6] ~= '' then
  redis.call('PUBLISH', ARGV[6], feedId .. ' ' .. ARGV[2] .. ' ' .. table.concat(uids, ','))
end
return #uids
