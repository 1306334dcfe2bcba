--[[
fan-out: deliver articles to every subscriber of their topic in ONE bucket,
atomically and at most once per (article, bucket). One call carries one or
more articles of the same bucket (the news fanout stage sends the articles
of a batch together: one call per bucket instead of one per article and
bucket); each article is handled exactly as if it had its own call, in the
order given.

Push only the compact feed id (the article body is stored once elsewhere),
trim each feed to its cap, publish one notification per article, and add
the deliveries to the bucket's counter in the same call, so the counter
never misses deliveries whose caller died before it could count them.

KEYS[1]    fan-out counters of this bucket ({b<N>}:stats, field fanout_deliveries)
KEYS[2]    subscriber set of the first article's topic in this bucket ({b<N>}:subs:<topic>)
KEYS[3]    idempotency marker of (first article, bucket)              ({b<N>}:fo:<feedId>)
KEYS[2i], KEYS[2i+1]   the same for article i ((#KEYS - 1) / 2 articles)

Derived keys (not in KEYS because they depend on the set's members): each
subscriber's feed list is ARGV[1] .. uid. ARGV[1] is the bucket's feed-key
prefix `<prefix>:{b<N>}:feed:`, carrying the same hash tag as the declared
keys, so every derived key lives in the same cluster slot as the declared
ones (the approach BullMQ scripts use for per-job keys). Uids in the set
were validated when they subscribed.

ARGV[1]    feed-key prefix of this bucket
ARGV[2]    feed cap (each feed is trimmed to this many newest ids)
ARGV[3]    marker TTL, seconds (must outlive any redelivery of the article)
ARGV[4]    notification channel of this bucket ({b<N>}:notify); empty: none
ARGV[3+2i] feed id of article i (compact base-36 article id)
ARGV[4+2i] topic of article i

Notification (PUBLISH on ARGV[4], per article, only when something was delivered):
           "<feedId> <topic> <uid1>,<uid2>,..."
           i.e. three space-separated fields; uids never contain spaces or
           commas (validated), so a live client splits on ' ' then ','
           and keeps the message when its uid is in the list.

Returns    one number per article: the feeds it was pushed into (0 when its
           marker already existed: a redelivery, so nothing is delivered
           twice); -1 when the bucket has no subscriber of its topic
           (nothing is written, no marker), so callers can call every
           bucket without asking first which ones are non-empty
]]
local prefix, channel = ARGV[1], ARGV[4]
local last = tonumber(ARGV[2]) - 1
local ttl = tonumber(ARGV[3])
local counts = {}
local delivered = 0
for i = 1, (#KEYS - 1) / 2 do
  local subs, marker = KEYS[2 * i], KEYS[2 * i + 1]
  local feedId, topic = ARGV[3 + 2 * i], ARGV[4 + 2 * i]
  if redis.call('EXISTS', subs) == 0 then
    counts[i] = -1
  elseif not redis.call('SET', marker, '1', 'NX', 'EX', ttl) then
    counts[i] = 0
  else
    local uids = redis.call('SMEMBERS', subs)
    for _, uid in ipairs(uids) do
      local feed = prefix .. uid
      -- LPUSH answers the new length: trim only a feed that went over its cap.
      if redis.call('LPUSH', feed, feedId) > last + 1 then
        redis.call('LTRIM', feed, 0, last)
      end
    end
    if #uids > 0 and channel ~= '' then
      redis.call('PUBLISH', channel, feedId .. ' ' .. topic .. ' ' .. table.concat(uids, ','))
    end
    counts[i] = #uids
    delivered = delivered + #uids
  end
end
if delivered > 0 then redis.call('HINCRBY', KEYS[1], 'fanout_deliveries', delivered) end
return counts
