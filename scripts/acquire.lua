-- Take the lock KEYS[1], or pass it on from one owner to the next.
-- ARGV[1] new owner id, ARGV[2] TTL in ms, ARGV[3] holder description.
-- Hand-off only (a release that gives the lock straight to a waiter of the
-- same client): ARGV[4] releasing owner id, ARGV[5] release channel,
-- ARGV[6] -1 to hand off unconditionally, else the number of the releasing
-- client's own subscriptions to the channel: if more clients than that wait,
-- release for them instead. ARGV[7] tombstone ms for that release.
--
-- Returns {1, token} taken; {0, remaining TTL in ms} held by another owner;
-- {2, receivers} released for other clients instead of handed off;
-- {3, token} taken, but the releasing owner's lease had lapsed.
--
-- The key is a hash: o = owner id, t = fencing token, h = holder, a = time
-- taken (server clock, µs). Tokens are never below the server clock in
-- microseconds, so they keep increasing after a release, after the key
-- expired, and after Redis restarted empty. A token at or ahead of the clock
-- survives its release as a tombstone (only t), so the next one is above it.
local cur = redis.call('HMGET', KEYS[1], 'o', 't')
local from = ARGV[4] or ''
local code = 1
if cur[1] then
  if cur[1] == ARGV[1] then
    -- Already ours: a retry after an unknown outcome adopts it.
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return {1, tonumber(cur[2])}
  end
  if cur[1] ~= from then
    return {0, redis.call('PTTL', KEYS[1])}
  end
end
local now = redis.call('TIME')
now = tonumber(now[1]) * 1000000 + tonumber(now[2])
if cur[1] then -- handing off from ARGV[4]
  if ARGV[6] ~= '-1' and redis.call('PUBSUB', 'NUMSUB', ARGV[5])[2] > tonumber(ARGV[6]) then
    -- Other clients wait: release for them (as release.lua does).
    if tonumber(cur[2]) < now then
      redis.call('DEL', KEYS[1])
    else
      redis.call('HDEL', KEYS[1], 'o', 'h', 'a')
      redis.call('PEXPIRE', KEYS[1], ARGV[7])
    end
    return {2, redis.call('PUBLISH', ARGV[5], '')}
  end
elseif from ~= '' then
  code = 3
end
local token = now
if cur[2] then
  local last = tonumber(cur[2])
  if last and last >= token then
    token = last + 1
  end
end
redis.call('HSET', KEYS[1], 'o', ARGV[1], 't', string.format('%.0f', token),
  'h', ARGV[3], 'a', string.format('%.0f', now))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {code, token}
